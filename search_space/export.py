"""ONNX export for deployment: `clnas export-onnx ARCH [-o FILE] [--resolution R]`.

The exported graph is the network in eval mode in its ONNX form (`blocks/inference/onnx.py`:
the reference modules, with clcNet's IGC as depthwise convolutions); ONNX Runtime folds the
BatchNorms and fuses the activations itself. Exported with PyTorch's `torch.export`-based
exporter (needs the `export` extra: onnx, onnxscript), batch dimension dynamic.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from search_space import Arch, build_model, load_arch
from search_space.blocks.inference.onnx import onnx_form

OPSET = 18


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
    if not isinstance(model, nn.Module):
        arch = load_arch(model)
        resolution = resolution or arch.resolution
        model = build_model(arch)
        in_channels = arch.in_channels
    else:
        arch_attr = getattr(model, "arch", None)
        in_channels = arch_attr.in_channels if isinstance(arch_attr, Arch) else 3
        if resolution is None and isinstance(arch_attr, Arch):
            resolution = arch_attr.resolution
    if resolution is None:
        raise ValueError("resolution is required when exporting a bare module")
    if weights is not None:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    form = onnx_form(model)
    x = torch.randn(batch, in_channels, resolution, resolution)
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    with warnings.catch_warnings(), torch.no_grad():
        # torch.export emits deprecation chatter from its own internals, and the exporter logs a
        # warning per torchvision op it cannot register (torchvision is not a dependency).
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        onnx_log.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(
                form,
                (x,),
                dynamo=True,
                opset_version=OPSET,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                verbose=False,
            )
        finally:
            onnx_log.setLevel(level)
    assert program is not None
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(path) if path is not None else Path(tmp) / "model.onnx"
        program.save(target, external_data=False)
        return target.read_bytes()


def cmd_export_onnx(args: argparse.Namespace) -> int:
    out = Path(args.output or f"{Path(str(args.arch)).stem}.onnx")
    data = export_onnx(args.arch, out, resolution=args.resolution, weights=args.weights)
    print(f"wrote {out} ({len(data) / 1e6:.1f} MB, opset {OPSET}, dynamic batch)")
    return 0


def add_parser(subparsers: Any) -> None:
    """Register `export-onnx` on the `clnas` command line (`service/cli.py`)."""
    p = subparsers.add_parser("export-onnx", help="export an arch to ONNX for deployment")
    p.add_argument("arch", help="zoo name or path to a .json/.yaml clnas.arch/1 document")
    p.add_argument("-o", "--output", help="output file [ARCH.onnx]")
    p.add_argument("--resolution", type=int, default=None, help="input side [the arch's]")
    p.add_argument("--weights", default=None, help="state_dict (.pt) to load before export")
    p.set_defaults(func=cmd_export_onnx)
