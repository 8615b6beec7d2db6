"""The shared API suite (issue 5, acceptance 1): the real app, in process, against SQLite and
against a real PostgreSQL server. Studies are not executed here (`run_studies=False`); their
trials are written to the Optuna store by real sampling + cost model (`seed_study`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from fastapi.testclient import TestClient

from objectives import cost_report
from search_space.arch import parse_arch
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import seed_study

EXAMPLE = json.loads((Path(__file__).parents[2] / "examples" / "synthetic_small.json").read_text())
TOKEN = "s3cret-token"


def _doc(name: str = "api-study", **changes: Any) -> dict[str, Any]:
    return EXAMPLE | {"name": name} | changes


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(db_url=db_url, results_dir=str(tmp_path / "ray"), run_studies=False)
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def secured(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(db_url=db_url, results_dir=str(tmp_path / "ray"), run_studies=False,
                        token=TOKEN)
    with TestClient(create_app(settings)) as c:
        yield c


def test_health_zoo_spaces(client: TestClient) -> None:
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["database"] in ("sqlite", "postgresql")
    zoo = {z["name"]: z for z in client.get("/api/zoo").json()}
    assert (zoo["mobilenet_v2"]["madds"], zoo["mobilenet_v2"]["params"]) == (300_774_272, 3_504_872)
    spaces = {s["name"] for s in client.get("/api/spaces").json()}
    assert {"default", "clcnet", "hetconv", "channelnet", "antnet"} <= spaces
    assert client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(
    ("patch", "loc"),
    [
        ({"search": {"n_trials": 0}}, ["body", "search", "n_trials"]),
        ({"space": "nope"}, ["body", "space"]),
        ({"budget": {"max_madds": -1}}, ["body", "budget", "max_madds"]),
        ({"baselines": ["mobilenet_v2"]}, ["body", "baselines", 0]),
        ({"name": "bad name!"}, ["body", "name"]),
        ({"name": "x.baselines"}, ["body", "name"]),  # where study x keeps its baselines
        ({"search": EXAMPLE["search"] | {"seed": 2**32}}, ["body", "search", "seed"]),
        ({"search": EXAMPLE["search"] | {"cpus_per_trial": float("inf")}},
         ["body", "search", "cpus_per_trial"]),
        ({"proxy": EXAMPLE["proxy"] | {"lr": float("nan")}}, ["body", "proxy", "lr"]),
    ],
)
def test_bad_study_is_422_naming_the_field(client: TestClient, patch: dict, loc: list) -> None:
    # json.dumps writes Infinity / NaN literals, which Python's JSON parser reads back
    r = client.post("/api/studies", content=json.dumps(_doc() | patch),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert loc in [d["loc"] for d in r.json()["detail"]], r.json()
    assert client.get("/api/studies").json()["total"] == 0  # nothing stored


def test_submit_list_conflict_and_404(client: TestClient) -> None:
    r = client.post("/api/studies", json=_doc())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "queued" and body["synthetic"] and body["spec"]["name"] == "api-study"
    assert client.post("/api/studies", json=_doc()).status_code == 409
    for i in range(3):
        assert client.post("/api/studies", json=_doc(f"more-{i}")).status_code == 201
    page = client.get("/api/studies", params={"offset": 1, "limit": 2}).json()
    assert page["total"] == 4 and len(page["items"]) == 2
    assert client.get("/api/studies/999").status_code == 404
    assert client.get("/api/studies/0").status_code == 422
    assert client.get(f"/api/studies/{2**40}").status_code == 422


def test_progress_front_trials_and_exports(client: TestClient, db_url: str) -> None:
    search = EXAMPLE["search"] | {"n_trials": 60}
    doc = _doc("seeded", budget={"max_madds": 25_000_000}, search=search)
    sid = client.post("/api/studies", json=doc).json()["id"]
    spec = seed_study(db_url, doc, 60)
    study = optuna.load_study(study_name=spec.name, storage=db_url)
    rejected = [t for t in study.trials if "rejected" in t.user_attrs]
    body = client.get(f"/api/studies/{sid}").json()
    p = body["progress"]
    assert p["sampled"] == 60 and p["rejected"] == len(rejected) > 0
    assert p["completed"] == 60 - len(rejected) and p["finished"] == 60
    assert p["rejected_by_reason"] == {"madds": len(rejected)}
    assert p["front_size"] == len(study.best_trials) and 0 < body["hypervolume"] <= 1

    front = client.get(f"/api/studies/{sid}/front").json()
    assert sorted(t["number"] for t in front["trials"]) == sorted(
        t.number for t in study.best_trials
    )
    assert all(t["on_front"] and not t["rejected"] for t in front["trials"])

    listed = client.get(f"/api/studies/{sid}/trials", params={"rejected": True, "compact": True})
    items = listed.json()["items"]
    assert len(items) == len(rejected) and items[0]["arch"] is None is items[0]["curve"]
    assert items[0]["reasons"][0]["constraint"] == "madds"
    assert client.get(f"/api/studies/{sid}/trials", params={"state": "FAIL"}).json()["total"] == 0
    assert client.get(f"/api/studies/{sid}/trials", params={"state": "nope"}).status_code == 422
    assert client.get(f"/api/studies/{sid}/trials/9999").status_code == 404
    hv = client.get(f"/api/studies/{sid}/hypervolume").json()["points"]
    assert [p["hypervolume"] for p in hv] == sorted(p["hypervolume"] for p in hv)
    assert hv[-1]["hypervolume"] == pytest.approx(body["hypervolume"])

    best = front["trials"][0]["number"]
    r = client.get(f"/api/studies/{sid}/trials/{best}/export", params={"format": "json"})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    exported = r.json()
    arch = parse_arch(exported)  # a valid clnas.arch/1 document, provenance included
    assert exported["provenance"]["trial"] == best and exported["provenance"]["synthetic"]
    cost = client.post("/api/cost", json={"arch": exported}).json()
    assert cost["madds"] == cost_report(arch).madds == exported["provenance"]["cost"]["madds"]
    as_yaml = client.get(f"/api/studies/{sid}/trials/{best}/export", params={"format": "yaml"})
    assert yaml.safe_load(as_yaml.text) | {"provenance": None} == exported | {"provenance": None}
    r_rej = client.get(f"/api/studies/{sid}/trials/{rejected[0].number}/export")
    assert r_rej.status_code == 409
    bundle = client.get(f"/api/studies/{sid}/export").json()
    assert bundle["format"] == "clnas.bundle/1" and len(bundle["archs"]) == len(front["trials"])


def test_cost_endpoint_errors(client: TestClient) -> None:
    r = client.post("/api/cost", json={"arch": {"format": "clnas.arch/1"}})
    assert r.status_code == 422
    assert any(d["loc"][:2] == ["body", "arch"] for d in r.json()["detail"])
    assert client.post("/api/cost", json={"arch": {}, "resolution": 3}).status_code == 422


def test_cancel_resume_delete(client: TestClient, db_url: str) -> None:
    doc = _doc("lifecycle")
    sid = client.post("/api/studies", json=doc).json()["id"]
    seed_study(db_url, doc, 5)
    assert client.delete(f"/api/studies/{sid}").status_code == 409  # queued: cancel first
    cancelled = client.post(f"/api/studies/{sid}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"  # queued
    assert client.post(f"/api/studies/{sid}/cancel").status_code == 409
    assert client.post(f"/api/studies/{sid}/resume").json()["status"] == "queued"
    assert client.post(f"/api/studies/{sid}/resume").status_code == 409
    client.post(f"/api/studies/{sid}/cancel")
    assert client.delete(f"/api/studies/{sid}").status_code == 204
    assert client.get(f"/api/studies/{sid}").status_code == 404
    with pytest.raises(KeyError):
        optuna.load_study(study_name="lifecycle", storage=db_url)
    assert client.post("/api/studies", json=doc).status_code == 201  # the name is free again


def test_token_protects_mutations(secured: TestClient) -> None:
    assert secured.post("/api/studies", json=_doc()).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert secured.post("/api/studies", json=_doc(), headers=bad).status_code == 401
    ok = {"Authorization": f"Bearer {TOKEN}"}
    sid = secured.post("/api/studies", json=_doc(), headers=ok).json()["id"]
    assert secured.get(f"/api/studies/{sid}").status_code == 200  # reads stay open
    assert secured.post(f"/api/studies/{sid}/cancel").status_code == 401
    assert secured.delete(f"/api/studies/{sid}").status_code == 401
    assert secured.post(f"/api/studies/{sid}/cancel", headers=ok).status_code == 202


def test_non_loopback_bind_needs_a_token() -> None:
    with pytest.raises(ValueError, match="without a token"):
        Settings(host="0.0.0.0").check_bind()
    Settings(host="0.0.0.0", token="t").check_bind()
    Settings(host="127.0.0.1").check_bind()
