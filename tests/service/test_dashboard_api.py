"""The dashboard's read endpoints (`/api/dashboard/...`) agree with the REST API they stand in
for, on SQLite and on PostgreSQL (they read Optuna's tables directly), and the page and its
assets are served from package data."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service.conftest import seed_study

EXAMPLE = json.loads((Path(__file__).parents[2] / "examples" / "synthetic_small.json").read_text())


@pytest.fixture
def client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(db_url=db_url, results_dir=str(tmp_path / "ray"), run_studies=False)
    with TestClient(create_app(settings)) as c:
        yield c


def _doc(name: str, n: int) -> dict[str, Any]:
    return EXAMPLE | {"name": name, "budget": {"max_madds": 30_000_000},
                      "search": EXAMPLE["search"] | {"n_trials": n}}


@pytest.fixture
def not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local time zone other than UTC (Optuna hands out trial times in local time)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("not_utc")
def test_snapshot_matches_the_rest_api(client: TestClient, db_url: str) -> None:
    doc = _doc("dash-api", 40)
    sid = client.post("/api/studies", json=doc).json()["id"]
    seed_study(db_url, doc, 40)
    api_study = client.get(f"/api/studies/{sid}").json()
    api_trials = client.get(f"/api/studies/{sid}/trials", params={"compact": True}).json()
    snap = client.get(f"/api/dashboard/studies/{sid}").json()

    for key in ("name", "status", "synthetic", "metrics", "n_trials", "progress"):
        assert snap["study"][key] == api_study[key], key
    assert snap["study"]["hypervolume"] == pytest.approx(api_study["hypervolume"])
    assert snap["total"] == api_trials["total"] == 40
    assert snap["trials"] == api_trials["items"]  # the same JSON views, on_front included
    front = client.get(f"/api/studies/{sid}/front").json()["trials"]
    assert snap["front"] == sorted(t["number"] for t in front) != []
    assert snap["hypervolume_history"] == client.get(f"/api/studies/{sid}/hypervolume").json()[
        "points"]
    assert [t["number"] for t in client.get(
        f"/api/dashboard/studies/{sid}", params={"since": 35}).json()["trials"]] == list(
        range(35, 40))

    number = front[0]["number"]
    full = client.get(f"/api/dashboard/studies/{sid}/trials/{number}").json()
    assert full == client.get(f"/api/studies/{sid}/trials/{number}").json()
    assert full["arch"]["format"] == "clnas.arch/1" and full["curve"]

    listed = client.get("/api/dashboard/studies").json()
    assert listed["total"] == 1 and listed["items"][0]["progress"] == api_study["progress"]


def test_snapshot_follows_new_trials(client: TestClient, db_url: str) -> None:
    doc = _doc("dash-live", 12)
    sid = client.post("/api/studies", json=doc).json()["id"]
    seed_study(db_url, doc, 4)
    first = client.get(f"/api/dashboard/studies/{sid}").json()
    assert client.get(f"/api/dashboard/studies/{sid}").json()["version"] == first["version"]
    seed_study(db_url, doc, 3, seed=4)
    second = client.get(f"/api/dashboard/studies/{sid}").json()
    assert second["version"] != first["version"] and second["total"] == 7
    assert second["study"]["progress"] == client.get(f"/api/studies/{sid}").json()["progress"]


def test_cache_keeps_few_snapshots_and_every_summary(client: TestClient, db_url: str) -> None:
    cache = client.app.state.clnas.cache  # type: ignore[attr-defined]
    cache.keep = 1
    ids = []
    for name in ("dash-a", "dash-b"):
        doc = _doc(name, 5)
        ids.append(client.post("/api/studies", json=doc).json()["id"])
        seed_study(db_url, doc, 5)
    for sid in ids:
        assert client.get(f"/api/dashboard/studies/{sid}").json()["total"] == 5
    assert list(cache._snapshots) == [ids[1]] and set(cache._summaries) == set(ids)
    listed = client.get("/api/dashboard/studies").json()["items"]
    assert [s["progress"]["sampled"] for s in listed] == [5, 5]
    assert list(cache._snapshots) == [ids[1]]  # the list is served from the summaries


def test_unknown_ids_and_static_assets(client: TestClient) -> None:
    assert client.get("/api/dashboard/studies/7").status_code == 404
    assert client.get("/api/dashboard/studies/0").status_code == 422
    page = client.get("/")
    assert page.status_code == 200 and "/dashboard/main.js" in page.text
    assert "<script" not in page.text.split("/dashboard/plotly.min.js")[0].split("<head>")[0]
    js = client.get("/dashboard/plotly.min.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert len(js.content) > 1_000_000  # the bundled plotly.js, not a CDN stub
    for asset in ("main.js", "study.js", "scatter.js", "dashboard.css"):
        assert client.get(f"/dashboard/{asset}").status_code == 200, asset


def test_promoted_trials_and_kendall_tau_follow_the_jobs(client: TestClient, db_url: str) -> None:
    from tests.service.test_promote import _write_train_job

    doc = _doc("dash-promoted", 40)
    sid = client.post("/api/studies", json=doc).json()["id"]
    seed_study(db_url, doc, 40)
    first = client.get(f"/api/dashboard/studies/{sid}").json()  # cached before any promotion
    assert first["study"]["kendall_tau"] is None
    assert all(t["full"] is None for t in first["trials"])
    done = sorted((t for t in first["trials"] if t["values"] and not t["rejected"]),
                  key=lambda t: t["values"]["val_top1"])[:4]
    # full accuracy in the proxy's order except one swap: tau = (5 - 1) / 6
    for t, top1 in zip(done, [0.50, 0.60, 0.58, 0.70], strict=True):
        _write_train_job(db_url, sid, t["number"], "completed", top1)
    snap = client.get(f"/api/dashboard/studies/{sid}").json()
    assert snap["version"] != first["version"]  # the jobs invalidate the cached snapshot
    api = client.get(f"/api/studies/{sid}").json()
    assert snap["study"]["kendall_tau"] == api["kendall_tau"]
    assert api["kendall_tau"]["n"] == 4
    assert api["kendall_tau"]["tau"] == pytest.approx(4 / 6)
    api_trials = client.get(f"/api/studies/{sid}/trials", params={"compact": True}).json()
    assert snap["trials"] == api_trials["items"]
    promoted = {t["number"]: t["full"] for t in snap["trials"] if t["full"] is not None}
    assert sorted(promoted) == sorted(t["number"] for t in done)
    assert promoted[done[-1]["number"]]["top1"] == 0.70


@pytest.mark.usefixtures("not_utc")
def test_trial_times_are_utc_on_a_server_in_another_time_zone(
    client: TestClient, db_url: str
) -> None:
    from datetime import UTC, datetime, timedelta

    doc = _doc("dash-times", 3)
    sid = client.post("/api/studies", json=doc).json()["id"]
    before = datetime.now(UTC)
    seed_study(db_url, doc, 3)
    for url in (f"/api/studies/{sid}/trials", f"/api/dashboard/studies/{sid}"):
        body = client.get(url).json()
        for t in body.get("items", body.get("trials")):
            started = datetime.fromisoformat(t["started_at"])
            assert before - timedelta(seconds=5) <= started <= datetime.now(UTC), (url, t)


def test_front_leaves_out_infeasible_trials_that_would_dominate(
    client: TestClient, db_url: str
) -> None:
    """An infeasible trial (Optuna 5 keeps each constraint as a "constraints:NAME" system
    attribute) with the best accuracy and the fewest MAdds must stay off the front."""
    import optuna

    from workers.tune import REJECTED_ATTR, open_storage

    doc = _doc("dash-infeasible", 20)
    sid = client.post("/api/studies", json=doc).json()["id"]
    seed_study(db_url, doc, 12)
    study = optuna.load_study(study_name=doc["name"], storage=open_storage(db_url))
    trial = study.ask()
    trial.set_constraint("params", 5.0)
    trial.set_user_attr(REJECTED_ATTR, [{"constraint": "params", "value": 6e6, "limit": 1e6,
                                         "message": "too many params"}])
    study.tell(trial, [0.99, 1.0])
    best = sorted(t.number for t in study.best_trials)
    assert trial.number not in best
    front = client.get(f"/api/studies/{sid}/front").json()["trials"]
    assert sorted(t["number"] for t in front) == best
    snap = client.get(f"/api/dashboard/studies/{sid}").json()
    assert snap["front"] == best
    assert snap["study"]["progress"]["front_size"] == len(best)
    listed = client.get(f"/api/studies/{sid}/trials/{trial.number}").json()
    assert listed["on_front"] is False and listed["rejected"] is True


def test_hypervolume_and_its_history_share_the_reference(client: TestClient,
                                                          db_url: str) -> None:
    """Without a budget the MAdds reference is 1.1 x the largest value seen over the study's
    finished trials, for the study's figure and for its history alike."""
    doc = _doc("dash-no-budget", 30) | {"budget": {}}
    sid = client.post("/api/studies", json=doc).json()["id"]
    seed_study(db_url, doc, 30)
    import optuna

    from workers.tune import open_storage

    optuna_study = optuna.load_study(study_name=doc["name"], storage=open_storage(db_url))
    largest = max(t.values[1] for t in optuna_study.trials)
    optuna_study.tell(optuna_study.ask(), [0.001, 10 * largest])  # dominated, the largest
    study = client.get(f"/api/studies/{sid}").json()
    history = client.get(f"/api/studies/{sid}/hypervolume").json()["points"]
    assert study["progress"]["rejected"] == 0 and len(history) == 31
    assert study["hypervolume"] == pytest.approx(history[-1]["hypervolume"], rel=1e-12)


def test_snapshot_reads_use_the_callers_connection(client: TestClient, db_url: str) -> None:
    """A request holds one pooled connection; the snapshot reads must not need a second one
    (20 concurrent pollers exhausted the pool that way: QueuePool timeouts, 500s)."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from service.db import StudyRow
    from service.store import SnapshotCache

    doc = _doc("dash-one-connection", 10)
    sid = client.post("/api/studies", json=doc).json()["id"]
    seed_study(db_url, doc, 10)
    engine = create_engine(db_url, pool_size=1, max_overflow=0, pool_timeout=2)
    cache = SnapshotCache(engine)
    spec = client.app.state.clnas.spec  # type: ignore[attr-defined]
    with Session(engine) as s:
        row = s.scalars(select(StudyRow).where(StudyRow.id == sid)).one()  # holds the one
        snap = cache.get(row.id, row.status, spec(row), s)
        summary = cache.summary(row.id, row.status, spec(row), s)
    assert len(snap.trials) == 10 and summary.key == snap.key
    engine.dispose()
