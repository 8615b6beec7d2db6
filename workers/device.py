"""How a model trains on its device (docs/hardware.md): memory format, autocast dtype, CPU
threads, the trial's share of a GPU, and the one training step the proxy and full trainers share.

- channels_last is applied to 4-D parameters, buffers and inputs only. ChannelNets' channel-wise
  convolutions (gcwm, dwscw) and the convolutional classifier hold 5-D Conv3d weights, for which
  `Module.to(memory_format=torch.channels_last)` raises; those stay contiguous.
- `memory_format="auto"` is channels_last on CUDA (what tensor-core convolutions want) and, on
  CPU, for every model except one whose modules declare NCHW the safer choice
  (`cpu_prefers_contiguous`; today HetConv with part P > 1, whose 1x1 gather moves P-1 copies
  of its input). Measured, docs/hardware.md#memory-format. A fixed rule, not a timed probe: the
  same plan on every run and on every DDP rank, at no cost.
- `amp=None` means on for CUDA (bf16 where supported, else fp16 with a GradScaler) and off on
  CPU; `amp=True` on CPU is bf16 autocast, which is how tests run the accelerator path here.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
from torch import nn

MemoryFormat = Literal["auto", "channels_last", "contiguous"]
M = TypeVar("M", bound=nn.Module)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

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
    model: nn.Module | None = None,
) -> DevicePlan:
    """The plan for `model` on `device`: "auto" as in the module docstring, the other two taken
    as given; `amp` as in `amp_dtype`."""
    if memory_format == "auto":
        channels_last = device.type != "cpu" or not cpu_prefers_contiguous(model)
    else:
        channels_last = memory_format == "channels_last"
    return DevicePlan(device, channels_last, amp_dtype(device, amp))


def cpu_prefers_contiguous(model: nn.Module | None) -> bool:
    """Whether a module of `model` declares NCHW faster on CPU (docs/hardware.md#memory-format)."""
    if model is None:
        return False
    return any(getattr(m, "cpu_prefers_contiguous", False) for m in model.modules())


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
        cap_memory(share, device)


def cap_memory(share: float, device: torch.device) -> None:
    """Cap this process's allocations on `device` at `share` of its memory. The cap needs an
    explicit index: "cuda" alone raises a ValueError (seen with torch 2.11 on an H200)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    torch.cuda.set_per_process_memory_fraction(share, index)


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
