"""Measured latency (docs/design.md §3): median of repeated forward passes in inference mode after
warm-up, on this machine, with the thread count recorded.

Two backends, so that users see the latency their deployment will have:
- `"torch"`: eager PyTorch under `torch.inference_mode()`. An arch is built with
  `runtime="fused"` (the default) and runs its fused inference form there
  (`search_space/runtime/`); `runtime="reference"` measures the reference modules. A module is
  measured as it is.
- `"onnxruntime"`: the network exported by `search_space.export` and run by ONNX Runtime's CPU
  provider with `intra_op_num_threads = threads`. Spinning of ORT's idle worker threads is off
  by default: on a machine whose cores are shared (other sessions, other processes) spinning
  workers steal the cores the measured session needs.

`compare_latency` measures several models *interleaved* (one forward of each, round-robin,
`repeats` times) so that ratios between them are robust to background load; report ratios of
medians from one such run.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from search_space import Arch, build_model, load_arch
from search_space.builder import Runtime
from search_space.runtime import FusedNetwork

Backend = Literal["torch", "onnxruntime"]
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
ModelLike = nn.Module | Arch | dict[str, Any] | str


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
    # what ran: "fused" (search_space/runtime/), "reference" (the plain modules), "onnxruntime"
    runtime: str = "reference"

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


@dataclass
class Runner:
    """One model ready to run: `run()` does one forward pass of the prepared input."""

    run: Callable[[], Any]
    batch: int
    resolution: int
    backend: str
    runtime: str  # as in `LatencyReport.runtime`


def _resolve(
    model: ModelLike, resolution: int | None, in_channels: int | None, runtime: Runtime
) -> tuple[nn.Module, int, int]:
    if not isinstance(model, nn.Module):
        arch = load_arch(model)
        resolution = resolution or arch.resolution
        in_channels = in_channels or arch.in_channels
        model = build_model(arch, runtime=runtime)
    if resolution is None:
        raise ValueError("resolution is required when measuring a bare module")
    return model.eval(), resolution, in_channels or 3


def make_runner(
    model: ModelLike,
    *,
    resolution: int | None = None,
    batch: int = 1,
    in_channels: int | None = None,
    backend: Backend = "torch",
    runtime: Runtime = "fused",
    threads: int | None = None,
    ort_spinning: bool = False,
) -> Runner:
    """Prepare `model` (a module, or anything `load_arch` accepts) for timing on `backend`; an
    arch is built with `runtime` (the torch backend; ONNX Runtime runs the reference graph)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    if batch < 1:
        raise ValueError("batch must be >= 1")
    module, resolution, channels = _resolve(model, resolution, in_channels, runtime)
    x = torch.randn(batch, channels, resolution, resolution)
    if backend == "torch":
        fused = isinstance(module, FusedNetwork) and module.uses_inference_plan_for(x)

        def run_torch() -> Any:
            with torch.inference_mode():
                return module(x)

        return Runner(
            run_torch, batch, resolution, "torch-eager", "fused" if fused else "reference"
        )
    session = _ort_session(module, x, threads=threads, spinning=ort_spinning)
    feed = {session.get_inputs()[0].name: x.numpy()}
    return Runner(lambda: session.run(None, feed), batch, resolution, "onnxruntime", "onnxruntime")


def _ort_session(module: nn.Module, x: torch.Tensor, *, threads: int | None, spinning: bool) -> Any:
    import onnxruntime as ort

    from search_space.export import export_onnx

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    model_bytes = export_onnx(module, resolution=x.shape[-1], batch=x.shape[0])
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def compare_latency(
    runners: Mapping[str, Runner],
    *,
    threads: int | None = None,
    warmup: int = 10,
    repeats: int = 50,
) -> dict[str, LatencyReport]:
    """Time every runner interleaved: `warmup` untimed rounds, then `repeats` timed rounds, each
    round one forward pass of every runner in turn. One report per runner."""
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    times: dict[str, list[float]] = {name: [] for name in runners}
    with torch_threads(threads) as used:
        for runner in runners.values():
            runner.run()  # builds lazily prepared state (the fused plan) outside the timing
        for _ in range(warmup):
            for runner in runners.values():
                runner.run()
        for _ in range(repeats):
            for name, runner in runners.items():
                t0 = time.perf_counter()
                runner.run()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: _report(times[name], runner, used, warmup) for name, runner in runners.items()}


def _report(times: list[float], runner: Runner, threads: int, warmup: int) -> LatencyReport:
    q = np.quantile(times, [0.1, 0.9]) if len(times) > 1 else [times[0], times[0]]
    return LatencyReport(
        median_ms=statistics.median(times),
        p10_ms=float(q[0]),
        p90_ms=float(q[1]),
        batch=runner.batch,
        resolution=runner.resolution,
        threads=threads,
        repeats=len(times),
        warmup=warmup,
        device="cpu",
        backend=runner.backend,
        torch_version=torch.__version__,
        machine=platform.machine(),
        runtime=runner.runtime,
    )


def measure_latency(
    model: ModelLike,
    *,
    resolution: int | None = None,
    batch: int = 1,
    threads: int | None = None,
    warmup: int = 10,
    repeats: int = 50,
    in_channels: int | None = None,
    backend: Backend = "torch",
    runtime: Runtime = "fused",
) -> LatencyReport:
    """Median forward latency of `model` (a module, or anything `load_arch` accepts)."""
    if repeats < 1 or warmup < 0 or batch < 1:
        raise ValueError("repeats and batch must be >= 1 and warmup >= 0")
    with torch_threads(threads):
        runner = make_runner(
            model,
            resolution=resolution,
            batch=batch,
            in_channels=in_channels,
            backend=backend,
            runtime=runtime,
            threads=threads,
        )
    return compare_latency({"model": runner}, threads=threads, warmup=warmup, repeats=repeats)[
        "model"
    ]
