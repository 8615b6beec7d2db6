"""The reference count the analytic cost model is tested against (docs/design.md §3): fvcore's
`FlopCountAnalysis` of the built module in eval mode, batch 1, restricted to the operators that
are multiply-adds (fvcore also counts batch norm and adaptive pooling by default)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from objectives.cost import resolve_arch
from objectives.latency import torch_threads
from search_space import Arch, build_model

# fvcore's `by_operator()` names for conv (`aten::_convolution`), linear, matmul and friends.
MADD_OPERATORS = frozenset({"conv", "linear", "matmul", "mm", "addmm", "bmm", "einsum"})


def fvcore_counts(
    arch: Arch | dict[str, Any] | str | Path,
    resolution: int | None = None,
    num_classes: int | None = None,
) -> tuple[int, int]:
    """(madds, params) of the built module: fvcore MAdds and the trainable parameter count."""
    with warnings.catch_warnings():
        # fvcore (an optional dependency) scripts its losses at import: deprecated in torch 2.13.
        warnings.simplefilter("ignore", DeprecationWarning)
        from fvcore.nn import FlopCountAnalysis

    a = resolve_arch(arch, resolution, num_classes)
    model = build_model(a).eval()
    x = torch.zeros(1, a.in_channels, a.resolution, a.resolution)
    # One batch-1 forward is traced: a single thread is as fast, and several OpenMP threads
    # spinning on a busy machine make it 5-20x slower.
    with torch.no_grad(), torch_threads(1):
        flops = (
            FlopCountAnalysis(model, x)
            .unsupported_ops_warnings(False)
            .uncalled_modules_warnings(False)
        )
        by_operator = flops.by_operator()
    madds = sum(v for k, v in by_operator.items() if k in MADD_OPERATORS)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return int(madds), params
