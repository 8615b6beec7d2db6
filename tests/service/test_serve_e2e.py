"""Issue 5, acceptances 2 and 3: the small synthetic study submitted over HTTP to a running
`clnas serve` completes; its front equals Optuna's best_trials; the export validates and costs
the same; a server killed with SIGKILL mid-study and started again finishes the study without
losing or duplicating a completed trial. Each on a SQLite file and on a PostgreSQL database
(issue 17, acceptance 2)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import optuna
import pytest

from tests.service.serving import CLNAS, DONE, EXAMPLE, Server, wait_for


def _snapshot(url: str, name: str) -> dict[int, Any]:
    study = optuna.load_study(study_name=name, storage=url)
    return {t.number: (t.state.name, t.values, t.user_attrs.get("arch")) for t in study.trials}


@pytest.mark.slow
def test_study_over_http_completes_and_exports(tmp_path: Path, db_url: str) -> None:
    server = Server(tmp_path, db_url)
    server.start("serve.log")
    try:
        r = httpx.post(f"{server.url}/api/studies", json=EXAMPLE, timeout=30)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        body = wait_for(server, sid, lambda b: b["status"] == "completed")
        assert body["progress"]["finished"] == EXAMPLE["search"]["n_trials"]
        front = httpx.get(f"{server.url}/api/studies/{sid}/front", timeout=30).json()
        study = optuna.load_study(study_name=EXAMPLE["name"], storage=db_url)
        assert sorted(t["number"] for t in front["trials"]) == sorted(
            t.number for t in study.best_trials
        )
        n = front["trials"][0]["number"]
        doc = httpx.get(f"{server.url}/api/studies/{sid}/trials/{n}/export", timeout=30).json()
        path = tmp_path / "winner.json"
        path.write_text(json.dumps(doc))
        check = subprocess.run([CLNAS, "validate", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        cost = httpx.post(f"{server.url}/api/cost", json={"arch": doc}, timeout=30).json()
        assert cost["madds"] == doc["provenance"]["cost"]["madds"]
        baselines = httpx.get(f"{server.url}/api/studies/{sid}/baselines", timeout=30).json()
        assert [b["baseline"] for b in baselines["items"]] == EXAMPLE["baselines"]
    finally:
        server.stop()


@pytest.mark.slow
def test_server_killed_mid_study_resumes_on_restart(tmp_path: Path, db_url: str) -> None:
    server = Server(tmp_path, db_url)
    server.start("first.log")
    try:
        sid = httpx.post(f"{server.url}/api/studies", json=EXAMPLE, timeout=30).json()["id"]
        wait_for(server, sid, lambda b: b["progress"]["completed"] + b["progress"]["pruned"] >= 1
              and b["progress"]["running"] >= 1)
    finally:
        server.kill()
    time.sleep(3)  # the study process and Ray head follow their parent down
    before = _snapshot(db_url, EXAMPLE["name"])
    done_before = {n: v for n, v in before.items() if v[0] in DONE}
    assert done_before and len(done_before) < EXAMPLE["search"]["n_trials"]
    server.start("second.log")
    try:
        body = wait_for(server, sid, lambda b: b["status"] == "completed")
    finally:
        server.stop()
    after = _snapshot(db_url, EXAMPLE["name"])
    for n, v in done_before.items():
        assert after[n] == v  # nothing completed before the kill is lost or changed
    done_after = [n for n, v in after.items() if v[0] in DONE]
    assert len(done_after) == EXAMPLE["search"]["n_trials"] == body["progress"]["finished"]
    interrupted = {n for n, v in before.items() if v[0] == "RUNNING"}
    assert {n for n, v in after.items() if v[0] == "FAIL"} == interrupted
    assert len(after) == EXAMPLE["search"]["n_trials"] + len(interrupted)
