"""Analytic cost model (docs/design.md §3): MAdds and parameters of a candidate, from the document
alone.

No module is built and nothing is traced, so a report costs microseconds and the search can
reject over-budget candidates before any training. Conventions (docs/design.md §3), which the tests
hold
to fvcore's count of the built module *exactly*:

- `madds`: multiply-adds of convolutions, linear layers and matmuls in eval mode, batch 1.
  BatchNorm, activations, pooling, element-wise products and bias additions are not counted.
- `params`: every trainable parameter: weights, biases, BatchNorm affine (2 per channel) and the
  e-ANTBlock ensemble logits.
- `conv_bias_adds`: one addition per conv bias per output element. Not part of `madds`; papers
  that count FLOPs with the bias (HetConv Table 1) compare against `madds + conv_bias_adds`.

Every function below mirrors one module in `search_space/blocks` layer by layer; a conv with
`groups = g` from `cin` to `cout` costs `cout * (cin / g) * kh * kw` per output pixel
(docs/design.md §1.1).

Each row also carries its channel receptive field (docs/design.md §2): the min and mean over output
channels of the fraction of input channels they see, from the block's CDG (`objectives.cdg`).
The stem and the FC head are dense (1.0); the conv classification layer is not: logit `j` reads
only channels `j .. j + M - n`. The FCRF verdict is per *block* (docs/design.md §2): `fcrf` holds
iff every
block row (the stage rows, not the stem or head) has a minimum of 1.0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from objectives.cdg import block_signature, signature_crf
from search_space import load_arch
from search_space.arch import (
    Arch,
    BlockPlan,
    ConvClassifierHead,
    FCHead,
    conv_out_size,
    effnet_bottleneck,
)


@dataclass(frozen=True, slots=True)
class Cost:
    madds: int
    params: int
    conv_bias_adds: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.madds + other.madds,
            self.params + other.params,
            self.conv_bias_adds + other.conv_bias_adds,
        )


ZERO = Cost(0, 0)


def _total(*parts: Cost) -> Cost:
    return sum(parts, ZERO)


# -- layers -------------------------------------------------------------------------------


def conv(
    cin: int, cout: int, *, area: int = 1, pixels: int, groups: int = 1, bias: bool = False
) -> Cost:
    """Grouped conv, kernel area `kh*kw`, `pixels = Ho*Wo` output positions (docs/design.md
    §1.1)."""
    weights = cout * (cin // groups) * area
    return Cost(
        weights * pixels,
        weights + (cout if bias else 0),
        cout * pixels if bias else 0,
    )


def bn(channels: int) -> Cost:
    """BatchNorm: affine weight and bias, no MAdds (docs/design.md §3)."""
    return Cost(0, 2 * channels)


def conv_bn(
    cin: int, cout: int, *, area: int = 1, pixels: int, groups: int = 1, bias: bool = False
) -> Cost:
    """`ConvBNAct` (the activation is free)."""
    return conv(cin, cout, area=area, pixels=pixels, groups=groups, bias=bias) + bn(cout)


def linear(cin: int, cout: int) -> Cost:
    return Cost(cin * cout, cin * cout + cout)


def channel_wise(cw_kernel: int, *, kernels: int, out_channels: int, pixels: int) -> Cost:
    """ChannelNets channel-wise conv (docs/design.md §1.4): weights `kernels*dc`, MAdds
    `dc*C_out*H*W`."""
    return Cost(cw_kernel * out_channels * pixels, cw_kernel * kernels)


def squeeze_excite(channels: int, se_ratio: int) -> Cost:
    """ANTNets channel attention: two 1x1 convs with bias on the pooled `1x1` map."""
    hidden = max(1, channels // se_ratio)
    return conv(channels, hidden, pixels=1, bias=True) + conv(hidden, channels, pixels=1, bias=True)


# -- blocks (one per module in search_space/blocks) ---------------------------------------


def _pixels(plan: BlockPlan) -> tuple[int, int]:
    return plan.size_in * plan.size_in, plan.size_out * plan.size_out


def conv_block(p: BlockPlan) -> Cost:
    s, (_, out_px) = p.spec, _pixels(p)
    return conv_bn(p.cin, p.cout, area=s.kernel**2, pixels=out_px, bias=s.bias)


def hetconv_block(p: BlockPlan) -> Cost:
    """HetConv Eq. (FL_HC): `Ho*Wo*N*(M/P*k*k + (M - M/P))`, weights `N*(M/P*k*k + M - M/P)`.

    As built: a grouped kxk conv (`groups = P`, carries the bias) plus, for `P > 1`, a grouped
    1x1 conv (`groups = P`) over the `M - M/P` gathered channels outside each group.
    """
    s, (_, out_px) = p.spec, _pixels(p)
    part = p.cin if s.part == "in" else s.part
    spatial = conv(p.cin, p.cout, area=s.kernel**2, pixels=out_px, groups=part, bias=s.bias)
    others = p.cin - p.cin // part
    pointwise = conv(part * others, p.cout, pixels=out_px, groups=part) if part > 1 else ZERO
    return spatial + pointwise + bn(p.cout)


def dws_block(p: BlockPlan) -> Cost:
    """MobileNetV1 depthwise separable conv (docs/design.md §1.1); without the depthwise BN when
    `dw_bn_act` is false (ChannelNets, docs/design.md §1.4)."""
    s, (_, out_px) = p.spec, _pixels(p)
    dw = conv(p.cin, p.cin, area=s.kernel**2, pixels=out_px, groups=p.cin)
    return dw + (bn(p.cin) if s.dw_bn_act else ZERO) + conv_bn(p.cin, p.cout, pixels=out_px)


def _inverted_residual(
    p: BlockPlan, *, expand: int, kernel: int, groups: int = 1, se_ratio: int | None = None
) -> Cost:
    """MobileNetV2 inverted residual (docs/design.md §1.1); with `se_ratio` the ANTBlock
    (docs/design.md §1.5)."""
    in_px, out_px = _pixels(p)
    hidden = p.cin * expand
    return _total(
        conv_bn(p.cin, hidden, pixels=in_px) if expand > 1 else ZERO,
        conv_bn(hidden, hidden, area=kernel**2, pixels=out_px, groups=hidden),
        squeeze_excite(hidden, se_ratio) if se_ratio is not None else ZERO,
        conv_bn(hidden, p.cout, pixels=out_px, groups=groups),
    )


def mbconv_block(p: BlockPlan) -> Cost:
    return _inverted_residual(p, expand=p.spec.expand, kernel=p.spec.kernel)


def clc_block(p: BlockPlan) -> Cost:
    """clcNet Sec. 3 / Eq. 2: IGC `A*L*M/g1` + GC `N*L/g2` per output pixel, BN after each."""
    s, (_, out_px) = p.spec, _pixels(p)
    mid = s.mid or p.cin
    igc = conv(p.cin, mid, area=s.kernel**2, pixels=out_px, groups=s.g1) + bn(mid)
    return igc + conv_bn(mid, p.cout, pixels=out_px, groups=s.g2)


def ant_block(p: BlockPlan) -> Cost:
    s = p.spec
    return _inverted_residual(
        p, expand=s.expand, kernel=s.kernel, groups=s.groups, se_ratio=s.se_ratio
    )


def eant_block(p: BlockPlan) -> Cost:
    """ANTNets e-ANTBlock: `K` ANTBlock bodies plus `K` ensemble logits (docs/design.md §1.5)."""
    s = p.spec
    members = (
        _inverted_residual(p, expand=s.expand, kernel=s.kernel, groups=g, se_ratio=s.se_ratio)
        for g in s.groups
    )
    return _total(*members) + Cost(0, len(s.groups))


def _group_dws_pair(p: BlockPlan) -> Cost:
    """ChannelNets GM body (docs/design.md §1.4): dw kxk (stride), GConv 1x1 + BN, dw kxk,
    GConv 1x1 + BN. The depthwise convs carry no BN (ChannelNets §4.2)."""
    s, (_, out_px) = p.spec, _pixels(p)
    area = s.kernel**2
    return _total(
        conv(p.cin, p.cin, area=area, pixels=out_px, groups=p.cin),
        conv_bn(p.cin, p.cout, pixels=out_px, groups=s.groups),
        conv(p.cout, p.cout, area=area, pixels=out_px, groups=p.cout),
        conv_bn(p.cout, p.cout, pixels=out_px, groups=s.groups),
    )


def gm_block(p: BlockPlan) -> Cost:
    return _group_dws_pair(p)


def gcwm_block(p: BlockPlan) -> Cost:
    """GM + group channel-wise conv with `g` kernels of size `dc` (ChannelNets Sec. 3.3)."""
    s, (_, out_px) = p.spec, _pixels(p)
    fuse = channel_wise(s.cw_kernel, kernels=s.groups, out_channels=p.cout, pixels=out_px)
    return _group_dws_pair(p) + fuse


def dwscw_block(p: BlockPlan) -> Cost:
    """ChannelNets DWSCW: weights `k*k*M + dc*kernels` + BN(N), `N/M` kernels when widening;
    no BN after the depthwise conv (ChannelNets §4.2)."""
    s, (_, out_px) = p.spec, _pixels(p)
    kernels = p.cout // p.cin if p.cout >= p.cin else 1
    return _total(
        conv(p.cin, p.cin, area=s.kernel**2, pixels=out_px, groups=p.cin),
        channel_wise(s.cw_kernel, kernels=kernels, out_channels=p.cout, pixels=out_px),
        bn(p.cout),
    )


def shuffle_block(p: BlockPlan) -> Cost:
    """ShuffleNet unit (docs/design.md §1.6): bottleneck `out/4`; at stride 2 the branch makes `out
    - in`
    channels and the average-pooled shortcut is free."""
    s, (in_px, out_px) = p.spec, _pixels(p)
    mid = p.cout // 4
    in_groups = (s.in_groups or s.groups) if p.first else s.groups
    branch = p.cout - p.cin if p.stride == 2 else p.cout
    return _total(
        conv_bn(p.cin, mid, pixels=in_px, groups=in_groups),
        conv_bn(mid, mid, area=9, pixels=out_px, groups=mid),
        conv_bn(mid, branch, pixels=out_px, groups=s.groups),
    )


def effnet_block(p: BlockPlan) -> Cost:
    """EffNet (Freeman et al. 2018; docs/design.md §1.6): 1x1, dw 1xk on the input map; when
    striding, the 2x1 separable pool halves the height *before* the dw kx1, so it runs on
    `size_out x size_in` pixels (for k = 3: `3*Df^2*M + 3*(Df^2/2)*M` for the two depthwise
    convs), and the last conv is 2x1 with stride 1x2 (`2*N*M` per output pixel); else 1x1.
    Pool and stride round up, so every halved side is `size_out`."""
    s = p.spec
    in_px, out_px = _pixels(p)
    mid = effnet_bottleneck(s, p.cout)
    strided = p.stride == 2
    return _total(
        conv_bn(p.cin, mid, pixels=in_px),
        conv_bn(mid, mid, area=s.kernel, pixels=in_px, groups=mid),
        conv_bn(mid, mid, area=s.kernel, pixels=p.size_out * p.size_in, groups=mid),
        conv_bn(mid, p.cout, area=2 if strided else 1, pixels=out_px),
    )


BLOCK_COSTS: dict[str, Callable[[BlockPlan], Cost]] = {
    "conv": conv_block,
    "hetconv": hetconv_block,
    "dws": dws_block,
    "mbconv": mbconv_block,
    "clc": clc_block,
    "ant": ant_block,
    "eant": eant_block,
    "gm": gm_block,
    "gcwm": gcwm_block,
    "dwscw": dwscw_block,
    "shuffle": shuffle_block,
    "effnet": effnet_block,
}


def block_cost(plan: BlockPlan) -> Cost:
    return BLOCK_COSTS[plan.block](plan)


# -- heads --------------------------------------------------------------------------------


def fc_head(head: FCHead, *, channels: int, size: int, num_classes: int) -> Cost:
    """Optional 1x1 conv + BN, global pool (free), hidden FC + BN1d layers, FC with bias."""
    cost = conv_bn(channels, head.conv_out, pixels=size * size) if head.conv_out else ZERO
    width = head.conv_out or channels
    for hidden in head.hidden:
        cost += linear(width, hidden) + bn(hidden)
        width = hidden
    return cost + linear(width, num_classes)


def conv_classifier_head(*, channels: int, size: int, num_classes: int) -> Cost:
    """ChannelNets conv classification layer (docs/design.md §1.4): a Conv3d kernel `(M - n + 1,
    Hf, Wf)`,
    no padding, no bias, over `(1, M, Hf, Wf)`: MAdds `n*(M - n + 1)*Hf*Wf`."""
    weights = (channels - num_classes + 1) * size * size
    return Cost(num_classes * weights, weights)


# -- the report ---------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: a frozen init costs ~2x, and rows are built per candidate
class BlockCost:
    """One row: the stem, a block (`stages[2].1`: stage 2, block 1) or the head."""

    name: str
    type: str
    stage: int | None
    index: int | None
    cin: int
    cout: int
    stride: int
    size_in: int
    size_out: int
    madds: int
    params: int
    conv_bias_adds: int
    crf_min_fraction: float | None  # None when the report was made with `crf=False`
    crf_mean_fraction: float | None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["in"], d["out"] = d.pop("cin"), d.pop("cout")
        return d


@dataclass(slots=True)
class StageCost:
    """Totals of one stage's blocks (`stages[2]`); the stage's max pool costs nothing."""

    stage: int
    type: str
    blocks: int
    cin: int
    cout: int
    size_out: int  # after the stage's max pool, if any
    madds: int
    params: int
    crf_min_fraction: float | None

    @property
    def name(self) -> str:
        return f"stages[{self.stage}]"

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, **asdict(self)}
        d["in"], d["out"] = d.pop("cin"), d.pop("cout")
        return d


@dataclass(frozen=True, slots=True)
class CostReport:
    name: str
    resolution: int
    num_classes: int
    madds: int
    params: int
    conv_bias_adds: int
    fcrf: bool | None  # every block (stage row) has a full CRF; None when made with crf=False
    blocks: list[BlockCost]
    stages: list[StageCost]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resolution": self.resolution,
            "num_classes": self.num_classes,
            "madds": self.madds,
            "params": self.params,
            "conv_bias_adds": self.conv_bias_adds,
            "fcrf": self.fcrf,
            "blocks": [b.to_dict() for b in self.blocks],
            "stages": [s.to_dict() for s in self.stages],
        }


def resolve_arch(
    arch: Arch | dict[str, Any] | str | Path,
    resolution: int | None = None,
    num_classes: int | None = None,
) -> Arch:
    """The arch, re-validated only when an override changes it (so a bad override raises
    `ArchError` naming its path, e.g. `head.type` for a conv classifier that is too narrow)."""
    a = load_arch(arch)
    changes: dict[str, int] = {}
    if resolution is not None and resolution != a.resolution:
        changes["resolution"] = resolution
    if num_classes is not None and num_classes != a.num_classes:
        changes["num_classes"] = num_classes
    return a.with_changes(**changes) if changes else a


def _row(
    name: str,
    block_type: str,
    cost: Cost,
    crf: tuple[float, float] | tuple[None, None],
    *,
    stage: int | None = None,
    index: int | None = None,
    cin: int,
    cout: int,
    stride: int,
    size_in: int,
    size_out: int,
) -> BlockCost:
    return BlockCost(
        name,
        block_type,
        stage,
        index,
        cin,
        cout,
        stride,
        size_in,
        size_out,
        cost.madds,
        cost.params,
        cost.conv_bias_adds,
        *crf,
    )


def _stem_row(a: Arch) -> BlockCost | None:
    if a.stem is None:
        return None
    s, res = a.stem, a.resolution
    conv_size = conv_out_size(res, s.kernel, s.stride)
    cost = conv_bn(a.in_channels, s.out, area=s.kernel**2, pixels=conv_size * conv_size)
    # A dense conv: every output channel sees every input channel.
    return _row(
        "stem",
        "stem",
        cost,
        (1.0, 1.0),
        cin=a.in_channels,
        cout=s.out,
        stride=s.stride,
        size_in=res,
        size_out=a.stem_size(),
    )


@lru_cache(maxsize=8192)
def _cached_block_cost(signature: Any, size_in: int) -> Cost:
    return block_cost(signature.plan)


def _block_row(p: BlockPlan, crf: bool) -> BlockCost:
    # Blocks repeat across the candidates of a search: cost and CRF are cached on the block's
    # structure (+ input size for the cost).
    sig = block_signature(p)
    return _row(
        f"stages[{p.stage}].{p.index}",
        p.block,
        _cached_block_cost(sig, p.size_in),
        signature_crf(sig) if crf else (None, None),
        stage=p.stage,
        index=p.index,
        cin=p.cin,
        cout=p.cout,
        stride=p.stride,
        size_in=p.size_in,
        size_out=p.size_out,
    )


def _stage_total(last: BlockPlan, rows: list[BlockCost]) -> StageCost:
    spec = last.spec
    return StageCost(
        last.stage,
        last.block,
        spec.repeat,
        rows[0].cin,
        last.cout,
        last.size_out // 2 if spec.pool == "max" else last.size_out,
        sum(r.madds for r in rows),
        sum(r.params for r in rows),
        _min_crf(rows),
    )


def _min_crf(rows: list[BlockCost]) -> float | None:
    values = [r.crf_min_fraction for r in rows if r.crf_min_fraction is not None]
    return min(values) if values else None


def _head_row(a: Arch) -> BlockCost:
    channels, size = a.final_features()
    head, n = a.head, a.num_classes
    if isinstance(head, ConvClassifierHead):
        cost = conv_classifier_head(channels=channels, size=size, num_classes=n)
        # Logit j reads channels j .. j + M - n only (docs/design.md §1.4): not a full CRF.
        crf = (channels - n + 1) / channels
    else:
        cost = fc_head(head, channels=channels, size=size, num_classes=n)
        crf = 1.0
    return _row(
        "head",
        head.type,
        cost,
        (crf, crf),
        cin=channels,
        cout=n,
        stride=1,
        size_in=size,
        size_out=1,
    )


def cost_report(
    arch: Arch | dict[str, Any] | str | Path,
    resolution: int | None = None,
    num_classes: int | None = None,
    *,
    crf: bool = True,
) -> CostReport:
    """MAdds, params and channel receptive fields of `arch` (an `Arch` or anything
    `search_space.load_arch` accepts), optionally at another resolution or class count.

    `crf=False` skips the channel-dependency analysis (CRF fields and `fcrf` are None): the
    counts alone, for budgets that do not constrain the CRF."""
    a = resolve_arch(arch, resolution, num_classes)
    stem = _stem_row(a)
    rows = [stem] if stem is not None else []
    stages: list[StageCost] = []
    for plan in a.blocks():
        rows.append(_block_row(plan, crf))
        if plan.index == plan.spec.repeat - 1:
            stages.append(_stage_total(plan, rows[-plan.spec.repeat :]))
    rows.append(_head_row(a))
    return CostReport(
        name=a.name,
        resolution=a.resolution,
        num_classes=a.num_classes,
        madds=sum(r.madds for r in rows),
        params=sum(r.params for r in rows),
        conv_bias_adds=sum(r.conv_bias_adds for r in rows),
        fcrf=all(r.crf_min_fraction == 1.0 for r in rows if r.stage is not None) if crf else None,
        blocks=rows,
        stages=stages,
    )
