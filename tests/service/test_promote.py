"""Issue 7, acceptance 4: promotion of a trial to full training through the API.

The shared API suite style (SQLite and a throwaway PostgreSQL server): request validation, 404,
409 and auth; the trial's `full` field and the study's `kendall_tau` on scripted train results
written straight into `clnas_jobs`; and (slow) a real promotion on a seeded synthetic study,
trained by the service's runner on its own Ray head."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.app import create_app
from service.db import JobRow, RunRow, StudyRow, make_engine, sessions, utcnow
from service.runner import StudyRunner
from service.settings import Settings
from service.train_worker import JobRecorder
from tests.service.conftest import seed_study
from workers.full.loop import EpochMetrics, Progress
from workers.tune import REJECTED_ATTR

EXAMPLE = json.loads((Path(__file__).parents[2] / "examples" / "synthetic_small.json").read_text())
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _doc(name: str, n_trials: int = 30) -> dict[str, Any]:
    return EXAMPLE | {"name": name, "search": EXAMPLE["search"] | {"n_trials": n_trials}}


def _layout(root: Path) -> Path:
    """The top level of the ImageNet folder layout (what the request path checks)."""
    for split in ("train", "val"):
        (root / split).mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """A service data dir holding `imagenet/`, the default promotion data."""
    _layout(tmp_path / "data" / "imagenet")
    return tmp_path / "data"


@pytest.fixture
def client(db_url: str, tmp_path: Path, data_root: Path) -> Iterator[TestClient]:
    settings = Settings(db_url=db_url, results_dir=str(tmp_path / "ray"), run_studies=False,
                        data_dir=str(data_root))
    with TestClient(create_app(settings)) as c:
        yield c


def _seeded(client: TestClient, db_url: str, name: str = "promo") -> tuple[int, list[Any]]:
    doc = _doc(name)
    sid = client.post("/api/studies", json=doc).json()["id"]
    seed_study(db_url, doc, 30)
    trials = optuna.load_study(study_name=name, storage=db_url).trials
    return sid, trials


def _feasible(trials: list[Any]) -> list[Any]:
    return [t for t in trials if t.state.name == "COMPLETE" and REJECTED_ATTR not in t.user_attrs]


def _jobs(db_url: str) -> list[JobRow]:
    engine = make_engine(db_url)
    with sessions(engine)() as s:
        rows = list(s.scalars(select(JobRow).order_by(JobRow.id)))
    engine.dispose()
    return rows


BAD_REQUESTS: list[tuple[dict[str, Any], list[str]]] = [
    ({"recipe": "resnet50"}, ["body", "recipe"]),
    ({"workers": 0}, ["body", "workers"]),
    ({"gpus_per_worker": -1}, ["body", "gpus_per_worker"]),
    ({"epochs": 0}, ["body", "epochs"]),
    ({"cpus_per_worker": 0}, ["body", "cpus_per_worker"]),
    ({"image_size": 4}, ["body", "image_size"]),
    ({"seed": "abc"}, ["body", "seed"]),
    ({"data_dir": "/nonexistent/imagenet"}, ["body", "data_dir"]),
    ({"data_dir": "a\u0000b"}, ["body", "data_dir"]),  # not even a path
    ({"data_dir": "~nosuchuser/imagenet"}, ["body", "data_dir"]),
    ({"data_dir": "x" * 4096}, ["body", "data_dir"]),  # longer than the OS allows
    ({"workers": 3}, ["body", "workers"]),  # clcnet's batch of 256 over 3 workers
    ({"workers": 2, "batch_size": 9}, ["body", "batch_size"]),
    ({"learning_rate": 0.1}, ["body", "learning_rate"]),
]


def test_bad_promotion_is_422_naming_the_field(client: TestClient, db_url: str) -> None:
    sid, trials = _seeded(client, db_url)
    number = _feasible(trials)[0].number
    for body, loc in BAD_REQUESTS:
        r = client.post(f"/api/studies/{sid}/trials/{number}/promote", json=body)
        assert r.status_code == 422, (body, r.text)
        assert loc in [d["loc"] for d in r.json()["detail"]], (body, r.json())
    assert client.get("/api/jobs").json()["total"] == 0  # nothing stored


def test_data_dir_without_the_layout(client: TestClient, db_url: str, tmp_path: Path) -> None:
    sid, trials = _seeded(client, db_url)
    number = _feasible(trials)[0].number
    (tmp_path / "flat").mkdir()
    r = client.post(f"/api/studies/{sid}/trials/{number}/promote",
                    json={"data_dir": str(tmp_path / "flat")})
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["body", "data_dir"] and "train and val" in detail["msg"]


def test_no_default_data_dir(db_url: str, tmp_path: Path) -> None:
    settings = Settings(db_url=db_url, results_dir=str(tmp_path / "ray"), run_studies=False)
    with TestClient(create_app(settings)) as c:
        sid, trials = _seeded(c, db_url)
        r = c.post(f"/api/studies/{sid}/trials/{_feasible(trials)[0].number}/promote", json={})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "data_dir"]
        explicit = str(_layout(tmp_path / "elsewhere"))
        r = c.post(f"/api/studies/{sid}/trials/{_feasible(trials)[0].number}/promote",
                   json={"data_dir": explicit})
        assert r.status_code == 202 and r.json()["spec"]["data_dir"] == explicit


def test_promote_job_lifecycle(client: TestClient, db_url: str, data_root: Path) -> None:
    sid, trials = _seeded(client, db_url)
    feasible = _feasible(trials)
    rejected = [t for t in trials if REJECTED_ATTR in t.user_attrs]
    assert feasible and rejected
    number = feasible[0].number
    url = f"/api/studies/{sid}/trials/{number}/promote"

    assert client.post(f"/api/studies/999/trials/{number}/promote", json={}).status_code == 404
    assert client.post(f"/api/studies/{sid}/trials/9999/promote", json={}).status_code == 404
    r = client.post(f"/api/studies/{sid}/trials/{rejected[0].number}/promote", json={})
    assert r.status_code == 409 and "rejected" in r.json()["detail"]
    study = optuna.load_study(study_name="promo", storage=db_url)
    failed = study.ask()
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    r = client.post(f"/api/studies/{sid}/trials/{failed.number}/promote", json={})
    assert r.status_code == 409 and "FAIL" in r.json()["detail"]
    assert client.get("/api/jobs").json()["total"] == 0

    r = client.post(url, json={"recipe": "mobilenet_v2", "workers": 2, "seed": 5})
    assert r.status_code == 202, r.text
    job = r.json()
    assert (job["kind"], job["status"], job["study_id"], job["trial_number"]) == (
        "train", "queued", sid, number)
    run = job["spec"].pop("run")  # the run folder's token
    assert isinstance(run, str) and len(run) == 8
    assert job["spec"] == {
        "recipe": "mobilenet_v2", "data_dir": str((data_root / "imagenet").resolve()),
        "epochs": 300,  # the recipe's, filled in
        "workers": 2, "gpus_per_worker": 0.0, "cpus_per_worker": 1, "batch_size": None,
        "image_size": None, "seed": 5,
    }
    job["spec"]["run"] = run
    assert job["progress"] is None and job["curve"] == [] and job["result"] is None
    assert client.get(f"/api/jobs/{job['id']}").json() == job
    r = client.post(url, json={})
    assert r.status_code == 409 and f"job {job['id']}" in r.json()["detail"]

    full = {"job_id": job["id"], "status": "queued", "recipe": "mobilenet_v2", "epochs": 300,
            "top1": None, "top5": None}
    assert client.get(f"/api/studies/{sid}/trials/{number}").json()["full"] == full
    listed = client.get(f"/api/studies/{sid}/trials", params={"compact": True}).json()["items"]
    assert {t["number"]: t["full"] for t in listed if t["full"]} == {number: full}
    assert client.delete(f"/api/studies/{sid}").status_code == 409  # a job is queued

    assert client.post(f"/api/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    assert client.post(f"/api/jobs/{job['id']}/cancel").status_code == 409
    second = client.post(url, json={"epochs": 2})
    assert second.status_code == 202 and second.json()["spec"]["epochs"] == 2
    jobs = client.get("/api/jobs", params={"study_id": sid}).json()
    assert jobs["total"] == 2 and [j["id"] for j in jobs["items"]] == [
        second.json()["id"], job["id"]]  # newest first
    assert client.get("/api/jobs", params={"study_id": sid + 1}).json()["total"] == 0
    trial = client.get(f"/api/studies/{sid}/trials/{number}").json()
    assert trial["full"]["job_id"] == second.json()["id"]  # the latest job
    assert client.get("/api/jobs/999").status_code == 404
    assert client.get("/api/jobs/0").status_code == 422
    assert client.get(f"/api/studies/{sid}").json()["kendall_tau"] is None


def test_promotion_needs_the_token(db_url: str, tmp_path: Path, data_root: Path) -> None:
    settings = Settings(db_url=db_url, results_dir=str(tmp_path / "ray"), run_studies=False,
                        token=TOKEN, data_dir=str(data_root))
    with TestClient(create_app(settings)) as c:
        doc = _doc("secured")
        sid = c.post("/api/studies", json=doc, headers=AUTH).json()["id"]
        spec = seed_study(db_url, doc, 30)
        number = _feasible(optuna.load_study(study_name=spec.name, storage=db_url).trials)[0].number
        url = f"/api/studies/{sid}/trials/{number}/promote"
        assert c.post(url, json={}).status_code == 401
        assert c.post(url, json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        job = c.post(url, json={}, headers=AUTH)
        assert job.status_code == 202
        assert c.get(f"/api/jobs/{job.json()['id']}").status_code == 200  # reads stay open
        assert c.post(f"/api/jobs/{job.json()['id']}/cancel").status_code == 401
        assert c.post(f"/api/jobs/{job.json()['id']}/cancel", headers=AUTH).status_code == 202


def _write_train_job(db_url: str, sid: int, number: int, status: str,
                     top1: float | None = None) -> int:
    engine = make_engine(db_url)
    with sessions(engine).begin() as s:
        result = None if top1 is None else {"top1": top1, "top5": min(1.0, top1 + 0.2)}
        run = RunRow(kind="train", status=status, spec={"recipe": "clcnet", "epochs": 3},
                     finished_at=utcnow() if status == "completed" else None)
        job = JobRow(study_id=sid, trial_number=number, result=result, run=run)
        s.add(job)
        s.flush()
        job_id = job.id
    engine.dispose()
    return job_id


def test_kendall_tau_on_scripted_results(client: TestClient, db_url: str) -> None:
    sid, trials = _seeded(client, db_url)
    by_proxy = sorted(_feasible(trials), key=lambda t: t.values[0])
    assert len(by_proxy) >= 5 and len({t.values[0] for t in by_proxy}) == len(by_proxy)
    t1, t2, t3, t4, t5 = by_proxy[:5]  # proxy accuracy ascending

    def tau() -> Any:
        return client.get(f"/api/studies/{sid}").json()["kendall_tau"]

    _write_train_job(db_url, sid, t1.number, "completed", 0.10)
    _write_train_job(db_url, sid, t2.number, "completed", 0.30)
    assert tau() is None  # two designs
    _write_train_job(db_url, sid, t5.number, "failed")
    _write_train_job(db_url, sid, t4.number, "running")
    assert tau() is None  # still two with full results
    _write_train_job(db_url, sid, t3.number, "completed", 0.20)
    # full order 0.10, 0.30, 0.20: pairs (1,2) C, (1,3) C, (2,3) D -> (2 - 1) / 3
    assert tau() == {"tau": pytest.approx(1 / 3), "n": 3}
    _write_train_job(db_url, sid, t4.number, "completed", 0.40)
    # + (1,4) C, (2,4) C, (3,4) C -> (5 - 1) / 6
    assert tau() == {"tau": pytest.approx(4 / 6), "n": 4}
    # a newer completed run of design 2 replaces its result: full 0.10, 0.20, 0.20, 0.40 has
    # one tie (2,3) in full and none in proxy: tau-b = 5 / sqrt(6 * 5)
    newest = _write_train_job(db_url, sid, t2.number, "completed", 0.20)
    assert tau() == {"tau": pytest.approx(5 / 30**0.5), "n": 4}
    # a re-promotion under way does not hide the completed result from tau
    running = _write_train_job(db_url, sid, t2.number, "running")
    assert tau()["n"] == 4

    trial2 = client.get(f"/api/studies/{sid}/trials/{t2.number}").json()["full"]
    assert trial2 == {"job_id": running, "status": "running", "recipe": "clcnet", "epochs": 3,
                      "top1": None, "top5": None}
    trial4 = client.get(f"/api/studies/{sid}/trials/{t4.number}").json()["full"]
    assert (trial4["status"], trial4["top1"], trial4["top5"]) == ("completed", 0.40,
                                                                 pytest.approx(0.60))
    assert client.get(f"/api/studies/{sid}/trials/{t5.number}").json()["full"]["status"] == (
        "failed")
    fronts = client.get(f"/api/studies/{sid}/front").json()["trials"]
    done = {t1.number, t2.number, t3.number, t4.number, t5.number}
    assert all((f["full"] is not None) == (f["number"] in done) for f in fronts)
    listed = client.get("/api/studies").json()["items"][0]
    assert listed["kendall_tau"] == tau()
    assert newest < running


def test_interrupted_train_jobs_are_queued_again(db_url: str, tmp_path: Path) -> None:
    settings = Settings(db_url=db_url, results_dir=str(tmp_path / "ray"), run_studies=False)
    with TestClient(create_app(settings)) as c:
        sid = c.post("/api/studies", json=_doc("restart")).json()["id"]
    running = _write_train_job(db_url, sid, 0, "running")
    done = _write_train_job(db_url, sid, 1, "completed", 0.5)
    engine = make_engine(db_url)
    with sessions(engine).begin() as s:
        s.get(StudyRow, sid).run.status = "running"
    runner = StudyRunner(settings.resolved(), sessions(engine))
    runner.requeue_interrupted()
    with sessions(engine)() as s:
        assert s.get(JobRow, running).status == "queued"
        assert s.get(JobRow, done).status == "completed"
        assert s.get(StudyRow, sid).status == "queued"
    engine.dispose()


def _metrics(epoch: int, top1: float, ema_top1: float | None = None) -> EpochMetrics:
    return EpochMetrics(
        epoch=epoch, train_loss=2.0, val_loss=1.5, val_top1=top1, val_top5=top1 + 0.2,
        ema_val_loss=None if ema_top1 is None else 1.4, ema_val_top1=ema_top1,
        ema_val_top5=None if ema_top1 is None else ema_top1 + 0.2, lr=0.1, images_per_s=10.0,
        epoch_s=1.0, wall_s=float(epoch), skipped_images=0, synthetic=True,
    )


def test_recorder_writes_progress_and_curve(client: TestClient, db_url: str) -> None:
    """What the train process writes into its row: throttled step progress, one curve point per
    epoch (an epoch redone after a resume replaces its point), nothing once cancelled."""
    sid = client.post("/api/studies", json=_doc("recorded")).json()["id"]
    job_id = _write_train_job(db_url, sid, 0, "running")
    engine = make_engine(db_url)
    with sessions(engine)() as s:
        run_id = s.get(JobRow, job_id).run_id
    recorder = JobRecorder(sessions(engine), job_id, run_id, [])

    def job() -> dict[str, Any]:
        return client.get(f"/api/jobs/{job_id}").json()

    recorder(Progress(1, 3, 5, 10, 2.3))
    assert job()["progress"] == {"epoch": 0, "epochs": 3, "step": 5, "steps": 10}
    recorder(Progress(1, 3, 6, 10, 2.2))  # within the write interval: skipped
    assert job()["progress"]["step"] == 5
    recorder(Progress(1, 3, 10, 10, 2.0, _metrics(1, 0.3)))
    recorder(Progress(2, 3, 10, 10, 2.0, _metrics(2, 0.4, ema_top1=0.45)))
    body = job()
    assert body["progress"] == {"epoch": 2, "epochs": 3, "step": 10, "steps": 10}
    assert [(p["epoch"], p["top1"]) for p in body["curve"]] == [(1, 0.3), (2, 0.45)]
    assert body["curve"][1]["val_top1"] == 0.4 and body["curve"][1]["loss"] == 1.4
    resumed = JobRecorder(sessions(engine), job_id, run_id, body["curve"])  # a restarted process
    resumed(Progress(2, 3, 10, 10, 2.0, _metrics(2, 0.5)))
    assert [(p["epoch"], p["top1"]) for p in job()["curve"]] == [(1, 0.3), (2, 0.5)]
    assert job()["result"] is None and job()["status"] == "running"
    assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 202  # no runner here
    resumed(Progress(3, 3, 10, 10, 2.0, _metrics(3, 0.6)))
    assert job()["status"] == "cancelling" and len(job()["curve"]) == 2
    engine.dispose()


# -- a real promotion ----------------------------------------------------------------------
def _searched_study(tmp_path: Path, train_per_class: int = 8) -> tuple[int, Settings]:
    """A seeded synthetic study marked completed (so the runner does not start it), JPEG
    folders in the ImageNet layout as the service's data, and the service's settings."""
    from workers.full.synthetic import write_synthetic_imagenet

    db_url = f"sqlite:///{tmp_path / 'clnas.db'}"
    write_synthetic_imagenet(tmp_path / "data" / "imagenet", num_classes=4,
                             train_per_class=train_per_class, seed=3)
    doc = _doc("e2e", n_trials=12)
    api_only = Settings(db_url=db_url, results_dir=str(tmp_path / "ray"), run_studies=False)
    with TestClient(create_app(api_only)) as c:
        sid = c.post("/api/studies", json=doc).json()["id"]
    seed_study(db_url, doc, 12)
    engine = make_engine(db_url)
    with sessions(engine).begin() as s:
        row = s.get(StudyRow, sid)
        assert row is not None
        row.run.status = "completed"
    engine.dispose()
    return sid, Settings(db_url=db_url, results_dir=str(tmp_path / "ray"), ray_num_cpus=2,
                         data_dir=str(tmp_path / "data"))


def _best(c: TestClient, sid: int) -> int:
    front = c.get(f"/api/studies/{sid}/front").json()["trials"]
    return int(max(front, key=lambda t: t["values"]["val_top1"])["number"])


def _wait(c: TestClient, job_id: int, until: Any, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = c.get(f"/api/jobs/{job_id}").json()
        if until(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.3)


def _log(settings: Settings, job_id: int) -> str:
    log = Path(settings.results_dir) / "logs" / f"train-{job_id}.log"
    return log.read_text() if log.exists() else ""


@pytest.mark.slow
def test_promotion_end_to_end(tmp_path: Path) -> None:
    """The service with its runner and Ray head: promote the best trial of a searched synthetic
    study for one epoch and wait for the result on the job and on the trial."""
    sid, settings = _searched_study(tmp_path)
    with TestClient(create_app(settings)) as c:
        best = _best(c, sid)
        r = c.post(f"/api/studies/{sid}/trials/{best}/promote",
                   json={"epochs": 1, "workers": 1, "batch_size": 8, "image_size": 32})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        job = _wait(c, job_id, lambda j: j["status"] not in ("queued", "running"))
        assert job["status"] == "completed", (job, _log(settings, job_id)[-3000:])
        assert job["progress"]["epoch"] == job["progress"]["epochs"] == 1
        (point,) = job["curve"]
        assert point["epoch"] == 1 and point["synthetic"] is True
        result = job["result"]
        assert result["top1"] == point["top1"] and 0.0 <= result["top1"] <= 1.0
        assert result["synthetic"] is True and result["epochs"] == 1
        for key in ("checkpoint", "weights", "onnx", "metrics", "arch_file"):
            assert Path(result[key]).exists(), key
        run = c.get(f"/api/jobs/{job_id}").json()["spec"]["run"]
        assert Path(result["out_dir"]) == (tmp_path / "ray" / "train" / f"job-{job_id}-{run}")
        trained = json.loads(Path(result["arch_file"]).read_text())
        assert trained["stages"] == c.get(f"/api/studies/{sid}/trials/{best}").json()[
            "arch"]["stages"]  # the trial's design, at the data's classes and size
        assert (trained["num_classes"], trained["resolution"]) == (4, 32)
        full = c.get(f"/api/studies/{sid}/trials/{best}").json()["full"]
        assert full == {"job_id": job_id, "status": "completed", "recipe": "clcnet",
                        "epochs": 1, "top1": result["top1"], "top5": result["top5"]}


def _checkpointed_epoch(settings: Settings, job_id: int) -> int:
    """The last epoch Ray Train has registered for the job's run (what a resume starts after):
    its checkpoint manager's snapshot, a Ray internal read here only to time the stop."""
    snapshots = (Path(settings.results_dir) / "train").glob(
        f"job-{job_id}-*/run/checkpoint_manager_snapshot.json")
    try:
        results = json.loads(next(snapshots).read_text())["checkpoint_results"]
    except (OSError, ValueError, KeyError, StopIteration):
        return 0
    return max((int(r["metrics"]["epoch"]) for r in results), default=0)


@pytest.mark.slow
def test_interrupted_promotion_resumes_after_restart(tmp_path: Path) -> None:
    """The service stops while a 4-epoch job is past a registered checkpoint; the next service
    start queues it again and the run resumes after that checkpoint instead of starting over."""
    sid, settings = _searched_study(tmp_path, train_per_class=24)
    with TestClient(create_app(settings)) as c:
        r = c.post(f"/api/studies/{sid}/trials/{_best(c, sid)}/promote",
                   json={"epochs": 4, "workers": 1, "batch_size": 8, "image_size": 32})
        job_id = r.json()["id"]
        _wait(c, job_id, lambda j: _checkpointed_epoch(settings, job_id) >= 1
              or j["status"] not in ("queued", "running"))
        done = _checkpointed_epoch(settings, job_id)
        # the curve reaches the database by its own route (a Ray queue, then a write): wait
        # for the checkpointed epochs there too
        first = _wait(c, job_id, lambda j: len(j["curve"]) >= done
                      or j["status"] not in ("queued", "running"), timeout=60)
        assert first["status"] == "running" and 1 <= done < 4, (
            first, _log(settings, job_id)[-3000:])
        assert len(first["curve"]) >= done, first
    with TestClient(create_app(settings)) as c:  # the runner stopped the run: still `running`
        job = c.get(f"/api/jobs/{job_id}").json()
        assert job["status"] in ("queued", "running") and job["result"] is None, job
        job = _wait(c, job_id, lambda j: j["status"] not in ("queued", "running"))
        assert job["status"] == "completed", (job, _log(settings, job_id)[-3000:])
    assert "(resuming)" in _log(settings, job_id)
    assert [p["epoch"] for p in job["curve"]] == [1, 2, 3, 4]
    # the checkpointed epochs were not trained again: same points, timings included
    assert job["curve"][:done] == first["curve"][:done]
    assert job["progress"]["epoch"] == job["result"]["epochs"] == 4
