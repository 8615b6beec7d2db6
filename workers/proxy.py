"""Proxy training of one candidate on CIFAR-100 (docs/design.md §6): the recipe, the training loop
with a
per-epoch report hook (how Ray Tune and ASHA see progress), and the result with its costs."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from objectives import cost_report, measure_latency
from objectives.latency import torch_threads
from search_space import Arch, build_model, load_arch
from workers.data import Batches, CifarSplits, ImageSet, load_dataset, split_train_val
from workers.data.cifar import stratified_sample
from workers.device import (
    DevicePlan,
    MemoryFormat,
    configure_cuda,
    make_plan,
    train_step,
    trial_threads,
)

log = logging.getLogger(__name__)

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


class ProxyRecipe(BaseModel):
    """docs/design.md §6 default proxy recipe. `lr` is the rate at batch 256; the optimiser uses
    `scaled_lr` = lr * batch_size / 256 (linear scaling), cosine-decayed to 0 per step."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: PosInt = 12  # NAS-Bench-201's cheap proxy
    batch_size: PosInt = 256
    lr: Annotated[float, Field(gt=0.0)] = 0.1
    momentum: Fraction = 0.9
    nesterov: bool = True
    weight_decay: Annotated[float, Field(ge=0.0)] = 5e-4
    label_smoothing: Fraction = 0.1
    val_size: PosInt = 5000
    # The validation split has its own seed so that candidates trained with different seeds
    # are still compared on the same held-out images.
    split_seed: Seed = 0
    seed: Seed = 0
    max_train_images: PosInt | None = None  # a stratified subsample of the training split
    # CPU intra-op threads (None: the CPUs Ray gave the trial, else torch's default)
    num_threads: PosInt | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    augment: bool = True  # 4-pixel pad random crop + horizontal flip
    # docs/hardware.md#memory-format: "auto" is channels_last unless measured slower
    memory_format: MemoryFormat = "auto"
    # None: on for CUDA (bf16 where supported, else fp16 with GradScaler), off on CPU;
    # True on CPU is bf16 autocast
    amp: bool | None = None
    latency_repeats: NonNegInt = 10  # batch-1 CPU latency repeats after training; 0 skips it

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> ProxyRecipe:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self

    @property
    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / 256


class EpochMetrics(TypedDict):
    """One per-epoch report. Accuracies are fractions in [0, 1]; `wall_s` counts from the start
    of training; `images_per_s` is the training throughput of the epoch; `synthetic` labels
    metrics measured on the generated dataset."""

    epoch: int  # 1-based
    val_top1: float
    val_top5: float
    val_loss: float
    train_loss: float
    lr: float
    images_per_s: float
    wall_s: float
    synthetic: bool


@dataclass(frozen=True)
class Evaluation:
    loss: float  # mean cross-entropy, no label smoothing
    top1: float
    top5: float


@dataclass(frozen=True)
class ProxyResult:
    """A trained candidate. `synthetic` is true when the dataset was generated: label it so."""

    arch: str
    dataset: str
    synthetic: bool
    num_classes: int
    resolution: int
    device: str
    epochs: int  # completed
    diverged: bool  # stopped early on a non-finite training loss
    history: tuple[EpochMetrics, ...]
    val_top1: float  # after the last epoch
    val_top5: float
    val_loss: float
    train_images: int
    val_images: int
    wall_s: float
    madds: int  # objectives.cost_report at the training resolution and class count
    params: int
    fcrf: bool | None
    latency_ms: float | None  # batch-1 CPU median (objectives.measure_latency)
    latency_threads: int | None
    recipe: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history"] = [dict(m) for m in self.history]
        return d


Report = Callable[[EpochMetrics], None]


def resolve_device(device: torch.device | str) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(device)!r} was asked for but CUDA is not available")
    return dev


def train_proxy(
    arch: Arch | dict[str, Any] | str | Path,
    recipe: ProxyRecipe | None = None,
    data_dir: str | Path | None = None,
    *,
    dataset: str = "cifar100",
    report: Report | None = None,
    device: torch.device | str | None = None,
    download: bool = True,
) -> ProxyResult:
    """Train `arch` with `recipe` on `dataset`, evaluate the validation split held out of the
    training set after every epoch and pass the metrics to `report`. The arch is adapted to
    the dataset's 32x32 images and class count. On CPU, the same seed gives identical metrics
    for the same plan (the two memory layouts round differently); the caller's RNG state is
    left untouched."""
    recipe = recipe or ProxyRecipe()
    dev = resolve_device(device if device is not None else recipe.device)
    data = load_dataset(dataset, data_dir, download=download)
    a = _fit_arch(load_arch(arch), data)
    rng_devices = [dev.index or 0] if dev.type == "cuda" else []
    threads = trial_threads(recipe.num_threads)
    with torch_threads(threads), torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(recipe.seed)
        generator = torch.Generator().manual_seed(recipe.seed)
        train, val = split_train_val(data.train, recipe.val_size, seed=recipe.split_seed)
        if recipe.max_train_images is not None and recipe.max_train_images < len(train):
            train = train.subset(
                stratified_sample(train.labels, recipe.max_train_images, generator)
            )
        t0 = time.perf_counter()
        model = build_model(a, runtime="fused")  # evaluate() runs the fused form on CPU
        history = _fit(model, train, val, data, recipe, dev, generator, report)
        wall_s = time.perf_counter() - t0
        cost = cost_report(a)
        latency = (
            measure_latency(a, threads=threads, warmup=3, repeats=recipe.latency_repeats)
            if recipe.latency_repeats
            else None
        )
    last = history[-1]
    return ProxyResult(
        arch=a.name,
        dataset=data.name,
        synthetic=data.synthetic,
        num_classes=a.num_classes,
        resolution=a.resolution,
        device=str(dev),
        epochs=len(history),
        diverged=not math.isfinite(last["train_loss"]),
        history=tuple(history),
        val_top1=last["val_top1"],
        val_top5=last["val_top5"],
        val_loss=last["val_loss"],
        train_images=len(train),
        val_images=len(val),
        wall_s=wall_s,
        madds=cost.madds,
        params=cost.params,
        fcrf=cost.fcrf,
        latency_ms=latency.median_ms if latency else None,
        latency_threads=latency.threads if latency else None,
        recipe=recipe.model_dump(),
    )


def _fit_arch(a: Arch, data: CifarSplits) -> Arch:
    side = int(data.train.images.shape[-1])
    changes = {
        k: v
        for k, v in (("num_classes", data.num_classes), ("resolution", side))
        if getattr(a, k) != v
    }
    return a.with_changes(**changes) if changes else a


def _fit(
    model: nn.Module,
    train: ImageSet,
    val: ImageSet,
    data: CifarSplits,
    recipe: ProxyRecipe,
    dev: torch.device,
    generator: torch.Generator,
    report: Report | None,
) -> list[EpochMetrics]:
    # Drop the last partial batch: a batch of one breaks BatchNorm1d in hidden FC heads.
    train_batches = Batches(
        train.images,
        train.labels,
        recipe.batch_size,
        shuffle=True,
        generator=generator,
        device=dev,
        augment=recipe.augment,
        drop_last=len(train) >= recipe.batch_size,
        mean=data.mean,
        std=data.std,
    )
    val_batches = Batches(
        val.images, val.labels, recipe.batch_size, device=dev, mean=data.mean, std=data.std
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    total_steps = recipe.epochs * len(train_batches)
    configure_cuda(dev)
    plan = plan_for(model, recipe, dev)
    log.info("training on %s", plan.describe())
    model = plan.prepare(model)
    optimizer = make_optimizer(model, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    scaler = plan.grad_scaler()
    history: list[EpochMetrics] = []
    start = time.perf_counter()
    for epoch in range(1, recipe.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        epoch_start = time.perf_counter()
        loss_sum = torch.zeros((), device=dev)
        for x, y in train_batches:
            loss = train_step(model, x, y, criterion, optimizer, scaler, plan)
            scheduler.step()
            loss_sum += loss.float() * y.shape[0]
        train_loss = loss_sum.item() / train_batches.num_images  # .item() syncs the device
        train_s = time.perf_counter() - epoch_start
        ev = evaluate(model, val_batches, plan)
        metrics = EpochMetrics(
            epoch=epoch,
            val_top1=ev.top1,
            val_top5=ev.top5,
            val_loss=ev.loss,
            train_loss=train_loss,
            lr=lr,
            images_per_s=train_batches.num_images / train_s,
            wall_s=time.perf_counter() - start,
            synthetic=data.synthetic,
        )
        history.append(metrics)
        log.info("epoch %d/%d %s", epoch, recipe.epochs, metrics)
        if report is not None:
            report(metrics)
        if not math.isfinite(train_loss):
            log.warning("training loss is %s at epoch %d: stopping", train_loss, epoch)
            break
    return history


def make_optimizer(model: nn.Module, recipe: ProxyRecipe) -> torch.optim.SGD:
    return torch.optim.SGD(
        model.parameters(),
        lr=recipe.scaled_lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )


def plan_for(model: nn.Module, recipe: ProxyRecipe, dev: torch.device) -> DevicePlan:
    """The recipe's memory format and AMP for `model` on `dev` (`workers.device.make_plan`)."""
    return make_plan(dev, memory_format=recipe.memory_format, amp=recipe.amp, model=model)


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Batches, plan: DevicePlan) -> Evaluation:
    """Mean loss, top-1 and top-5 accuracy of `model` over `batches`."""
    model.eval()
    loss = torch.zeros((), device=batches.device)
    top1 = torch.zeros((), device=batches.device)
    top5 = torch.zeros((), device=batches.device)
    for x, y in batches:
        with plan.autocast():
            logits = model(plan.input(x)).float()
        loss += F.cross_entropy(logits, y, reduction="sum")
        hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == y[:, None]
        top1 += hits[:, 0].sum()
        top5 += hits.any(dim=1).sum()
    n = batches.num_images
    return Evaluation(loss.item() / n, top1.item() / n, top5.item() / n)
