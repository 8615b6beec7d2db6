"""ShuffleNet v1 unit (Zhang et al., CVPR 2018; docs/design.md §1.6): grouped 1x1 to the
bottleneck `out/4`, channel shuffle, depthwise 3x3, grouped 1x1; at stride 2 the branch makes
`out - in` channels and is concatenated with the average-pooled input."""

from __future__ import annotations

import random
from typing import Any, Literal

from search_space.block_types import cdg_ops, draw
from search_space.block_types.base import BlockPlan, StageBase, Width, divides
from search_space.block_types.context import Context
from search_space.block_types.costing import Cost, conv_bn, pixels, total
from search_space.block_types.dims import GROUPS
from search_space.block_types.spec import BlockSpec, Problems


class ShuffleStage(StageBase):
    block: Literal["shuffle"]
    groups: Width
    in_groups: Width | None = None


def _shapes(p: BlockPlan) -> tuple[int, int, int]:
    """(bottleneck, first 1x1's groups, branch output channels)."""
    s = p.spec
    in_groups = (s.in_groups or s.groups) if p.first else s.groups
    return p.cout // 4, in_groups, p.cout - p.cin if p.stride == 2 else p.cout


def cost(p: BlockPlan) -> Cost:
    """ShuffleNet unit (docs/design.md §1.6): bottleneck `out/4`; at stride 2 the branch makes
    `out - in` channels and the average-pooled shortcut is free."""
    s, (in_px, out_px) = p.spec, pixels(p)
    mid, in_groups, branch = _shapes(p)
    return total(
        conv_bn(p.cin, mid, pixels=in_px, groups=in_groups),
        conv_bn(mid, mid, area=9, pixels=out_px, groups=mid),
        conv_bn(mid, branch, pixels=out_px, groups=s.groups),
    )


def cdg(p: BlockPlan) -> cdg_ops.CDG:
    s = p.spec
    mid, in_groups, branch_out = _shapes(p)
    branch = cdg_ops.compose(
        cdg_ops.grouped(p.cin, mid, in_groups),
        cdg_ops.interlace(mid, s.groups),
        cdg_ops.identity(mid),
        cdg_ops.grouped(mid, branch_out, s.groups),
    )
    # The average-pooled (stride 2) or identity (stride 1) shortcut is channel-diagonal.
    if p.stride == 2:
        return cdg_ops.concat(cdg_ops.identity(p.cin), branch)
    return cdg_ops.union(cdg_ops.identity(p.cin), branch)


def problems(p: BlockPlan) -> Problems:
    s = p.spec

    def div(key: str, g: int, n: int, what: str) -> Problems:
        if not divides(g, n):
            yield key, f"{g} does not divide {n} {what}"

    if p.cout % 4:
        yield "out", f"{p.cout} output channels are not divisible by 4 (bottleneck = out/4)"
        return
    mid = p.cout // 4
    if p.stride == 1 and p.cin != p.cout:
        yield "stride", f"a stride-1 shuffle unit needs in == out, got {p.cin} -> {p.cout}"
        return
    branch = p.cout - p.cin if p.stride == 2 else p.cout
    if branch < 1:
        yield "out", f"a stride-2 shuffle unit must widen: {p.cin} -> {p.cout}"
        return
    if p.first:
        in_groups = s.in_groups or s.groups
        yield from div("in_groups", in_groups, p.cin, "input channels")
        yield from div("in_groups", in_groups, mid, "bottleneck channels")
    else:
        yield from div("groups", s.groups, p.cin, "input channels")
    yield from div("groups", s.groups, mid, "bottleneck channels")
    yield from div("groups", s.groups, branch, "branch output channels")


def _groups_ok(g: int, ctx: Context, first_stage: bool) -> bool:
    mid = ctx.cout // 4
    branch = ctx.cout - ctx.cin if ctx.stride == 2 else ctx.cout
    in_ok = divides(g, ctx.cin) or first_stage
    return in_ok and divides(g, mid) and divides(g, branch) and divides(g, ctx.cout)


def fits(dims: Any, ctx: Context, first_stage: bool) -> bool:
    shape_ok = ctx.cout % 4 == 0 and (
        ctx.cout > ctx.cin if ctx.stride == 2 else ctx.cout == ctx.cin
    )
    return shape_ok and any(_groups_ok(g, ctx, first_stage) for g in dims.groups or [])


def sample(dims: Any, ctx: Context, first_stage: bool) -> dict[str, Any]:
    groups = [g for g in dims.groups or [] if _groups_ok(g, ctx, first_stage)]
    g = ctx.pick("shuffle.groups", dims.groups or [], groups)
    keys: dict[str, Any] = {"groups": g}
    if not divides(g, ctx.cin):
        keys["in_groups"] = 1  # ShuffleNet: the first stage's first 1x1 conv is not grouped
    return keys


def random_stage(rng: random.Random, cin: int, top: int) -> dict[str, Any]:
    # Stride 2 widens `in -> out` and concatenates; stride 1 keeps `in == out`. `g` divides the
    # bottleneck `out/4` and the branch `out - in` (so `in` too); `in_groups` divides `in`, `out/4`.
    groups = rng.choice(draw.divisors(cin, 4))
    if cin % (4 * groups) == 0 and rng.random() < 0.3:
        stride, out = 1, cin
    else:
        low = cin // (4 * groups) + 1
        stride, out = 2, 4 * groups * rng.randint(low, max(low, top // (4 * groups)))
    in_groups = rng.choice([g for g in draw.divisors(cin, 4) if (out // 4) % g == 0])
    return {"out": out, "stride": stride, "groups": groups, "in_groups": in_groups}


SPEC = BlockSpec(
    stage=ShuffleStage,
    module="search_space.blocks.shuffle:ShuffleBlock",
    dims=(GROUPS,),
    required=frozenset({"groups"}),
    cost=cost,
    cdg=cdg,
    fits=fits,
    sample=sample,
    problems=problems,
    random_stage=random_stage,
)
