"""Latency backends (eager PyTorch with the fused inference form, ONNX Runtime on the exported
graph) and interleaved comparison."""

from __future__ import annotations

import pytest
import torch

from objectives.latency import Runner, compare_latency, make_runner, measure_latency

pytest.importorskip("onnxruntime")


def test_torch_backend_runs_the_fused_runtime_by_default() -> None:
    fast = measure_latency("effnet_cifar100", threads=1, warmup=1, repeats=3)
    ref = measure_latency("effnet_cifar100", threads=1, warmup=1, repeats=3, runtime="reference")
    assert (fast.runtime, ref.runtime) == ("fused", "reference")
    assert fast.backend == ref.backend == "torch-eager"


def test_onnxruntime_backend() -> None:
    report = measure_latency(
        "clcnet_a_cifar100", threads=1, warmup=1, repeats=3, backend="onnxruntime"
    )
    assert report.backend == report.runtime == "onnxruntime" and report.threads == 1
    assert 0 < report.p10_ms <= report.median_ms <= report.p90_ms
    assert report.batch == 1 and report.resolution == 32


def test_batch_and_resolution_are_respected() -> None:
    report = measure_latency("effnet", threads=1, warmup=0, repeats=2, batch=4, resolution=48)
    assert (report.batch, report.resolution) == (4, 48)


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="backend"):
        measure_latency("effnet", backend="tvm")  # type: ignore[arg-type]


def test_compare_latency_interleaves_round_robin() -> None:
    calls: list[str] = []

    def runner(name: str) -> Runner:
        return Runner(lambda: calls.append(name), 1, 32, "fake", "reference")

    reports = compare_latency({"a": runner("a"), "b": runner("b")}, warmup=2, repeats=3)
    assert calls == ["a", "b"] * (1 + 2 + 3)  # prepare, warm-up, timed rounds
    assert {r.repeats for r in reports.values()} == {3}


def test_make_runner_prepares_a_module_or_an_arch() -> None:
    net = make_runner("effnet_cifar100")
    assert net.runtime == "fused" and net.resolution == 32
    bare = make_runner(torch.nn.Conv2d(3, 4, 3), resolution=8)
    assert bare.runtime == "reference"
    bare.run()
