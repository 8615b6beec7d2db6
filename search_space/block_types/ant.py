"""ANTNets' ANTBlock (Xiong et al., 2019; docs/design.md §1.5): the inverted residual with channel
attention (squeeze-and-excitation) on the expanded map and a grouped 1x1 projection."""

from __future__ import annotations

import random
from typing import Any, Literal

from search_space.block_types import cdg_ops, draw
from search_space.block_types.base import (
    BlockPlan,
    Expand,
    Kernel,
    StageBase,
    Width,
    divides,
    se_hidden,
)
from search_space.block_types.context import Context, groups_ok, pick_kernel
from search_space.block_types.costing import Cost
from search_space.block_types.dims import EXPAND, GROUPS, KERNEL, SE_RATIO
from search_space.block_types.mbconv import inverted_residual
from search_space.block_types.spec import BlockSpec, Problems


class AntStage(StageBase):
    block: Literal["ant"]
    expand: Expand
    se_ratio: Width
    groups: Width = 1
    kernel: Kernel = 3


def cost(p: BlockPlan) -> Cost:
    s = p.spec
    return inverted_residual(
        p, expand=s.expand, kernel=s.kernel, groups=s.groups, se_ratio=s.se_ratio
    )


def branch_cdg(p: BlockPlan, groups: int) -> cdg_ops.CDG:
    """One ANTBlock body with a `groups`-group projection (an e-ANTBlock member too)."""
    s = p.spec
    hidden = p.cin * s.expand
    expand = cdg_ops.grouped(p.cin, hidden) if s.expand > 1 else cdg_ops.identity(p.cin)
    return cdg_ops.compose(
        expand,
        cdg_ops.identity(hidden),
        cdg_ops.attention(hidden, se_hidden(hidden, s.se_ratio)),
        cdg_ops.grouped(hidden, p.cout, groups),
    )


def cdg(p: BlockPlan) -> cdg_ops.CDG:
    return cdg_ops.residual(branch_cdg(p, p.spec.groups), p)


def group_problems(p: BlockPlan, groups: list[int], keys: list[str]) -> Problems:
    """Each projection's groups divide the expanded and the output channels."""
    hidden = p.spec.expand * p.cin
    for key, g in zip(keys, groups, strict=True):
        if not divides(g, hidden):
            yield key, f"{g} does not divide {hidden} expanded channels"
        if not divides(g, p.cout):
            yield key, f"{g} does not divide {p.cout} output channels"


def problems(p: BlockPlan) -> Problems:
    return group_problems(p, [p.spec.groups], ["groups"])


def fits(dims: Any, ctx: Context, first_stage: bool) -> bool:
    return any(groups_ok(g, ctx, e) for e in dims.expand or [] for g in dims.groups or [])


def sample(dims: Any, ctx: Context, first_stage: bool) -> dict[str, Any]:
    keys: dict[str, Any] = {"kernel": pick_kernel("ant", dims, ctx)}
    expands = [e for e in dims.expand or [] if any(groups_ok(g, ctx, e) for g in dims.groups or [])]
    e = keys["expand"] = ctx.pick("ant.expand", dims.expand or [], expands)
    keys["se_ratio"] = ctx.pick("ant.se_ratio", dims.se_ratio or [], dims.se_ratio or [])
    groups = [g for g in dims.groups or [] if groups_ok(g, ctx, e)]
    keys["groups"] = ctx.pick("ant.groups", dims.groups or [], groups, extra=f",e={e}")
    return keys


def random_stage(rng: random.Random, cin: int, top: int) -> dict[str, Any]:
    expand = draw.expand(rng, cin, top)
    groups = rng.choice(draw.divisors(cin * expand, 8))
    return {
        "out": draw.width(rng, top, groups),
        "expand": expand,
        "se_ratio": rng.choice((2, 4, 8)),
        "groups": groups,
        "kernel": draw.kernel(rng),
    }


SPEC = BlockSpec(
    stage=AntStage,
    module="search_space.blocks.ant:AntBlock",
    dims=(KERNEL, EXPAND, SE_RATIO, GROUPS),
    required=frozenset({"expand", "se_ratio", "groups"}),
    cost=cost,
    cdg=cdg,
    fits=fits,
    sample=sample,
    problems=problems,
    random_stage=random_stage,
)
