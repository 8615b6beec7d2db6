"""Channel dependency graphs and the full-channel-receptive-field rule (docs/design.md §2).

The CDG of a layer is the boolean matrix `D[out, in]`: true where output channel `out` is
computed from input channel `in`. Layer CDGs come from structure alone (groups, interlace,
channel-wise windows, attention); a block's CDG is the boolean product of its layers' CDGs in
data-flow order, with union over parallel branches and shortcuts. Depthwise convs, BatchNorm,
activations and pooling are channel-diagonal (the identity). Each block type's rule
(`BlockSpec.cdg`, in `search_space/block_types/<name>.py`) follows its module in
`search_space/blocks` layer by layer, from the layer primitives of
`search_space/block_types/cdg_ops.py` (re-exported here).

The CRF of an output channel is its row; a block is FCRF iff every row is all true.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from search_space import block_types
from search_space.arch import Arch, BlockPlan
from search_space.block_types.cdg_ops import (
    CDG,
    attention,
    channel_wise,
    compose,
    concat,
    gather,
    grouped,
    hetconv,
    identity,
    interlace,
    union,
)

__all__ = [
    "BLOCK_CDGS",
    "CDG",
    "arch_cdg",
    "attention",
    "block_cdg",
    "block_crf",
    "block_signature",
    "channel_wise",
    "compose",
    "concat",
    "crf_fractions",
    "gather",
    "grouped",
    "hetconv",
    "identity",
    "interlace",
    "is_fcrf",
    "signature_crf",
    "union",
]

# -- blocks: each type's rule is its `BlockSpec.cdg` (search_space/block_types/<name>.py) -------

BLOCK_CDGS = block_types.Table(lambda spec: spec.cdg, "block CDG rules")

# Stage keys that do not change a block's channel structure (stride comes from the plan).
_STAGE_KEYS = frozenset({"out", "stride", "repeat", "pool"})


@dataclass(frozen=True, slots=True)
class _Signature:
    """Cache key: the block's structure; the plan rides along but is not compared."""

    key: tuple[Any, ...]
    plan: BlockPlan = field(compare=False, hash=False)


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# Block CDGs kept across calls, bounded by bytes rather than count: a CDG is `cout x cin` bools,
# up to 16 MiB at the 4096-channel bound (docs/limits.md), so 1024 entries could hold 16 GiB.
CDG_CACHE_BYTES = 256 * 2**20


class _CDGCache:
    """Least-recently-used block CDGs, at most `CDG_CACHE_BYTES` in all (thread-safe: the
    service costs documents on several threads)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[_Signature, CDG] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, signature: _Signature) -> CDG:
        with self._lock:
            d = self._items.get(signature)
            if d is not None:
                self._items.move_to_end(signature)
                return d
        d = BLOCK_CDGS[signature.plan.block](signature.plan)
        d.flags.writeable = False  # shared between every caller of the cache
        with self._lock:
            if signature not in self._items and d.nbytes <= self.max_bytes:
                self._items[signature] = d
                self.nbytes += d.nbytes
                while self.nbytes > self.max_bytes:
                    self.nbytes -= self._items.popitem(last=False)[1].nbytes
        return d

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


_CDG_CACHE = _CDGCache(CDG_CACHE_BYTES)


def _cached_block_cdg(signature: _Signature) -> CDG:
    return _CDG_CACHE.get(signature)


def block_signature(plan: BlockPlan) -> _Signature:
    """A hashable key of the block's channel structure (the plan rides along, uncompared)."""
    # The model's field values (`__dict__`), not `model_dump()`: this runs for every block of
    # every candidate the search costs, so it must stay cheap.
    # Field order is fixed per block class, and `block` (the class's tag) is one of the values.
    params = tuple(_freeze(v) for k, v in plan.spec.__dict__.items() if k not in _STAGE_KEYS)
    return _Signature((plan.cin, plan.cout, plan.stride, plan.first, params), plan)


def block_cdg(plan: BlockPlan) -> CDG:
    """The block's CDG, bool of shape `(cout, cin)`; read-only (cached across repeated blocks)."""
    return _cached_block_cdg(block_signature(plan))


@lru_cache(maxsize=4096)
def signature_crf(signature: _Signature) -> tuple[float, float]:
    d = _cached_block_cdg(signature)
    if d.all():  # the common case, and far cheaper than counting every row
        return 1.0, 1.0
    per_channel = crf_fractions(d)
    return float(per_channel.min()), float(per_channel.mean())


def block_crf(plan: BlockPlan) -> tuple[float, float]:
    """(min, mean) over output channels of the block's CRF fraction (docs/design.md §2), cached."""
    return signature_crf(block_signature(plan))


def arch_cdg(arch: Arch) -> list[tuple[BlockPlan, CDG]]:
    """Every block of the network with its CDG."""
    return [(plan, block_cdg(plan)) for plan in arch.blocks()]


# -- the verdict ------------------------------------------------------------------------------


def crf_fractions(d: CDG) -> np.ndarray:
    """Per output channel, the fraction of the input channels in its CRF (its row of the CDG)."""
    return np.count_nonzero(d, axis=1) / d.shape[1]


def is_fcrf(d: CDG) -> bool:
    """Full channel receptive field: every output channel sees every input channel (docs/design.md
    §2)."""
    return bool(d.all())
