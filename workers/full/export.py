"""What a finished full-training run leaves behind: the trained weights as safetensors, the
`clnas.arch/1` document they belong to, and an ONNX export checked against PyTorch with
onnxruntime."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from search_space import Arch, build_model, load_arch, torch_compat

log = logging.getLogger(__name__)

ARCH_FILE = "arch.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"
ONNX_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| over the logits of a random batch
ONNX_OPSET = 18


# The exporter warns on every call that torchvision's detection ops are not registered: clnas
# has no torchvision and no such ops.
_EXPORTER_REGISTRY_LOG = torch_compat.EXPORTER_REGISTRY_LOGGER


class ExportError(RuntimeError):
    """The ONNX export does not reproduce the PyTorch model."""


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
    """Export `model` (batch dimension dynamic, input `images`, output `logits`) and return the
    largest absolute difference between onnxruntime's and PyTorch's logits on a random batch of
    three; raise `ExportError` above `ONNX_TOLERANCE`."""
    model = model.cpu().eval()
    shape = (arch.in_channels, arch.resolution, arch.resolution)
    example = torch.randn(2, *shape, generator=torch.Generator().manual_seed(seed))
    with _quiet_exporter():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            opset_version=ONNX_OPSET,
            external_data=False,
            verbose=False,
            dynamo=True,
        )
    check = torch.randn(3, *shape, generator=torch.Generator().manual_seed(seed + 1))
    with torch.inference_mode():
        expected = model(check).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"images": check.numpy()})
    diff = float(np.abs(np.asarray(got) - expected).max())
    if not diff <= ONNX_TOLERANCE:
        raise ExportError(
            f"{path}: onnxruntime differs from PyTorch by {diff:.3g} (> {ONNX_TOLERANCE:g})"
        )
    log.info("ONNX export %s matches PyTorch (max abs diff %.3g)", path, diff)
    return diff


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    registry = logging.getLogger(_EXPORTER_REGISTRY_LOG)
    level = registry.level
    registry.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.export's own deprecations
            yield
    finally:
        registry.setLevel(level)
