"""Channel dependency graph primitives (docs/design.md §2), torch-free: the layer CDGs a block
type's CDG rule (`BlockSpec.cdg`) composes. `objectives/cdg.py` re-exports them and holds the
block-level analysis (caching, CRF fractions, the FCRF verdict).

The CDG of a layer is the boolean matrix `D[out, in]`: true where output channel `out` is
computed from input channel `in`. A block's CDG is the boolean product of its layers' CDGs in
data-flow order, with union over parallel branches and shortcuts.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from search_space.block_types.base import BlockPlan, cw_padding

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


def residual(body: CDG, p: BlockPlan) -> CDG:
    """Identity shortcut at stride 1 when `M == N` (mbconv, ant, eant, gm, gcwm)."""
    return union(body, identity(p.cin)) if p.stride == 1 and p.cin == p.cout else body
