"""What a finished full-training run leaves behind: the trained weights as safetensors, the
`clnas.arch/1` document they belong to, and an ONNX export checked against PyTorch with
onnxruntime (the exporter of `clnas export-onnx`, `search_space.export`)."""

from __future__ import annotations

import logging
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from search_space import Arch, build_model, load_arch
from search_space import export as onnx_export
from search_space.export import ONNX_TOLERANCE, ExportError

log = logging.getLogger(__name__)

ARCH_FILE = "arch.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"

__all__ = [
    "ARCH_FILE",
    "ONNX_FILE",
    "ONNX_TOLERANCE",
    "WEIGHTS_FILE",
    "ExportError",
    "export_onnx",
    "load_trained",
    "save_weights",
    "write_arch",
]


def save_weights(model: nn.Module, arch: Arch, path: str | Path) -> None:
    """The model's state dict (float tensors as trained, BN counters included) with the arch
    document in the safetensors metadata, so the file describes itself."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": arch.format, "arch": arch.to_json(None)})


def load_trained(out_dir: str | Path) -> nn.Module:
    """The trained model of a finished run in `out_dir` (eval mode, CPU)."""
    out = Path(out_dir)
    model = build_model(load_arch(out / ARCH_FILE))
    model.load_state_dict(load_file(str(out / WEIGHTS_FILE)))
    return model.eval()


def write_arch(arch: Arch, path: str | Path) -> None:
    Path(path).write_text(arch.to_json() + "\n")


def export_onnx(model: nn.Module, arch: Arch, path: str | Path, *, seed: int = 0) -> float:
    """Write `model`'s ONNX export to `path` with the one exporter `clnas export-onnx` uses
    (`search_space.export`: same graph, opset and checks) and return the largest absolute
    difference between onnxruntime's and PyTorch's logits on a random batch of three; raise
    `ExportError` above `ONNX_TOLERANCE`."""
    data = onnx_export.export_onnx(model, path, resolution=arch.resolution)
    diff = onnx_export.verify_onnx(model, data, resolution=arch.resolution, seed=seed)
    log.info("ONNX export %s matches PyTorch (max abs diff %.3g)", path, diff)
    return diff
