"""Run a study: Optuna samples (define-by-run, constraints from the analytic budget check), Ray
Tune schedules proxy training, Optuna's RDB storage keeps every trial (issue 4).

- A rejected candidate (over budget, not FCRF) never reaches Ray: the searcher tells Optuna at
  once (accuracy 0, its real costs, its reasons as a user attribute) and samples again. Its
  constraint values (`trial.set_constraint`) make it infeasible, so NSGA-II / TPE learn the
  feasible region and `study.best_trials` (the Pareto front) never contains it.
- A trial the scheduler stops early (ASHA / MOASHA) is stored PRUNED with its curve: its
  partial accuracy is not comparable with fully trained ones, so it is not on the front.
- `search.n_trials` counts every sampled candidate, rejected ones included.
- Baselines (zoo models) are trained with the same recipe into the study `{name}.baselines`.
- Resume: the RDB storage is written as each trial ends, so it is the source of truth. Re-running
  an interrupted study marks the trials the killed run left RUNNING as FAIL and samples only
  the remainder; completed trials are never re-run or duplicated. (`Tuner.restore` is not used:
  Tune checkpoints its experiment state periodically, so after a kill -9 it can re-run trials
  that Optuna already holds as complete.)
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import pickle
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState
from ray import tune
from ray.tune.search import Searcher

from objectives import CostReport, cost_report
from objectives.budget import Verdict
from search_space import Arch, load_arch
from search_space.sampling import Suggester, sample_arch
from search_space.spaces import Space
from workers import database
from workers.data import DatasetError, DownloadReport, prepare_dataset
from workers.data import Progress as DataProgress
from workers.ray_address import ray_address as resolve_address
from workers.schedulers import make_scheduler
from workers.study import BASELINES_SUFFIX, StudySpec

ARCH_ATTR, COST_ATTR, REJECTED_ATTR, CURVE_ATTR = "arch", "cost", "rejected", "curve"
PRUNED_AT_ATTR, BASELINE_ATTR, SPEC_ATTR = "pruned_at_epoch", "baseline", "spec"
# Search settings that may change between runs of one study (resources, more trials).
RESUMABLE_SEARCH_KEYS = {"n_trials", "max_concurrent", "cpus_per_trial", "gpus_per_trial",
                         "max_failures"}
# How a trial runs, not what it searches: these may change between runs too (and studies stored
# before the recipe had `memory_format` carry `amp: true`, which then meant "on CUDA only").
RESUMABLE_PROXY_KEYS = {"amp", "memory_format"}

optuna.logging.set_verbosity(optuna.logging.WARNING)


class StudyConflict(ValueError):
    """The storage already holds a study of this name with a different spec."""


def baselines_study_name(name: str) -> str:
    return f"{name}{BASELINES_SUFFIX}"


def make_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    seed = spec.search.seed
    if spec.search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(
            # Small populations select harder: 20-25 for a few hundred trials (measured in
            # tests/workers/test_sampler_constraints.py), never more than 50.
            seed=seed, population_size=max(10, min(50, spec.search.n_trials // 20))
        )
    if spec.search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10)
    return optuna.samplers.RandomSampler(seed=seed)


def absolute_db_url(url: str) -> str:
    """Make a relative SQLite path absolute: Ray workers run in other working directories."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(Path(url[len(prefix):]).resolve())
    return url


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage for `url`, creating its tables if needed.

    Several processes may open a new database at once (the service, a study's driver, its Ray
    workers, a second `clnas search`). Optuna creates its schema table by table and then inserts
    its version row, so two creators race ("table ... already exists", a UNIQUE failure on
    `alembic_version`). SQLite files are created under an exclusive lock on a sibling
    `.lock` file; for server databases a failed creation is retried (it then finds the tables).
    The engine is configured like the service's (`workers.database`): one pool setting, one
    busy timeout, on one file.
    """
    url = absolute_db_url(url)
    lock: Path | None = None
    if database.is_sqlite_file(url):
        path = Path(url[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = path.with_name(path.name + ".lock")
    for attempt in range(5):
        try:
            with _exclusive(lock):
                database.prepare(url)  # WAL: readers (progress, the service) beside the workers
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=database.engine_options(url))
            # the connections that created the tables predate the pragmas: start afresh
            database.configure(storage.engine).dispose()
            return storage
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError,
                sqlalchemy.exc.ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


@contextmanager
def _exclusive(lock: Path | None) -> Iterator[None]:
    if lock is None:
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Candidate:
    arch: Arch
    report: CostReport
    verdict: Verdict

    @property
    def cost(self) -> dict[str, Any]:
        return {"madds": self.report.madds, "params": self.report.params, "fcrf": self.report.fcrf}


def evaluate_candidate(spec: StudySpec, space: Space, trial: Suggester, name: str) -> Candidate:
    """Sample one arch over `trial` (an Optuna trial or any suggester), cost it, judge it."""
    arch = sample_arch(space, trial, name=name)
    report = cost_report(arch, crf=True)
    return Candidate(arch, report, spec.budget.check(report))


class DefineByRun:
    """Sample an arch over the Optuna trial, cost it, apply the budget (picklable for Tune)."""

    def __init__(self, spec: StudySpec):
        self.spec = spec
        self.space = spec.load_space()

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        spec = self.spec
        c = evaluate_candidate(spec, self.space, trial, f"{spec.name}-t{trial.number}")
        for name, value in zip(spec.budget.constraint_names, c.verdict.constraints, strict=True):
            trial.set_constraint(name, value)
        trial.set_user_attr(ARCH_ATTR, c.arch.to_dict())
        trial.set_user_attr(COST_ATTR, c.cost)
        if not c.verdict.feasible:
            trial.set_user_attr(REJECTED_ATTR, [asdict(v) for v in c.verdict.violations])
        return {
            "arch": c.arch.to_dict(),
            "cost": c.cost,
            "rejected": c.verdict.reasons,
            "optuna_trial": trial.number,
        }


def rejected_values(spec: StudySpec, cost: dict[str, Any]) -> list[float]:
    """Objective values told for a rejected candidate: accuracy 0 and its real costs (latency 0
    is a placeholder: the budget constraints already rank it below every feasible trial)."""
    values = {"val_top1": 0.0, "madds": cost["madds"], "params": cost["params"], "latency_ms": 0.0}
    return [float(values[m]) for m in spec.metrics]


class ClnasSearch(Searcher):
    """Ray Tune's public `Searcher` interface over an Optuna study (ask and tell).

    It rejects over-budget candidates without Ray, stops at `n_trials` sampled candidates and
    stores scheduler-stopped trials as PRUNED. Tune pickles the searcher (into the experiment
    state, at `Tuner(...)` and at every checkpoint), so it holds only plain data: the spec, the
    storage URL and Tune trial id -> Optuna trial number. The study (storage, engine, pool,
    locks) is opened lazily on first use, in whichever process the searcher is in, and never
    pickled.
    """

    def __init__(self, spec: StudySpec, storage_url: str):
        super().__init__(metric=list(spec.metrics), mode=list(spec.modes))  # type: ignore[arg-type]
        self._spec = spec
        self._storage_url = absolute_db_url(storage_url)
        self._numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number
        self._failed_here = 0
        self._handles: tuple[optuna.Study, optuna.storages.BaseStorage, DefineByRun] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_handles": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _open(self) -> tuple[optuna.Study, optuna.storages.BaseStorage, DefineByRun]:
        if self._handles is None:
            storage = open_storage(self._storage_url)
            study = optuna.load_study(
                study_name=self._spec.name, storage=storage, sampler=make_sampler(self._spec)
            )
            self._handles = (study, storage, DefineByRun(self._spec))
        return self._handles

    @property
    def study(self) -> optuna.Study:
        return self._open()[0]

    def _used(self) -> int:
        counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        return len(self.study.get_trials(deepcopy=False, states=counted)) + self._failed_here

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        study, _, define = self._open()
        while True:
            if self._used() >= self._spec.search.n_trials:
                return Searcher.FINISHED  # type: ignore[return-value]
            trial = study.ask()
            try:
                config = define(trial)
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise
            if not config["rejected"]:
                self._numbers[trial_id] = trial.number
                return config
            study.tell(trial, rejected_values(self._spec, config["cost"]))

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        number = self._numbers.pop(trial_id, None)
        if number is None:  # told already (or never ours)
            return
        study, storage, _ = self._open()
        if error:
            self._failed_here += 1
            study.tell(number, state=TrialState.FAIL)
            return
        epoch = (result or {}).get("epoch", 0)
        values = [(result or {}).get(m) for m in self._spec.metrics]
        if not result or epoch < self._spec.proxy.epochs or None in values:
            # stopped by the scheduler: its partial accuracy is not comparable, keep its epoch
            set_trial_user_attr(storage, study.study_name, number, PRUNED_AT_ATTR, epoch)
            study.tell(number, state=TrialState.PRUNED)
            return
        floats = [float(v) for v in values]  # type: ignore[arg-type]
        if any(math.isnan(v) for v in floats):
            logging.getLogger(__name__).warning(
                "trial %d reported NaN %s; stored as FAIL", number, self._spec.metrics)
            study.tell(number, state=TrialState.FAIL)
            return
        study.tell(number, floats)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__setstate__(pickle.load(f))


def trial_id_of(storage: optuna.storages.BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of trial `number` of `study_name` (public storage API: trial numbers
    are what studies and users see, ids are what the storage's write methods take)."""
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def set_trial_user_attr(storage: optuna.storages.BaseStorage, study_name: str, number: int,
                        key: str, value: Any) -> None:
    """`Trial.set_user_attr` for a trial known by its number."""
    storage.set_trial_user_attr(trial_id_of(storage, study_name, number), key, value)


def _trainable(config: dict[str, Any], spec_json: str, storage_url: str) -> None:
    """One Tune trial: proxy-train a feasible candidate, keeping its curve in the storage."""
    spec = StudySpec.model_validate_json(spec_json)
    storage = open_storage(storage_url)
    trial_id = trial_id_of(storage, spec.name, config["optuna_trial"])
    _train_and_report(spec, config["arch"], config["cost"], storage, trial_id)


def _train_and_report(
    spec: StudySpec,
    arch_doc: dict[str, Any],
    cost: dict[str, Any],
    storage: optuna.storages.BaseStorage,
    trial_id: int,
) -> dict[str, Any]:
    from objectives.latency import measure_latency
    from workers.proxy import train_proxy

    arch = load_arch(arch_doc)
    latency = None
    if "latency_ms" in spec.objectives:
        latency = measure_latency(arch, threads=1, warmup=3, repeats=10).median_ms
    base = {"madds": cost["madds"], "params": cost["params"], "latency_ms": latency or 0.0}
    curve: list[dict[str, Any]] = []
    last: dict[str, Any] = {}

    def report(metrics: Any) -> None:
        nonlocal last
        curve.append(dict(metrics))
        storage.set_trial_user_attr(trial_id, CURVE_ATTR, curve)
        last = {**base, **metrics}
        tune.report(last)

    train_proxy(arch, spec.proxy, spec.data_dir, dataset=spec.dataset, report=report)
    return last


def _baseline_trainable(config: dict[str, Any], spec_json: str, storage_url: str) -> None:
    """Train one zoo baseline with the study's recipe into the `{name}.baselines` study."""
    spec = StudySpec.model_validate_json(spec_json)
    storage = open_storage(storage_url)
    study = optuna.load_study(study_name=baselines_study_name(spec.name), storage=storage)
    name = config["baseline"]
    arch = load_arch(name)
    report = cost_report(arch, crf=True)
    cost = {"madds": report.madds, "params": report.params, "fcrf": report.fcrf}
    trial = study.ask()
    trial.set_user_attr(BASELINE_ATTR, name)
    trial.set_user_attr(ARCH_ATTR, arch.to_dict())
    trial.set_user_attr(COST_ATTR, cost)
    try:
        last = _train_and_report(spec, arch.to_dict(), cost, storage,
                                 trial_id_of(storage, study.study_name, trial.number))
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    study.tell(trial, [float(last[m]) for m in spec.metrics])


@dataclass
class StudyProgress:
    """Counts over the study's trials (`sampled` = every candidate, rejected included)."""

    n_trials: int
    sampled: int = 0
    rejected: int = 0
    running: int = 0
    completed: int = 0  # trained to the last epoch
    pruned: int = 0
    failed: int = 0
    front_size: int = 0
    baselines_done: int = 0
    baselines_total: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.rejected + self.completed + self.pruned

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"finished": self.finished}

    def shortfall(self) -> str | None:
        """None when every candidate finished and every baseline trained; else what is missing.
        A study falls short when trials fail (a crash, out of memory) or the run was stopped;
        running it again resumes it."""
        missing = []
        if self.finished < self.n_trials:
            missing.append(f"{self.n_trials - self.finished} of {self.n_trials} candidates")
        if self.baselines_done < self.baselines_total:
            missing.append(f"{self.baselines_total - self.baselines_done} of "
                           f"{self.baselines_total} baselines")
        if not missing:
            return None
        failed = f" ({self.failed} candidate trial(s) failed)" if self.failed else ""
        return f"{' and '.join(missing)} did not finish{failed}; run the study again to resume it"


def _trials(storage: optuna.storages.BaseStorage, name: str) -> list[FrozenTrial]:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return []
    return storage.get_all_trials(study_id, deepcopy=False)


def front_trials(storage: optuna.storages.BaseStorage, name: str) -> list[FrozenTrial]:
    """The Pareto set over the study's objectives (Optuna's `best_trials`; infeasible excluded)."""
    try:
        return optuna.load_study(study_name=name, storage=storage).best_trials
    except KeyError:
        return []


def tally(spec: StudySpec, trials: Iterable[FrozenTrial],
          baselines: Iterable[FrozenTrial]) -> StudyProgress:
    """A study's progress counted over its trials and its baselines study's trials
    (`front_size` is left to the caller)."""
    p = StudyProgress(spec.search.n_trials, baselines_total=len(spec.baselines))
    for t in trials:
        p.sampled += 1
        if t.state == TrialState.RUNNING:
            p.running += 1
        elif t.state == TrialState.PRUNED:
            p.pruned += 1
        elif t.state == TrialState.FAIL:
            p.failed += 1
        elif t.state == TrialState.COMPLETE:
            if REJECTED_ATTR in t.user_attrs:
                p.rejected += 1
                for v in t.user_attrs[REJECTED_ATTR]:
                    key = v["constraint"]
                    p.rejected_by_reason[key] = p.rejected_by_reason.get(key, 0) + 1
            else:
                p.completed += 1
    for t in baselines:
        p.baselines_done += t.state == TrialState.COMPLETE
        p.running += t.state == TrialState.RUNNING
    return p


def study_progress(storage: optuna.storages.BaseStorage, spec: StudySpec) -> StudyProgress:
    p = tally(spec, _trials(storage, spec.name),
              _trials(storage, baselines_study_name(spec.name)))
    if p.completed:
        p.front_size = len(front_trials(storage, spec.name))
    return p


def close_stale_trials(storage: optuna.storages.BaseStorage, name: str) -> None:
    """Mark the trials a killed run left RUNNING or WAITING as FAIL (resume, cancel)."""
    for t in _trials(storage, name):
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            storage.set_trial_state_values(trial_id_of(storage, name, t.number), TrialState.FAIL)


def _comparable(spec_doc: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(spec_doc))
    for key in RESUMABLE_SEARCH_KEYS:
        doc.get("search", {}).pop(key, None)
    for key in RESUMABLE_PROXY_KEYS:
        doc.get("proxy", {}).pop(key, None)
    return doc


def prepare_studies(storage: optuna.storages.BaseStorage, spec: StudySpec) -> None:
    """Create (or check and reopen) the study and its baselines study; close stale trials."""
    directions = [
        optuna.study.StudyDirection.MAXIMIZE if m == "max" else optuna.study.StudyDirection.MINIMIZE
        for m in spec.modes
    ]
    doc = spec.model_dump(mode="json")
    for name in (spec.name, baselines_study_name(spec.name)):
        study = optuna.create_study(
            study_name=name, storage=storage, directions=directions, load_if_exists=True
        )
        if study.metric_names != list(spec.metrics):
            # optuna-dashboard and the `optuna` CLI show these instead of "Objective 0"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(spec.metrics))
        stored = study.user_attrs.get(SPEC_ATTR)
        if stored is None:
            study.set_user_attr(SPEC_ATTR, doc)
        elif _comparable(stored) != _comparable(doc):
            raise StudyConflict(
                f"study {spec.name!r} already exists in this database with a different spec "
                "(only search.n_trials, max_concurrent, cpus/gpus_per_trial, max_failures and "
                "proxy.amp, memory_format may change between runs); choose a new name or delete "
                "the old study"
            )
        else:
            study.set_user_attr(SPEC_ATTR, doc)
        close_stale_trials(storage, name)


@contextmanager
def _ray(address: str | None, verbose: int) -> Iterator[None]:
    started = False
    if verbose == 0:  # Tune's new console output prints its tables even at verbose 0
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not ray.is_initialized():
        ray.init(
            address=resolve_address(address),
            include_dashboard=False,
            log_to_driver=verbose > 0,
            logging_level=logging.INFO if verbose else logging.WARNING,
        )
        started = True
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _prepare_data(
    spec: StudySpec, on_download: DataProgress | None = None
) -> tuple[StudySpec, DatasetError | OSError | None]:
    """`spec` as the trials get it, with its dataset made ready once, by the driver, before any
    trial starts, and the error doing so raised (None if none).

    Trials run in Ray's own working directories, so a relative `data_dir` is resolved against
    the driver's working directory. No `data_dir` (each node's `$CLNAS_DATA_DIR` or default)
    and `~/...` (each node's home) are passed on as given. The driver prepares the same folder
    as it sees it: a missing or corrupt archive then fails the study before any trial, naming
    the path to put the archive at, instead of failing every trial, and a download happens once,
    not once per trial. The error is returned, not raised: on a cluster with other machines
    (`_data_error_stands`) their nodes may hold the data on their own disks."""
    given = spec.data_dir
    if given is not None and not given.startswith("~") and not Path(given).is_absolute():
        spec = spec.model_copy(update={"data_dir": str(Path(given).resolve())})
    report = (nullcontext(on_download) if on_download is not None
              else DownloadReport(label=f"downloading {spec.dataset}"))
    try:
        with report as progress:
            prepare_dataset(spec.dataset, spec.data_dir, progress=progress)
    except (DatasetError, OSError) as exc:  # OSError: e.g. no write permission here
        return spec, exc
    return spec, None


def _data_error_stands(error: DatasetError | OSError) -> bool:
    """Whether the driver's `error` preparing the data fails the study, asked once Ray is up:
    yes when every live node runs on this machine (a private local Ray, the default `clnas
    serve`); on a cluster with other machines it is logged and each trial looks for the data
    on its own node."""
    here = ray.util.get_node_ip_address()
    if all(n["NodeManagerAddress"] == here for n in ray.nodes() if n["Alive"]):
        return True
    logging.getLogger(__name__).warning(
        "the driver cannot prepare the data (%s); trials on other nodes look for it there", error)
    return False


@dataclass
class StudyOutcome:
    name: str
    progress: StudyProgress
    front: list[FrozenTrial] = field(default_factory=list)
    baselines: list[FrozenTrial] = field(default_factory=list)


def _run_config(spec: StudySpec, name: str, results_dir: str | Path, verbose: int) -> Any:
    return tune.RunConfig(
        name=name,
        storage_path=str(Path(results_dir).resolve()),
        verbose=verbose,
        failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
    )


def _run_baselines(
    spec: StudySpec, storage_url: str, storage: optuna.storages.BaseStorage,
    results_dir: str | Path, verbose: int,
) -> None:
    done = {
        t.user_attrs.get(BASELINE_ATTR)
        for t in _trials(storage, baselines_study_name(spec.name))
        if t.state == TrialState.COMPLETE
    }
    todo = [b for b in spec.baselines if b not in done]
    if not todo:
        return
    trainable = tune.with_resources(
        tune.with_parameters(
            _baseline_trainable, spec_json=spec.model_dump_json(), storage_url=storage_url
        ),
        {"cpu": spec.search.cpus_per_trial, "gpu": spec.search.gpus_per_trial},
    )
    tune.Tuner(
        trainable,
        param_space={"baseline": tune.grid_search(todo)},
        tune_config=tune.TuneConfig(max_concurrent_trials=spec.search.max_concurrent),
        run_config=_run_config(spec, baselines_study_name(spec.name), results_dir, verbose),
    ).fit()


def run_study(
    spec: StudySpec,
    *,
    storage_url: str,
    results_dir: str | Path,
    ray_address: str | None = None,
    verbose: int = 0,
    on_progress: Callable[[StudyProgress], None] | None = None,
    on_download: DataProgress | None = None,
    poll_s: float = 1.0,
) -> StudyOutcome:
    """Run (or resume) `spec` until `n_trials` candidates are sampled and finished and every
    baseline is trained; returns the Pareto front. A dataset download is reported to
    `on_download` (default: `DownloadReport` on stderr). `on_progress` is called from a polling
    thread about every `poll_s` seconds (and once at the end)."""
    storage_url = absolute_db_url(storage_url)
    storage = open_storage(storage_url)  # a bad --db or a conflicting study fails first
    prepare_studies(storage, spec)
    # the trials get `ready` (a relative data_dir made absolute); the database keeps the spec
    # as given, so a resumed study compares equal whatever the working directory
    ready, data_error = _prepare_data(spec, on_download)
    if (data_error is not None and not ray.is_initialized()
            and resolve_address(ray_address) == "local"):
        raise data_error  # a private local Ray: fail before starting it
    stop = threading.Event()
    poller = None
    if on_progress is not None:
        callback = on_progress

        def poll() -> None:
            while not stop.wait(poll_s):
                try:
                    callback(study_progress(storage, spec))
                except Exception:  # a busy database must not kill the run; retry next tick
                    logging.getLogger(__name__).debug("progress poll failed", exc_info=True)

        poller = threading.Thread(target=poll, name="clnas-progress", daemon=True)
        poller.start()
    try:
        with _ray(ray_address, verbose):
            if data_error is not None and _data_error_stands(data_error):
                raise data_error
            _run_baselines(ready, storage_url, storage, results_dir, verbose)
            if study_progress(storage, spec).finished < spec.search.n_trials:
                _run_search(ready, storage_url, storage, results_dir, verbose)
    finally:
        stop.set()
        if poller is not None:
            poller.join()
    outcome = summarize(storage, spec)
    if on_progress is not None:
        on_progress(outcome.progress)
    return outcome


def _run_search(
    spec: StudySpec, storage_url: str, storage: optuna.storages.BaseStorage,
    results_dir: str | Path, verbose: int,
) -> None:
    scheduler = make_scheduler(
        spec.search.scheduler,
        metric="val_top1",
        mode="max",
        time_attr="epoch",
        max_t=spec.proxy.epochs,
        grace_period=spec.search.grace_period,
        reduction_factor=spec.search.reduction_factor,
        objectives=list(zip(spec.metrics[:2], spec.modes[:2], strict=True)),
    )
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, spec_json=spec.model_dump_json(), storage_url=storage_url),
        {"cpu": spec.search.cpus_per_trial, "gpu": spec.search.gpus_per_trial},
    )
    tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ClnasSearch(spec, storage_url),
            scheduler=scheduler,
            num_samples=-1,  # the searcher says FINISHED at n_trials sampled candidates
            max_concurrent_trials=spec.search.max_concurrent,
        ),
        run_config=_run_config(spec, spec.name, results_dir, verbose),
    ).fit()


def summarize(storage: optuna.storages.BaseStorage, spec: StudySpec) -> StudyOutcome:
    baselines = [
        t for t in _trials(storage, baselines_study_name(spec.name))
        if t.state == TrialState.COMPLETE
    ]
    return StudyOutcome(
        spec.name, study_progress(storage, spec), front_trials(storage, spec.name), baselines
    )
