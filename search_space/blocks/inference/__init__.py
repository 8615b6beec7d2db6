"""Inference forms of the blocks: BatchNorm folded, channels_last, per-shape fast paths.

`fuse_for_inference(module)` returns an eval-only copy of a block, head or `Network` that
computes the same function as the reference module in eval mode with the same multiply-adds.
"""

from __future__ import annotations

from search_space.blocks.inference.network import fuse_for_inference

__all__ = ["fuse_for_inference"]
