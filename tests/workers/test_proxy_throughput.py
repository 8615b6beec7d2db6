"""benchmarks/proxy_throughput.py runs as docs/benchmarks.md says: both sides in their own
processes, one row per model with img/s, the ratio, page faults per step and the plan."""

from __future__ import annotations

import importlib.util
import multiprocessing as mp
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(
    r"^(?P<model>\S+)\s+(?P<plain>[\d.]+)\s+(?P<project>[\d.]+)\s+(?P<ratio>[\d.]+)x\s+"
    r"(?P<plain_faults>[\d,]+)\s+(?P<project_faults>[\d,]+)\s+(?P<plan>cpu \S+ fp32)\s*$"
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "benchmarks/proxy_throughput.py", "--threads", "1", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )


def test_cpu_rows_for_two_models() -> None:
    # effnet (CIFAR-size, ~1000 img/s) and HetConv P > 1's NCHW plan, at batch 8
    out = _run("--batch", "8", "--rounds", "2", "--warmup", "0",
               "--models", "effnet", "hetconv_vgg16_p2")
    assert out.returncode == 0, out.stderr
    rows = {m["model"]: m for line in out.stdout.splitlines() if (m := ROW.match(line))}
    assert set(rows) == {"effnet", "hetconv_vgg16_p2"}, out.stdout
    assert rows["effnet"]["plan"] == "cpu channels_last fp32"
    assert rows["hetconv_vgg16_p2"]["plan"] == "cpu contiguous fp32"
    for row in rows.values():
        plain, project, ratio = (float(row[k]) for k in ("plain", "project", "ratio"))
        assert plain > 0 and project > 0
        assert abs(ratio - project / plain) < 0.01 + 0.01 * ratio  # printed to 1 and 2 digits
    assert re.search(r"min ratio [\d.]+x, geometric mean [\d.]+x over 2 models", out.stdout)


def test_unknown_model_is_an_error() -> None:
    out = _run("--rounds", "1", "--models", "no_such_model")
    assert out.returncode != 0
    assert "no_such_model" in out.stderr


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "proxy_throughput_bench", ROOT / "benchmarks" / "proxy_throughput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _put(out: Any, value: object) -> None:
    out.put(value)


def test_concurrent_trials_collect_rates_and_failures() -> None:
    # The GPU trials themselves need CUDA; what the parent does with their answers does not.
    collect = _bench_module()._collect
    ctx = mp.get_context("fork")  # the children only touch the queue

    def run(*targets: tuple[Any, tuple[Any, ...]]) -> list[float]:
        out = ctx.Queue()
        procs = [ctx.Process(target=t, args=(out, *a)) for t, a in targets]
        for p in procs:
            p.start()
        return sorted(collect(procs, out, 60))

    assert run((_put, (1.5,)), (_put, (2.5,))) == [1.5, 2.5]
    with pytest.raises(RuntimeError, match="OutOfMemoryError: boom"):
        run((_put, (1.5,)), (_put, ("OutOfMemoryError: boom",)))
    with pytest.raises(RuntimeError, match=r"died \(exit code 3;"):
        run((_put, (1.5,)), (lambda out: os._exit(3), ()))


def test_a_side_that_died_is_reported_on_every_later_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # imported by its own name, so the spawned sides can import `_runner`
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import argparse

    import proxy_throughput
    import torch

    args = argparse.Namespace(batch=8, threads=1)
    with proxy_throughput._sides(args, torch.device("cpu")) as call:
        with pytest.raises(RuntimeError, match=r"the plain process died \(exit code 1;"):
            call("plain", "load", "no_such_model")  # raises in the side: it exits
        # the next call writes to a pipe nobody reads: the same report, not a BrokenPipeError
        with pytest.raises(RuntimeError, match=r"the plain process died \(exit code 1;"):
            call("plain", "step")
        assert call("project", "load", "effnet") == "cpu channels_last fp32"
