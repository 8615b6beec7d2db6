"""The one module that touches PyTorch internals (private ops and names with no public
equivalent). Everything else in clnas uses torch's public API; `tests/test_compat_contracts.py`
scans the sources for private names and runs `contract_problems()` below.

Checked against torch 2.13.0 (CPU build, oneDNN enabled). What is used, and why:

- `torch.ops.mkldnn._convolution_pointwise`: a oneDNN convolution on weights packed once, with
  the activation as a post-op (the op PyTorch's own CPU fusion passes emit). The fused inference
  kernels (`search_space/runtime/kernels.py`) run on it.
- `torch._C._nn.mkldnn_reorder_conv2d_weight`: packs a weight for one input shape.

When a torch release moves one of these, `contract_problems()` names it and the version, and
`ONEDNN` turns false so the kernels fall back to `F.conv2d` / MKL instead of crashing.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

CHECKED_VERSIONS = ("2.13.0",)

ONEDNN: bool = torch.backends.mkldnn.is_available() and hasattr(
    torch.ops.mkldnn, "_convolution_pointwise"
)
# the op itself, for `register_flop_formula` (None where it does not exist)
CONVOLUTION_POINTWISE: Any = torch.ops.mkldnn._convolution_pointwise if ONEDNN else None


def convolution_pointwise(
    x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None, padding: list[int],
    stride: list[int], groups: int, attr: str, scalars: list[float | None],
) -> torch.Tensor:
    """`attr(conv2d(x, W) + bias)` with `W` packed by `reorder_conv2d_weight` (dilation 1)."""
    return torch.ops.mkldnn._convolution_pointwise(
        x, packed, bias, padding, stride, [1, 1], groups, attr, scalars, ""
    )


def reorder_conv2d_weight(
    weight: torch.Tensor, padding: list[int], stride: list[int], groups: int, shape: list[int]
) -> torch.Tensor:
    """`weight` laid out by oneDNN for an input of `shape` (ATen's signature ends with
    `input_size`; the type stub omits it)."""
    return torch._C._nn.mkldnn_reorder_conv2d_weight(  # type: ignore[call-arg]
        weight.contiguous(memory_format=torch.channels_last).to_mkldnn(),
        padding, stride, [1, 1], groups, shape,
    )


def contract_problems() -> list[str]:
    """What no longer holds in the installed torch, each line naming torch and its version
    (empty when the internals above still behave as this module expects)."""
    where = f"torch {torch.__version__} (clnas checked {', '.join(CHECKED_VERSIONS)})"
    problems: list[str] = []
    if not torch.backends.mkldnn.is_available():
        return problems  # a build without oneDNN: the kernels use their public fallbacks
    if not ONEDNN:
        return [*problems, f"{where}: torch.ops.mkldnn._convolution_pointwise is gone"]
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, 8, 6, 6, generator=gen).contiguous(memory_format=torch.channels_last)
        w = torch.randn(16, 4, 3, 3, generator=gen)
        b = torch.randn(16, generator=gen)
        packed = reorder_conv2d_weight(w, [1, 1], [2, 2], 2, list(x.shape))
        got = convolution_pointwise(x, packed, b, [1, 1], [2, 2], 2, "relu", [None])
        want = F.relu(F.conv2d(x, w, b, 2, 1, 1, 2))
        if got.shape != want.shape or not torch.allclose(got, want, atol=1e-4):
            problems.append(f"{where}: the packed oneDNN convolution no longer equals F.conv2d")
    except (RuntimeError, TypeError, AttributeError) as e:
        problems.append(f"{where}: the packed oneDNN convolution fails: {e}")
    return problems
