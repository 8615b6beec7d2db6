"""The loop every Ray Train worker runs (docs/design.md §6 full training): DDP over the workers
(NCCL on
GPU, gloo on CPU), a checkpoint after every epoch (model, optimiser, scheduler, grad scaler, EMA,
metric history, each rank's RNG state) and resumption from the last one, top-1/top-5 on the
whole val split after every epoch; memory format and AMP from the recipe (`workers.device`:
channels_last and AMP by default on GPU, and both can be forced on CPU).

Reproducibility: initial weights come from the seed, batches from `(seed, epoch)` (see
`workers.full.data`), and RNG states are restored on resume, so on CPU a resumed run matches an
uninterrupted one with the same seed and worker count bit for bit."""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from search_space import build_model, load_arch
from workers.data.augment import normalize
from workers.device import DevicePlan, LossFn, configure_cuda, make_plan, train_step
from workers.full.data import (
    CollateReadable,
    EpochSampler,
    ImageFolder,
    ImageFolderDataset,
    ImageNetFolders,
    Transform,
    sample_seed,
)
from workers.full.optim import make_optimizer, make_scheduler
from workers.full.recipe import Recipe
from workers.full.transforms import EvalTransform, TrainTransform

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
PROGRESS_INTERVAL_S = 1.0
_RESEED = 2  # seed stream for RNGs that cannot be restored (workers.full.data uses 0 and 1)


def rng_file(rank: int) -> str:
    return f"rng-rank{rank}.pt"


class EpochMetrics(TypedDict):
    """One epoch, over all workers. Accuracies are fractions in [0, 1]; `ema_*` are None without
    EMA; `wall_s` sums the training time of all epochs so far (across resumes); `skipped_images`
    counts unreadable files met this epoch (train + val); `synthetic` labels metrics measured on
    generated data, which are not ImageNet accuracies."""

    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_top1: float
    val_top5: float
    ema_val_loss: float | None
    ema_val_top1: float | None
    ema_val_top5: float | None
    lr: float  # at the start of the epoch
    images_per_s: float
    epoch_s: float
    wall_s: float
    skipped_images: int
    synthetic: bool


@dataclass(frozen=True)
class Progress:
    """A progress event from rank 0: a step (`metrics` None) or an epoch's end."""

    epoch: int
    epochs: int
    step: int
    steps: int
    train_loss: float  # running mean over this epoch's steps so far (rank 0's share)
    metrics: EpochMetrics | None = None


@dataclass(frozen=True)
class Job:
    """What the driver hands every worker (through `train_loop_config={"job": job}`)."""

    arch: dict[str, Any]
    recipe: Recipe
    folders: Any  # ray.ObjectRef[ImageNetFolders]
    seed: int
    stop_after: int | None  # last epoch of this call; None: recipe.epochs
    loader_workers: int
    progress: Any = None  # ray.util.queue.Queue of Progress events, or None


@dataclass(frozen=True)
class Evaluation:
    loss: float
    top1: float
    top5: float
    skipped: int


def train_loop_per_worker(config: dict[str, Any]) -> None:
    job: Job = config["job"]
    recipe = job.recipe
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    folders: ImageNetFolders = ray.get(job.folders)

    torch.manual_seed(job.seed)  # the same initial weights on every rank
    raw = build_model(load_arch(job.arch))
    configure_cuda(device)
    plan = device_plan(recipe, device, raw)
    raw = plan.prepare(raw)
    model = ray.train.torch.prepare_model(raw)  # wraps `raw` in DDP
    ema = (
        AveragedModel(raw, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True)
        if recipe.ema_decay is not None
        else None
    )
    per_rank = recipe.batch_size // world
    train_sampler = EpochSampler(
        len(folders.train), rank=rank, world_size=world, shuffle=True, seed=job.seed
    )
    train_loader = _loader(
        folders.train,
        TrainTransform(recipe.image_size, recipe.crop_scale_min, recipe.color_jitter),
        train_sampler,
        per_rank,
        job,
        drop_last=True,
    )
    val_loader = _loader(
        folders.val,
        EvalTransform(recipe.image_size, recipe.eval_resize),
        EpochSampler(len(folders.val), rank=rank, world_size=world),
        per_rank,
        job,
        drop_last=False,
    )
    optimizer = make_optimizer(raw, recipe)
    scheduler = make_scheduler(optimizer, recipe, len(train_loader))
    scaler = plan.grad_scaler()
    loss_fn = batch_loss(nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing))
    mean = torch.tensor(recipe.mean, device=device)
    std = torch.tensor(recipe.std, device=device)
    history = _restore(raw, optimizer, scheduler, scaler, ema, rank, world, device, job.seed)

    last = recipe.epochs if job.stop_after is None else min(recipe.epochs, job.stop_after)
    for epoch in range(len(history) + 1, last + 1):
        train_sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        start = time.perf_counter()
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, n, skipped
        shown = start
        steps = len(train_loader)
        for step, (x, y, skipped) in enumerate(train_loader, 1):
            loss = train_step(
                model, normalize(x, mean, std), y, loss_fn, optimizer, scaler, plan
            )
            scheduler.step()
            if ema is not None:
                ema.update_parameters(raw)
            sums[0] += loss.double() * y.numel()
            sums[1] += y.numel()
            sums[2] += skipped
            now = time.perf_counter()
            if (
                rank == 0
                and job.progress is not None
                and (now - shown >= PROGRESS_INTERVAL_S or step == steps)
            ):
                shown = now
                running = float(sums[0] / sums[1]) if sums[1] else math.nan
                job.progress.put(Progress(epoch, recipe.epochs, step, steps, running))
        _all_reduce(sums)
        train_s = time.perf_counter() - start
        # BN running statistics drift apart on each rank between DDP's per-forward buffer
        # broadcasts; evaluate and checkpoint rank 0's, on every rank.
        _broadcast_state(raw)
        ev = evaluate(raw, val_loader, mean, std, plan)
        ev_ema = None
        if ema is not None:
            _broadcast_state(ema)
            ev_ema = evaluate(ema.module, val_loader, mean, std, plan)
        epoch_s = time.perf_counter() - start
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=float(sums[0] / sums[1]) if sums[1] else math.nan,
            val_loss=ev.loss,
            val_top1=ev.top1,
            val_top5=ev.top5,
            ema_val_loss=ev_ema.loss if ev_ema else None,
            ema_val_top1=ev_ema.top1 if ev_ema else None,
            ema_val_top5=ev_ema.top5 if ev_ema else None,
            lr=lr,
            images_per_s=float(sums[1]) / train_s,
            epoch_s=epoch_s,
            wall_s=(history[-1]["wall_s"] if history else 0.0) + epoch_s,
            skipped_images=int(sums[2]) + ev.skipped,
            synthetic=folders.synthetic,
        )
        history.append(metrics)
        log.info("epoch %d/%d %s", epoch, recipe.epochs, metrics)
        _checkpoint(raw, optimizer, scheduler, scaler, ema, history, rank, device)
        if rank == 0 and job.progress is not None:
            job.progress.put(
                Progress(epoch, recipe.epochs, steps, steps, metrics["train_loss"], metrics)
            )


def device_plan(recipe: Recipe, device: torch.device, model: nn.Module) -> DevicePlan:
    """The recipe's memory format and AMP on this worker's device. "auto" is a fixed rule
    (`workers.device.make_plan`), so every rank holds parameters of the same strides, as DDP
    requires."""
    return make_plan(device, memory_format=recipe.memory_format, amp=recipe.amp, model=model)


def batch_loss(criterion: nn.Module) -> LossFn:
    """`criterion`, except that a batch whose images were all unreadable still runs forward and
    backward (zero gradients) so that every rank joins DDP's gradient all-reduce."""

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return criterion(logits, y) if y.numel() else logits.sum() * 0.0

    return loss


def _loader(
    folder: ImageFolder,
    transform: Transform,
    sampler: EpochSampler,
    batch_size: int,
    job: Job,
    *,
    drop_last: bool,
) -> DataLoader[Any]:
    loader: DataLoader[Any] = DataLoader(
        ImageFolderDataset(folder, transform, seed=job.seed),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=job.loader_workers,
        collate_fn=CollateReadable(job.recipe.image_size),
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=job.loader_workers > 0,
    )
    return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False)


def _all_reduce(t: torch.Tensor) -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)


def _broadcast_state(module: nn.Module) -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    loader: DataLoader[Any],
    mean: torch.Tensor,
    std: torch.Tensor,
    plan: DevicePlan,
) -> Evaluation:
    """Mean cross-entropy (no label smoothing), top-1 and top-5 over this rank's share of the
    val split, summed over all ranks. `model` must be the unwrapped module: ranks may hold
    different numbers of batches, and DDP's forward would wait for the others."""
    model.eval()
    device = mean.device
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # loss, top1, top5, n, skipped
    for x, y, skipped in loader:
        sums[4] += skipped
        if not y.numel():
            continue
        with plan.autocast():
            logits = model(plan.input(normalize(x, mean, std))).float()
        hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == y[:, None]
        sums[0] += F.cross_entropy(logits, y, reduction="sum").double()
        sums[1] += hits[:, 0].sum()
        sums[2] += hits.any(dim=1).sum()
        sums[3] += y.numel()
    model.train()
    _all_reduce(sums)
    n = float(sums[3])
    if n == 0:
        return Evaluation(math.nan, math.nan, math.nan, int(sums[4]))
    return Evaluation(float(sums[0]) / n, float(sums[1]) / n, float(sums[2]) / n, int(sums[4]))


def _rng_state(device: torch.device, world: int) -> dict[str, Any]:
    state: dict[str, Any] = {"world_size": world, "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _checkpoint(
    raw: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    ema: AveragedModel | None,
    history: list[EpochMetrics],
    rank: int,
    device: torch.device,
) -> None:
    """Report the epoch's metrics with a checkpoint: rank 0 writes the training state, every
    rank its RNG state; Ray merges the ranks' files into one checkpoint directory."""
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    epoch = history[-1]["epoch"]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if rank == 0:
            torch.save(
                {
                    "epoch": epoch,
                    "model": raw.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "history": history,
                },
                d / STATE_FILE,
            )
        torch.save(_rng_state(device, world), d / rng_file(rank))
        ray.train.report(
            dict(history[-1]),
            checkpoint=ray.train.Checkpoint.from_directory(tmp),
            checkpoint_dir_name=f"epoch-{epoch:04d}",
        )


def _restore(
    raw: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    ema: AveragedModel | None,
    rank: int,
    world: int,
    device: torch.device,
    seed: int,
) -> list[EpochMetrics]:
    """Load the last checkpoint, if any; returns the metric history so far."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return []
    with checkpoint.as_directory() as tmp:
        d = Path(tmp)
        state = torch.load(d / STATE_FILE, map_location=device, weights_only=True)
        raw.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None and state["ema"] is not None:
            ema.load_state_dict(state["ema"])
        rng_path = d / rng_file(rank)
        rng = torch.load(rng_path, weights_only=True) if rng_path.exists() else None
    if rng is not None and rng["world_size"] == world:
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], device)
    else:
        log.warning("checkpoint was written by another number of workers: RNG states reseeded")
        torch.manual_seed(sample_seed(seed, _RESEED, state["epoch"], rank))
    log.info("resumed after epoch %d", state["epoch"])
    history: list[EpochMetrics] = state["history"]
    return history
