"""ChannelNets' group module GM (Gao et al., NeurIPS 2018; docs/design.md §1.4): two depthwise
separable convs whose 1x1 convs are grouped (`g` groups); no BN or activation after the depthwise
convs (ChannelNets §4.2); identity shortcut at stride 1 when in == out."""

from __future__ import annotations

import random
from typing import Any, Literal

from search_space.block_types import cdg_ops, draw
from search_space.block_types.base import BlockPlan, Kernel, StageBase, Width, divides
from search_space.block_types.context import Context, groups_ok, pick_kernel
from search_space.block_types.costing import Cost, conv, conv_bn, pixels, total
from search_space.block_types.dims import GROUPS, KERNEL
from search_space.block_types.spec import BlockSpec, Problems


class GMStage(StageBase):
    block: Literal["gm"]
    groups: Width
    kernel: Kernel = 3


def pair_cost(p: BlockPlan) -> Cost:
    """ChannelNets GM body (docs/design.md §1.4): dw kxk (stride), GConv 1x1 + BN, dw kxk,
    GConv 1x1 + BN. The depthwise convs carry no BN (ChannelNets §4.2)."""
    s, (_, out_px) = p.spec, pixels(p)
    area = s.kernel**2
    return total(
        conv(p.cin, p.cin, area=area, pixels=out_px, groups=p.cin),
        conv_bn(p.cin, p.cout, pixels=out_px, groups=s.groups),
        conv(p.cout, p.cout, area=area, pixels=out_px, groups=p.cout),
        conv_bn(p.cout, p.cout, pixels=out_px, groups=s.groups),
    )


def pair_cdg(p: BlockPlan) -> cdg_ops.CDG:
    g = p.spec.groups
    return cdg_ops.compose(
        cdg_ops.identity(p.cin),
        cdg_ops.grouped(p.cin, p.cout, g),
        cdg_ops.identity(p.cout),
        cdg_ops.grouped(p.cout, p.cout, g),
    )


def cdg(p: BlockPlan) -> cdg_ops.CDG:
    return cdg_ops.residual(pair_cdg(p), p)


def problems(p: BlockPlan) -> Problems:
    g = p.spec.groups
    if not divides(g, p.cin):
        yield "groups", f"{g} does not divide {p.cin} input channels"
    if not divides(g, p.cout):
        yield "groups", f"{g} does not divide {p.cout} output channels"


def fits(dims: Any, ctx: Context, first_stage: bool) -> bool:
    return any(groups_ok(g, ctx) for g in dims.groups or [])


def pick_groups(block: str, dims: Any, ctx: Context) -> int:
    groups = [g for g in dims.groups or [] if groups_ok(g, ctx)]
    return int(ctx.pick(f"{block}.groups", dims.groups or [], groups))


def sample(dims: Any, ctx: Context, first_stage: bool) -> dict[str, Any]:
    return {"kernel": pick_kernel("gm", dims, ctx), "groups": pick_groups("gm", dims, ctx)}


def random_stage(rng: random.Random, cin: int, top: int) -> dict[str, Any]:
    groups = rng.choice(draw.divisors(cin, 8))
    return {"out": draw.width(rng, top, groups), "groups": groups, "kernel": draw.kernel(rng)}


SPEC = BlockSpec(
    stage=GMStage,
    module="search_space.blocks.gm:GMBlock",
    dims=(KERNEL, GROUPS),
    required=frozenset({"groups"}),
    cost=pair_cost,
    cdg=cdg,
    fits=fits,
    sample=sample,
    problems=problems,
    random_stage=random_stage,
)
