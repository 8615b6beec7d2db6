"""Measured latency (SPEC §3): median of repeated batch-1 forward passes in inference mode after
warm-up, on this machine, with the thread count recorded."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from search_space import Arch, build_model, load_arch


@dataclass(frozen=True)
class LatencyReport:
    median_ms: float
    p10_ms: float
    p90_ms: float
    batch: int
    resolution: int
    threads: int
    repeats: int
    warmup: int
    device: str
    backend: str
    torch_version: str
    machine: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run with `threads` intra-op threads (None: leave as is); yields the count in effect."""
    before = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def measure_latency(
    model: nn.Module | Arch | dict[str, Any] | str,
    *,
    resolution: int | None = None,
    batch: int = 1,
    threads: int | None = None,
    warmup: int = 10,
    repeats: int = 50,
    in_channels: int | None = None,
) -> LatencyReport:
    """Median forward latency of `model` (a module, or anything `load_arch` accepts)."""
    if repeats < 1 or warmup < 0 or batch < 1:
        raise ValueError("repeats and batch must be >= 1 and warmup >= 0")
    if not isinstance(model, nn.Module):
        arch = load_arch(model)
        resolution = resolution or arch.resolution
        in_channels = in_channels or arch.in_channels
        model = build_model(arch)
    if resolution is None:
        raise ValueError("resolution is required when measuring a bare module")
    model.eval()
    x = torch.randn(batch, in_channels or 3, resolution, resolution)
    times: list[float] = []
    with torch_threads(threads) as used, torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(times, n=10) if len(times) > 1 else [times[0]] * 9
    return LatencyReport(
        median_ms=statistics.median(times),
        p10_ms=q[0],
        p90_ms=q[-1],
        batch=batch,
        resolution=resolution,
        threads=used,
        repeats=repeats,
        warmup=warmup,
        device="cpu",
        backend="torch-eager",
        torch_version=torch.__version__,
        machine=platform.machine(),
    )
