"""Channel dependency graphs and the full-channel-receptive-field rule (docs/design.md §2).

The CDG of a layer is the boolean matrix `D[out, in]`: true where output channel `out` is
computed from input channel `in`. Layer CDGs come from structure alone (groups, interlace,
channel-wise windows, attention); a block's CDG is the boolean product of its layers' CDGs in
data-flow order, with union over parallel branches and shortcuts. Depthwise convs, BatchNorm,
activations and pooling are channel-diagonal (the identity). `block_cdg` follows the modules in
`search_space/blocks` layer by layer; nothing is written by hand per block type.

The CRF of an output channel is its row; a block is FCRF iff every row is all true.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from search_space.arch import Arch, BlockPlan, effnet_bottleneck
from search_space.blocks.dwscw import dwscw_kernels_and_stride
from search_space.blocks.layers import cw_padding, se_hidden

CDG = np.ndarray  # bool, shape (out, in)


# -- layer primitives -------------------------------------------------------------------------


def identity(channels: int) -> CDG:
    """Channel-diagonal layers: depthwise conv, BN, activations, pooling, identity shortcut."""
    return np.eye(channels, dtype=bool)


def grouped(cin: int, cout: int, groups: int = 1) -> CDG:
    """Grouped conv (any kernel): output group `j` reads input group `j` (docs/design.md §1.1).

    `groups = 1` is the dense conv, `groups = cin = cout` the depthwise conv."""
    if cin % groups or cout % groups:
        raise ValueError(f"{groups} groups do not divide {cin} -> {cout} channels")
    out_group = np.arange(cout) // (cout // groups)
    in_group = np.arange(cin) // (cin // groups)
    return out_group[:, None] == in_group[None, :]


def gather(channels: int, index: ArrayLike) -> CDG:
    """Output `o` is input `index[o]` (permutations, index_select)."""
    idx = np.asarray(index, dtype=np.int64).reshape(-1)
    d = np.zeros((idx.size, channels), dtype=bool)
    d[np.arange(idx.size), idx] = True
    return d


def interlace(channels: int, groups: int) -> CDG:
    """ShuffleNet shuffle / clcNet interlace: `out[k*g + i] = in[i*(C/g) + k]` (docs/design.md
    §1.1, §1.2)."""
    if channels % groups:
        raise ValueError(f"{groups} groups do not divide {channels} channels")
    return gather(channels, np.arange(channels).reshape(groups, -1).T.ravel())


def channel_wise(cin: int, cw_kernel: int, kernels: int = 1, cw_stride: int = 1) -> CDG:
    """ChannelNets channel-wise conv (Sec. 3; the group version is Sec. 3.3; docs/design.md §1.4).

    Every kernel yields `cin / cw_stride` outputs; output `o` of each kernel reads the window
    `[o*s - front, o*s - front + dc)` clipped to `[0, cin)` (padding rule of `cw_padding`).
    Output group `j` is kernel `j`, so all groups share the windows."""
    if cin % cw_stride:
        raise ValueError(f"cw_stride {cw_stride} does not divide {cin} channels")
    front, _ = cw_padding(cw_kernel, cw_stride)
    start = np.arange(cin // cw_stride) * cw_stride - front
    channel = np.arange(cin)
    window = (channel[None, :] >= start[:, None]) & (channel[None, :] < start[:, None] + cw_kernel)
    return np.tile(window, (kernels, 1))


def hetconv(cin: int, cout: int, part: int) -> CDG:
    """HetConv, contiguous arrangement (docs/design.md §1.3): the kxk part is a grouped conv with
    `P`
    groups; the 1x1 part of output group `j` reads every input group except `j`."""
    spatial = grouped(cin, cout, part)
    return spatial | ~spatial if part > 1 else spatial


def attention(channels: int, hidden: int = 1) -> CDG:
    """Squeeze-and-excitation `x * sigmoid(FC(ReLU(FC(pool(x)))))` (ANTNets, docs/design.md §1.5):
    the
    identity path unioned with the two FCs that produce the attention vector, so every output
    depends on every channel (docs/design.md §2), whatever the hidden width."""
    excite = compose(grouped(channels, hidden), grouped(hidden, channels))
    return identity(channels) | excite


def concat(*branches: CDG) -> CDG:
    """Channel concatenation of branches that read the same input (ShuffleNet stride 2)."""
    widths = {b.shape[1] for b in branches}
    if len(widths) != 1:
        raise ValueError(f"branches read different input widths {sorted(widths)}")
    return np.vstack(branches)


def union(*branches: CDG) -> CDG:
    """Sum of parallel branches and shortcuts (same shape): an output reads what any reads."""
    shapes = {b.shape for b in branches}
    if len(shapes) != 1:
        raise ValueError(f"cannot sum branches of shapes {sorted(shapes)}")
    return np.logical_or.reduce(branches)


def compose(first: CDG, *rest: CDG) -> CDG:
    """Layers in data-flow order: `compose(a, b)` is the CDG of `b(a(x))`, i.e. `b @ a`."""
    result = first
    for layer in rest:
        result = _product(layer, result)
    return result


def _product(after: CDG, before: CDG) -> CDG:
    """Boolean matrix product `after @ before`.

    Selections (identity, depthwise, interlace) reduce to indexing. Otherwise only the distinct
    rows of `after` are multiplied: a grouped or dense layer has `groups` distinct rows, so the
    matmul stays small for the 2048-channel layers of the zoo. Counts are exact in float32."""
    if after.shape[1] != before.shape[0]:
        raise ValueError(f"cannot compose {before.shape} then {after.shape}")
    if (np.count_nonzero(after, axis=1) == 1).all():
        return before[after.argmax(axis=1)]
    if (np.count_nonzero(before, axis=0) == 1).all():
        return after[:, before.argmax(axis=0)]
    slot: dict[bytes, int] = {}
    inverse = np.array([slot.setdefault(r.tobytes(), len(slot)) for r in np.packbits(after, 1)])
    _, first = np.unique(inverse, return_index=True)
    product = (after[first].astype(np.float32) @ before.astype(np.float32)) > 0
    return product[inverse]


# -- blocks -----------------------------------------------------------------------------------


def _residual(body: CDG, p: BlockPlan) -> CDG:
    """Identity shortcut at stride 1 when `M == N` (mbconv, ant, eant, gm, gcwm)."""
    return union(body, identity(p.cin)) if p.stride == 1 and p.cin == p.cout else body


def _conv(p: BlockPlan) -> CDG:
    return grouped(p.cin, p.cout)


def _hetconv(p: BlockPlan) -> CDG:
    return hetconv(p.cin, p.cout, p.cin if p.spec.part == "in" else p.spec.part)


def _dws(p: BlockPlan) -> CDG:
    return compose(identity(p.cin), grouped(p.cin, p.cout))


def _mbconv(p: BlockPlan) -> CDG:
    hidden = p.cin * p.spec.expand
    expand = grouped(p.cin, hidden) if p.spec.expand > 1 else identity(p.cin)
    return _residual(compose(expand, identity(hidden), grouped(hidden, p.cout)), p)


def _clc(p: BlockPlan) -> CDG:
    s = p.spec
    mid = s.mid or p.cin
    shuffle = interlace(mid, s.g1) if s.interlace else identity(mid)
    # IGC (grouped kxk + interlace) -> BN -> GC; FCRF iff g1*g2 <= L (clcNet Sec. 3).
    return compose(grouped(p.cin, mid, s.g1), shuffle, identity(mid), grouped(mid, p.cout, s.g2))


def _ant_branch(p: BlockPlan, groups: int) -> CDG:
    s = p.spec
    hidden = p.cin * s.expand
    expand = grouped(p.cin, hidden) if s.expand > 1 else identity(p.cin)
    return compose(
        expand,
        identity(hidden),
        attention(hidden, se_hidden(hidden, s.se_ratio)),
        grouped(hidden, p.cout, groups),
    )


def _ant(p: BlockPlan) -> CDG:
    return _residual(_ant_branch(p, p.spec.groups), p)


def _eant(p: BlockPlan) -> CDG:
    # e-ANTBlock: softmax-weighted sum of the members, shortcut added once (docs/design.md §1.5).
    return _residual(union(*(_ant_branch(p, g) for g in p.spec.groups)), p)


def _group_dws_pair(p: BlockPlan) -> CDG:
    g = p.spec.groups
    return compose(
        identity(p.cin), grouped(p.cin, p.cout, g), identity(p.cout), grouped(p.cout, p.cout, g)
    )


def _gm(p: BlockPlan) -> CDG:
    return _residual(_group_dws_pair(p), p)


def _gcwm(p: BlockPlan) -> CDG:
    s = p.spec
    # Group channel-wise conv: `g` kernels with channel stride `g` (ChannelNets Sec. 3.3).
    fuse = channel_wise(p.cout, s.cw_kernel, kernels=s.groups, cw_stride=s.groups)
    return _residual(compose(_group_dws_pair(p), fuse), p)


def _dwscw(p: BlockPlan) -> CDG:
    kernels, cw_stride = dwscw_kernels_and_stride(p.cin, p.cout)
    return compose(identity(p.cin), channel_wise(p.cin, p.spec.cw_kernel, kernels, cw_stride))


def _shuffle(p: BlockPlan) -> CDG:
    s = p.spec
    mid = p.cout // 4
    in_groups = (s.in_groups or s.groups) if p.first else s.groups
    branch_out = p.cout - p.cin if p.stride == 2 else p.cout
    branch = compose(
        grouped(p.cin, mid, in_groups),
        interlace(mid, s.groups),
        identity(mid),
        grouped(mid, branch_out, s.groups),
    )
    # The average-pooled (stride 2) or identity (stride 1) shortcut is channel-diagonal.
    if p.stride == 2:
        return concat(identity(p.cin), branch)
    return union(identity(p.cin), branch)


def _effnet(p: BlockPlan) -> CDG:
    mid = effnet_bottleneck(p.spec, p.cout)
    return compose(grouped(p.cin, mid), identity(mid), identity(mid), grouped(mid, p.cout))


# One rule per registered block type (`search_space.blocks.REGISTRY`; the coverage test in
# tests/objectives/test_block_registry.py fails when one is missing).
BLOCK_CDGS: dict[str, Callable[[BlockPlan], CDG]] = {
    "conv": _conv,
    "hetconv": _hetconv,
    "dws": _dws,
    "mbconv": _mbconv,
    "clc": _clc,
    "ant": _ant,
    "eant": _eant,
    "gm": _gm,
    "gcwm": _gcwm,
    "dwscw": _dwscw,
    "shuffle": _shuffle,
    "effnet": _effnet,
}

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
