"""The fused inference runtime: BatchNorm folded, channels_last, oneDNN packed kernels and
per-shape fast paths, for `torch.inference_mode()` on CPU.

Used only where asked: `fuse(module)` returns an eval-only copy of a block, head or `Network`
that computes the same function as the reference module in eval mode with the same
multiply-adds; `build_model(arch, runtime="fused")` (a `FusedNetwork`) trains as the reference
network and runs its fused form, kept up to date, under `torch.inference_mode()`. Importing
`search_space` does not import this package; importing it changes no global state of torch (the
flop formula of the oneDNN convolution and the module registration hooks are installed on first
use).
"""

from __future__ import annotations

from search_space.runtime.fused_network import FusedNetwork
from search_space.runtime.kernels import register_flop_formula_once
from search_space.runtime.network import fuse

__all__ = ["FusedNetwork", "fuse", "register_flop_formula_once"]
