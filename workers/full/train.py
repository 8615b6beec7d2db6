"""Full ImageNet training of one promoted design through Ray Train (docs/design.md §6, issue 7):
the Python
API the CLI and the service call.

`out_dir` holds one run:

    job.json            the run's arch, recipe, seed and worker count (checked on resume)
    run/epoch-NNNN/     Ray Train checkpoints (last two kept): state.pt + rng-rank<r>.pt
    metrics.json        per-epoch curves, written after every call
    arch.json           the trained clnas.arch/1 document (num_classes, resolution as trained)
    model.safetensors   the final weights (EMA weights when the recipe keeps an EMA)
    model.onnx          the same model in ONNX, checked against PyTorch with onnxruntime

The last three are written once the run reaches its last epoch."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.util.queue import Empty, Queue

from search_space import Arch, build_model, load_arch
from workers.full.data import ImageNetFolders, scan_imagenet
from workers.full.export import (
    ARCH_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    export_onnx,
    save_weights,
    write_arch,
)
from workers.full.loop import STATE_FILE, EpochMetrics, Job, Progress, train_loop_per_worker
from workers.full.recipe import Recipe, load_recipe
from workers.ray_address import ray_address as resolve_address

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
METRICS_FILE = "metrics.json"
RUN_NAME = "run"
JOB_FORMAT = "clnas.full-job/1"
METRICS_FORMAT = "clnas.full-metrics/1"

ProgressCallback = Callable[[Progress], None]


class ResumeError(ValueError):
    """`out_dir` and the `resume` flag disagree, or the run to resume was different."""


@dataclass(frozen=True)
class FullResult:
    """One `train_full` call. `synthetic` is true when the data carried the synthetic mark: its
    accuracies are not ImageNet numbers. Paths of the final artefacts are None until the run
    has reached its last epoch (`completed`)."""

    arch: str
    recipe: str
    out_dir: Path
    epochs: int  # completed so far (over all calls)
    target_epochs: int
    completed: bool
    synthetic: bool
    workers: int
    num_classes: int
    image_size: int
    train_images: int
    val_images: int
    history: tuple[EpochMetrics, ...]
    val_top1: float | None  # last epoch (EMA model when the recipe keeps an EMA)
    val_top5: float | None
    checkpoint: Path | None  # the last Ray Train checkpoint directory
    metrics_path: Path
    arch_path: Path | None
    weights_path: Path | None
    onnx_path: Path | None
    onnx_max_abs_diff: float | None
    wall_s: float  # this call, Ray start-up and export included

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history"] = [dict(m) for m in self.history]
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def train_full(
    arch: Arch | dict[str, Any] | str | Path,
    data_dir: str | Path,
    recipe: Recipe | dict[str, Any] | str | Path = "clcnet",
    *,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float = 1.0,
    epochs: int | None = None,
    batch_size: int | None = None,
    image_size: int | None = None,
    out_dir: str | Path = "clnas_full",
    resume: bool = False,
    seed: int = 0,
    stop_after: int | None = None,
    loader_workers: int | None = None,
    progress_callback: ProgressCallback | None = None,
    ray_address: str | None = None,
    verbose: bool = False,
) -> FullResult:
    """Train `arch` on the ImageNet folders in `data_dir` with `recipe` (a built-in name, a
    file, a dict or a `Recipe`), data-parallel over `workers` Ray Train workers, and export the
    result to `out_dir`.

    `epochs`, `batch_size` (global) and `image_size` override the recipe; the arch is trained at
    `image_size` with the data's class count. `stop_after` ends this call after that epoch
    (the schedule still spans all epochs); `resume=True` continues the run in `out_dir` from its
    last checkpoint (only `epochs` may change). `progress_callback` receives `Progress` events
    from a background thread. Problems with the inputs raise before any worker starts:
    `ImageFolderError` (data), `ArchError` (arch or recipe document), `ResumeError`,
    `ValueError` (settings)."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    stored = _read_job(out) if resume else None
    if not resume and (out / JOB_FILE).exists():
        raise ResumeError(
            f"{out} already holds a run ({JOB_FILE}); resume it or choose another output directory"
        )
    rec = _resolve_recipe(
        recipe, stored, epochs=epochs, batch_size=batch_size, image_size=image_size
    )
    _check_settings(rec, workers, gpus_per_worker, cpus_per_worker, stop_after, loader_workers)
    folders = scan_imagenet(data_dir)
    a = _fit_arch(load_arch(arch), folders, rec)
    if len(folders.train) < rec.batch_size:
        raise ValueError(
            f"the train split has {len(folders.train)} images, fewer than one batch of "
            f"{rec.batch_size}: lower the batch size"
        )
    if stored is not None:
        _check_resumable(stored, a, rec, seed, workers, out)
    out.mkdir(parents=True, exist_ok=True)
    _write_job(out, a, rec, seed, workers, folders)

    if not ray.train.is_v2_enabled():
        raise RuntimeError("clnas full training needs Ray Train V2 (unset RAY_TRAIN_V2_ENABLED)")
    if not ray.is_initialized():
        ray.init(address=resolve_address(ray_address), include_dashboard=False,
                 log_to_driver=verbose)
    use_gpu = gpus_per_worker > 0
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if use_gpu else {})}
    queue = Queue(actor_options={"num_cpus": 0}) if progress_callback is not None else None
    job = Job(
        arch=a.to_dict(),
        recipe=rec,
        folders=ray.put(folders),
        seed=seed,
        stop_after=stop_after,
        loader_workers=int(cpus_per_worker) if loader_workers is None else loader_workers,
        progress=queue,
    )
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=RUN_NAME,
            storage_path=str(out.resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    result = _fit(trainer, queue, progress_callback)
    if result.checkpoint is None:
        raise RuntimeError(f"the run in {out} reported no checkpoint")
    return _finish(out, a, rec, folders, workers, Path(result.checkpoint.path), t0)


def _resolve_recipe(
    recipe: Recipe | dict[str, Any] | str | Path,
    stored: dict[str, Any] | None,
    **overrides: int | None,
) -> Recipe:
    """The recipe with the caller's overrides; on resume, unset overrides keep the stored run's
    values (so resuming without `epochs` does not fall back to the recipe's 100)."""
    rec = load_recipe(recipe)
    if stored is not None:
        before = stored["recipe"]
        overrides = {k: before[k] if v is None else v for k, v in overrides.items()}
    return rec.with_overrides(**overrides)


def _check_settings(
    rec: Recipe,
    workers: int,
    gpus_per_worker: float,
    cpus_per_worker: float,
    stop_after: int | None,
    loader_workers: int | None,
) -> None:
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if gpus_per_worker < 0 or cpus_per_worker <= 0:
        raise ValueError("gpus_per_worker must be >= 0 and cpus_per_worker > 0")
    if rec.batch_size % workers:
        raise ValueError(
            f"batch size {rec.batch_size} does not split evenly over {workers} workers"
        )
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"stop_after must be >= 1, got {stop_after}")
    if loader_workers is not None and loader_workers < 0:
        raise ValueError(f"loader_workers must be >= 0, got {loader_workers}")


def _fit_arch(a: Arch, folders: ImageNetFolders, rec: Recipe) -> Arch:
    """The arch at the training crop size with the data's class count."""
    changes = {
        k: v
        for k, v in (("num_classes", folders.num_classes), ("resolution", rec.image_size))
        if getattr(a, k) != v
    }
    return a.with_changes(**changes) if changes else a


def _read_job(out: Path) -> dict[str, Any]:
    path = out / JOB_FILE
    if not path.exists():
        raise ResumeError(f"nothing to resume in {out}: no {JOB_FILE} (start a new run instead)")
    job: dict[str, Any] = json.loads(path.read_text())
    return job


def _check_resumable(
    stored: dict[str, Any], a: Arch, rec: Recipe, seed: int, workers: int, out: Path
) -> None:
    before = {k: v for k, v in stored["recipe"].items() if k != "epochs"}
    now = {k: v for k, v in rec.model_dump().items() if k != "epochs"}
    changed = [f"recipe.{k}" for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
    if a.to_dict() != stored["arch"]:
        changed.append("arch")
    if seed != stored["seed"]:
        changed.append("seed")
    if changed:
        raise ResumeError(
            f"the run in {out} was started with different settings: {', '.join(changed)}"
        )
    if workers != stored["workers"]:
        log.warning(
            "resuming with %d workers instead of %d: batches are split differently, so the "
            "result will not match an uninterrupted run exactly",
            workers,
            stored["workers"],
        )


def _write_job(
    out: Path, a: Arch, rec: Recipe, seed: int, workers: int, folders: ImageNetFolders
) -> None:
    job = {
        "format": JOB_FORMAT,
        "arch": a.to_dict(),
        "recipe": rec.model_dump(),
        "seed": seed,
        "workers": workers,
        "data_dir": str(folders.root.resolve()),
    }
    (out / JOB_FILE).write_text(json.dumps(job, indent=2) + "\n")


def _fit(
    trainer: TorchTrainer, queue: Queue | None, callback: ProgressCallback | None
) -> ray.train.Result:
    """`trainer.fit()` on this thread (Ray then turns Ctrl-C into a clean abort, after which
    the run can be resumed) while a second thread forwards progress events."""
    stop = threading.Event()

    def pump() -> None:
        assert queue is not None and callback is not None
        while True:
            try:
                event = queue.get(timeout=0.2)
            except Empty:
                if stop.is_set():
                    return
                continue
            try:
                callback(event)
            except Exception:
                log.exception("progress callback failed")

    thread = threading.Thread(target=pump, name="clnas-progress", daemon=True)
    if queue is not None:
        thread.start()
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    try:
        return trainer.fit()
    finally:
        if main:
            signal.signal(signal.SIGINT, sigint)  # Ray's abort handler stays with this run
        stop.set()
        if queue is not None:
            thread.join()
            queue.shutdown()


def _finish(
    out: Path,
    a: Arch,
    rec: Recipe,
    folders: ImageNetFolders,
    workers: int,
    checkpoint: Path,
    t0: float,
) -> FullResult:
    import torch

    state = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
    history: list[EpochMetrics] = state["history"]
    completed = state["epoch"] >= rec.epochs
    metrics_path = out / METRICS_FILE
    metrics_path.write_text(
        json.dumps(
            {
                "format": METRICS_FORMAT,
                "arch": a.name,
                "recipe": rec.model_dump(),
                "synthetic": folders.synthetic,
                "workers": workers,
                "num_classes": folders.num_classes,
                "train_images": len(folders.train),
                "val_images": len(folders.val),
                "completed": completed,
                "history": history,
            },
            indent=2,
        )
        + "\n"
    )
    arch_path = weights_path = onnx_path = None
    diff = None
    if completed:
        model = build_model(a)
        if state["ema"] is not None:
            weights = {
                k.removeprefix("module."): v
                for k, v in state["ema"].items()
                if k.startswith("module.")
            }
        else:
            weights = state["model"]
        model.load_state_dict(weights)
        arch_path, weights_path, onnx_path = out / ARCH_FILE, out / WEIGHTS_FILE, out / ONNX_FILE
        write_arch(a, arch_path)
        save_weights(model, a, weights_path)
        diff = export_onnx(model, a, onnx_path)
    last = history[-1] if history else None
    ema = rec.ema_decay is not None
    return FullResult(
        arch=a.name,
        recipe=rec.name,
        out_dir=out,
        epochs=state["epoch"],
        target_epochs=rec.epochs,
        completed=completed,
        synthetic=folders.synthetic,
        workers=workers,
        num_classes=folders.num_classes,
        image_size=rec.image_size,
        train_images=len(folders.train),
        val_images=len(folders.val),
        history=tuple(history),
        val_top1=None if last is None else last["ema_val_top1" if ema else "val_top1"],
        val_top5=None if last is None else last["ema_val_top5" if ema else "val_top5"],
        checkpoint=checkpoint,
        metrics_path=metrics_path,
        arch_path=arch_path,
        weights_path=weights_path,
        onnx_path=onnx_path,
        onnx_max_abs_diff=diff,
        wall_s=time.perf_counter() - t0,
    )
