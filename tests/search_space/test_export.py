"""One ONNX exporter: `clnas export-onnx` and a full-training run's `model.onnx` are the same
graph for one arch (same operator multiset: clcNet's IGC as depthwise convolutions in both),
each verified against PyTorch with onnxruntime."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from search_space import build_model, load_arch
from search_space.export import ONNX_TOLERANCE
from service.cli import main

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ARCH = {
    "format": "clnas.arch/1",
    "name": "small_clc",
    "num_classes": 10,
    "resolution": 16,
    "stem": {"out": 16, "kernel": 3, "stride": 1},
    "stages": [
        {"block": "clc", "out": 32, "stride": 2, "g1": 8, "g2": 2},
        {"block": "effnet", "out": 64, "stride": 2},
        {"block": "gcwm", "out": 64, "groups": 2, "cw_kernel": 4},
    ],
    "head": {"type": "fc"},
}


def _ops(path: Path) -> Counter[str]:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def test_cli_and_full_training_export_the_same_graph(tmp_path, capsys):
    from workers.full.export import export_onnx as export_trained

    arch_path = tmp_path / "arch.json"
    arch_path.write_text(json.dumps(ARCH))
    cli_out = tmp_path / "cli.onnx"
    assert main(["export-onnx", str(arch_path), "-o", str(cli_out)]) == 0
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out

    arch = load_arch(ARCH)
    full_out = tmp_path / "model.onnx"
    assert export_trained(build_model(arch), arch, full_out) <= ONNX_TOLERANCE

    ops = _ops(cli_out)
    assert ops == _ops(full_out)
    # Both have the IGC (2 inputs per group) as gathers feeding depthwise convolutions
    # (search_space/runtime/onnx.py), where the trained run's export used to keep the grouped conv.
    assert ops["Gather"] >= 2
