"""How a model trains on its device (docs/hardware.md): memory format, autocast dtype, CPU
threads, the trial's share of a GPU, and the one training step the proxy and full trainers share.

- channels_last is applied to 4-D parameters, buffers and inputs only. ChannelNets' channel-wise
  convolutions (gcwm, dwscw) and the convolutional classifier hold 5-D Conv3d weights, for which
  `Module.to(memory_format=torch.channels_last)` raises; those stay contiguous.
- `memory_format="auto"` times a few training steps in each layout on a copy of the model and
  keeps the faster (docs/hardware.md#memory-format): on CPU channels_last is 1.4-1.7x faster for
  the depthwise families and 20% slower for HetConv, so no fixed rule fits every candidate.
- `amp=None` means on for CUDA (bf16 where supported, else fp16 with a GradScaler) and off on
  CPU; `amp=True` on CPU is bf16 autocast, which is how tests run the accelerator path here.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
from torch import nn

log = logging.getLogger(__name__)

MemoryFormat = Literal["auto", "channels_last", "contiguous"]
M = TypeVar("M", bound=nn.Module)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# "auto" times PROBE_WARMUP + PROBE_STEPS steps per layout; it is skipped (device default
# kept) when that would exceed 1/PROBE_MIN_RATIO of the run's steps.
PROBE_WARMUP, PROBE_STEPS, PROBE_MIN_RATIO = 1, 2, 20


@dataclass(frozen=True)
class DevicePlan:
    """Where and how one model trains: `prepare` the model, `input` each batch, run the
    forward pass under `autocast()`, and scale the loss with `grad_scaler()`."""

    device: torch.device
    channels_last: bool
    amp_dtype: torch.dtype | None  # None: full fp32

    def prepare(self, model: M) -> M:
        """`model` on the device, its 4-D tensors in the plan's layout (in place)."""
        model.to(self.device)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        with torch.no_grad():
            for t in (*model.parameters(), *model.buffers()):
                if t.dim() == 4:
                    t.data = t.data.contiguous(memory_format=memory_format)
        return model

    def input(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        if self.amp_dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.amp_dtype):
            yield

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A scaler that is active only for fp16 (bf16 has fp32's exponent range)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def describe(self) -> str:
        layout = "channels_last" if self.channels_last else "contiguous"
        amp = str(self.amp_dtype).removeprefix("torch.") if self.amp_dtype else "fp32"
        return f"{self.device} {layout} {amp}"


def amp_dtype(device: torch.device, amp: bool | None) -> torch.dtype | None:
    """The autocast dtype for `amp` on `device` (None: no autocast); see the module docstring."""
    if amp is None:
        amp = device.type == "cuda"
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def train_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    plan: DevicePlan,
) -> torch.Tensor:
    """One optimiser step of the proxy and full trainers; returns the detached loss."""
    with plan.autocast():
        loss = loss_fn(model(plan.input(x)), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


def make_plan(
    device: torch.device,
    *,
    memory_format: MemoryFormat,
    amp: bool | None,
    probe: Callable[[DevicePlan], float] | None = None,
) -> DevicePlan:
    """The plan on `device`. "auto" asks `probe` (seconds per step of a plan, see `step_timer`
    over the model) for both layouts and keeps the faster; without a probe it keeps the device's
    default: channels_last on CUDA (tensor-core convolutions want NHWC), contiguous on CPU."""
    dtype = amp_dtype(device, amp)
    if memory_format != "auto":
        return DevicePlan(device, memory_format == "channels_last", dtype)
    if probe is None:
        return DevicePlan(device, device.type == "cuda", dtype)
    timed = {cl: probe(DevicePlan(device, cl, dtype)) for cl in (False, True)}
    chosen = DevicePlan(device, timed[True] < timed[False], dtype)
    log.info(
        "memory format: contiguous %.1f ms/step, channels_last %.1f ms/step -> %s",
        timed[False] * 1e3, timed[True] * 1e3, chosen.describe(),
    )
    return chosen


def step_timer(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    loss_fn: LossFn,
    *,
    warmup: int = PROBE_WARMUP,
    steps: int = PROBE_STEPS,
) -> Callable[[DevicePlan], float]:
    """A probe for `make_plan`: the fastest of `steps` timed SGD steps (other processes only
    ever add time) of a copy of `model` on `batch` under a plan. Neither the model, nor torch's
    RNG (dropout, initialisers) is touched."""

    def seconds_per_step(plan: DevicePlan) -> float:
        trial = plan.prepare(copy.deepcopy(model))
        trial.train()
        optimizer = torch.optim.SGD(trial.parameters(), lr=1e-3, momentum=0.9)
        scaler = plan.grad_scaler()
        x, y = batch[0].to(plan.device), batch[1].to(plan.device)
        times = []
        with torch.random.fork_rng(devices=_cuda_indices(plan.device)):
            for i in range(warmup + steps):
                _sync(plan.device)
                t0 = time.perf_counter()
                train_step(trial, x, y, loss_fn, optimizer, scaler, plan)
                _sync(plan.device)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
        return min(times)

    return seconds_per_step


def worth_probing(total_steps: int) -> bool:
    """Whether timing both layouts costs at most 1/PROBE_MIN_RATIO of a run of `total_steps`."""
    return total_steps >= PROBE_MIN_RATIO * 2 * (PROBE_WARMUP + PROBE_STEPS)


def trial_threads(requested: int | None) -> int | None:
    """CPU intra-op threads for one trial: `requested`, else the CPUs Ray gave this trial
    (`search.cpus_per_trial`; torch's default would take every core of the node and make
    concurrent trials oversubscribe it), else None (torch's default)."""
    if requested is not None:
        return requested
    cpus = _ray_assigned().get("CPU")
    return max(1, int(cpus)) if cpus else None


def configure_cuda(device: torch.device) -> None:
    """Settings for a CUDA trial: cuDNN autotuning (every proxy batch has one shape), and a cap
    of this process's memory at its share of the GPU when Ray gave it a fraction
    (`search.gpus_per_trial` 0.25: four trials per GPU, none able to starve the others)."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    share = _ray_assigned().get("GPU")
    if share is not None and 0 < share < 1:
        torch.cuda.set_per_process_memory_fraction(share, device)


def _ray_assigned() -> dict[str, float]:
    """The resources Ray assigned to this worker; {} outside Ray (ray is only imported when
    this process already did: the trainers also run without it)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {}
    try:
        assigned: dict[str, float] = ray.get_runtime_context().get_assigned_resources()
    except AssertionError:  # Ray asserts that this process is a worker, not the driver
        return {}
    return assigned


def _cuda_indices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
