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

Each block type's rule (`BlockSpec.cost`, in `search_space/block_types/<name>.py`) mirrors its
module in `search_space/blocks` layer by layer, from the layer rules of
`search_space/block_types/costing.py` (re-exported here); a conv with `groups = g` from `cin` to
`cout` costs `cout * (cin / g) * kh * kw` per output pixel (docs/design.md §1.1).

Each row also carries its channel receptive field (docs/design.md §2): the min and mean over output
channels of the fraction of input channels they see, from the block's CDG (`objectives.cdg`).
The stem and the FC head are dense (1.0); the conv classification layer is not: logit `j` reads
only channels `j .. j + M - n`. The FCRF verdict is per *block* (docs/design.md §2): `fcrf` holds
iff every
block row (the stage rows, not the stem or head) has a minimum of 1.0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from objectives.cdg import block_signature, signature_crf
from search_space import block_types, load_arch
from search_space.arch import Arch, BlockPlan, ConvClassifierHead, FCHead, conv_out_size
from search_space.block_types.costing import (
    ZERO,
    Cost,
    bn,
    channel_wise,
    conv,
    conv_bn,
    linear,
    squeeze_excite,
)

__all__ = [
    "BLOCK_COSTS",
    "ZERO",
    "BlockCost",
    "Cost",
    "CostReport",
    "StageCost",
    "block_cost",
    "bn",
    "channel_wise",
    "conv",
    "conv_bn",
    "conv_classifier_head",
    "cost_report",
    "fc_head",
    "linear",
    "resolve_arch",
    "squeeze_excite",
]

# -- blocks: each type's rule is its `BlockSpec.cost` (search_space/block_types/<name>.py) -------

BLOCK_COSTS = block_types.Table(lambda spec: spec.cost, "block cost rules")


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
