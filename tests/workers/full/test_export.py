"""ONNX export of every zoo design, checked against PyTorch with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import pytest

from search_space import build_model, load_arch, zoo_names
from workers.full.export import ONNX_TOLERANCE, export_onnx


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo_names())
def test_every_zoo_design_exports_to_onnx(name: str, tmp_path: Path) -> None:
    arch = load_arch(name)
    diff = export_onnx(build_model(arch), arch, tmp_path / f"{name}.onnx")
    assert diff <= ONNX_TOLERANCE
