"""The one ONNX exporter: `clnas export-onnx ARCH`, a full-training run's `model.onnx` and the
ONNX Runtime latency backend all export through `export_onnx`.

The exported graph is the network in eval mode in its ONNX form (`search_space/runtime/onnx.py`:
the reference modules, with clcNet's IGC as depthwise convolutions); ONNX Runtime folds the
BatchNorms and fuses the activations itself. One exporter (PyTorch's `torch.export`-based one),
one opset, input `images` with a dynamic batch dimension, output `logits`. `verify_onnx` runs
the graph in ONNX Runtime and returns its largest absolute difference from PyTorch's logits.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from search_space import Arch, build_model, load_arch
from search_space.runtime.onnx import onnx_form

OPSET = 18
INPUT, OUTPUT = "images", "logits"
ONNX_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| over the logits of a random batch


class ExportError(RuntimeError):
    """The ONNX export does not reproduce the PyTorch model."""


def export_onnx(
    model: nn.Module | Arch | dict[str, Any] | str | Path,
    path: str | Path | None = None,
    *,
    resolution: int | None = None,
    batch: int = 1,
    weights: str | Path | None = None,
) -> bytes:
    """Export `model` (a module, or anything `load_arch` accepts, built with fresh weights or
    with the `weights` state_dict) to ONNX; writes `path` if given and returns the bytes."""
    model, resolution, in_channels = _resolve(model, resolution)
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    form = onnx_form(model).cpu()
    x = torch.randn(batch, in_channels, resolution, resolution)
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            form,
            (x,),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamo=True,
            opset_version=OPSET,
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
            verbose=False,
        )
    assert program is not None
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(path) if path is not None else Path(tmp) / "model.onnx"
        program.save(target, external_data=False)
        return target.read_bytes()


def verify_onnx(
    model: nn.Module,
    data: bytes,
    *,
    resolution: int | None = None,
    batch: int = 3,
    seed: int = 0,
    tolerance: float = ONNX_TOLERANCE,
) -> float:
    """The largest absolute difference between ONNX Runtime's logits for the exported `data`
    and `model`'s (eval mode, reference modules) on a random batch; `ExportError` above
    `tolerance`."""
    import onnxruntime as ort

    model, resolution, in_channels = _resolve(model, resolution)
    x = torch.randn(
        batch, in_channels, resolution, resolution, generator=torch.Generator().manual_seed(seed)
    )
    device = next(model.parameters()).device
    with torch.no_grad():
        expected = model.eval()(x.to(device)).float().cpu().numpy()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT], {INPUT: x.numpy()})
    diff = float(np.abs(np.asarray(got) - expected).max())
    if not diff <= tolerance:
        raise ExportError(f"onnxruntime differs from PyTorch by {diff:.3g} (> {tolerance:g})")
    return diff


def _resolve(
    model: nn.Module | Arch | dict[str, Any] | str | Path, resolution: int | None
) -> tuple[nn.Module, int, int]:
    """(module, input side, input channels) for a module or anything `load_arch` accepts."""
    if not isinstance(model, nn.Module):
        arch = load_arch(model)
        return build_model(arch), resolution or arch.resolution, arch.in_channels
    arch_attr = getattr(model, "arch", None)
    if isinstance(arch_attr, Arch):
        return model, resolution or arch_attr.resolution, arch_attr.in_channels
    if resolution is None:
        raise ValueError("resolution is required when exporting a bare module")
    return model, resolution, 3


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch.export emits deprecation chatter from its own internals, and the exporter logs a
    warning per torchvision op it cannot register (clnas has no torchvision and no such ops)."""
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        onnx_log.setLevel(level)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    out = Path(args.output or f"{Path(str(args.arch)).stem}.onnx")
    model, resolution, _ = _resolve(args.arch, args.resolution)
    data = export_onnx(model, out, resolution=resolution, weights=args.weights)
    diff = verify_onnx(model, data, resolution=resolution)
    print(
        f"wrote {out} ({len(data) / 1e6:.1f} MB, opset {OPSET}, dynamic batch; "
        f"onnxruntime matches PyTorch, max abs diff {diff:.2g})"
    )
    return 0


def add_parser(subparsers: Any) -> None:
    """Register `export-onnx` on the `clnas` command line (`service/cli.py`)."""
    p = subparsers.add_parser("export-onnx", help="export an arch to ONNX for deployment")
    p.add_argument("arch", help="zoo name or path to a .json/.yaml clnas.arch/1 document")
    p.add_argument("-o", "--output", help="output file [ARCH.onnx]")
    p.add_argument("--resolution", type=int, default=None, help="input side [the arch's]")
    p.add_argument("--weights", default=None, help="state_dict (.pt) to load before export")
    p.set_defaults(func=cmd_export_onnx)
