"""ANTNets' e-ANTBlock (docs/design.md §1.5): `K` ANTBlock bodies that differ in the groups of
their projection, summed with softmax-normalised ensemble logits; the shortcut is added once."""

from __future__ import annotations

import itertools
import random
from typing import Annotated, Any, Literal

from pydantic import Field

from search_space.block_types import ant, cdg_ops, draw
from search_space.block_types.base import MAX_GROUPS, BlockPlan, Expand, Kernel, StageBase, Width
from search_space.block_types.context import Context, groups_ok, pick_kernel
from search_space.block_types.costing import Cost, total
from search_space.block_types.dims import EXPAND, GROUPS, KERNEL, SE_RATIO, WIDTH
from search_space.block_types.mbconv import inverted_residual
from search_space.block_types.spec import BlockSpec, Problems


class EAntStage(StageBase):
    block: Literal["eant"]
    expand: Expand
    se_ratio: Width
    groups: Annotated[list[Width], Field(min_length=1, max_length=MAX_GROUPS)]
    kernel: Kernel = 3


def cost(p: BlockPlan) -> Cost:
    """ANTNets e-ANTBlock: `K` ANTBlock bodies plus `K` ensemble logits (docs/design.md §1.5)."""
    s = p.spec
    members = (
        inverted_residual(p, expand=s.expand, kernel=s.kernel, groups=g, se_ratio=s.se_ratio)
        for g in s.groups
    )
    return total(*members) + Cost(0, len(s.groups))


def cdg(p: BlockPlan) -> cdg_ops.CDG:
    # e-ANTBlock: softmax-weighted sum of the members, shortcut added once (docs/design.md §1.5).
    return cdg_ops.residual(cdg_ops.union(*(ant.branch_cdg(p, g) for g in p.spec.groups)), p)


def problems(p: BlockPlan) -> Problems:
    groups = list(p.spec.groups)
    return ant.group_problems(p, groups, [f"groups[{i}]" for i in range(len(groups))])


def matrices(stage: Any, widest: int) -> int:
    """One CRF analysis per member."""
    return len(stage.groups)


def _valid_sets(dims: Any, ctx: Context, expand: int) -> dict[int, list[str]]:
    groups = [g for g in dims.groups or [] if groups_ok(g, ctx, expand)]
    return {
        k: ["-".join(map(str, c)) for c in itertools.combinations(groups, k)]
        for k in dims.width or []
        if len(groups) >= k
    }


def fits(dims: Any, ctx: Context, first_stage: bool) -> bool:
    return any(_valid_sets(dims, ctx, e) for e in dims.expand or [])


def sample(dims: Any, ctx: Context, first_stage: bool) -> dict[str, Any]:
    keys: dict[str, Any] = {"kernel": pick_kernel("eant", dims, ctx)}
    expands = [e for e in dims.expand or [] if _valid_sets(dims, ctx, e)]
    e = keys["expand"] = ctx.pick("eant.expand", dims.expand or [], expands)
    keys["se_ratio"] = ctx.pick("eant.se_ratio", dims.se_ratio or [], dims.se_ratio or [])
    sets = _valid_sets(dims, ctx, e)
    k = ctx.pick("eant.width", dims.width or [], sorted(sets), extra=f",e={e}")
    members = ctx.pick("eant.groups", sets[k], sets[k], extra=f",e={e},K={k}")
    keys["groups"] = [int(g) for g in members.split("-")]
    return keys


def random_stage(rng: random.Random, cin: int, top: int) -> dict[str, Any]:
    expand = draw.expand(rng, cin, top)
    out = draw.width(rng, top)
    common = [g for g in draw.divisors(cin * expand, 8) if out % g == 0]
    groups = [rng.choice(common) for _ in range(rng.randint(1, 3))]
    return {"out": out, "expand": expand, "se_ratio": rng.choice((4, 8)), "groups": groups}


SPEC = BlockSpec(
    stage=EAntStage,
    module="search_space.blocks.eant:EAntBlock",
    dims=(KERNEL, EXPAND, SE_RATIO, GROUPS, WIDTH),
    required=frozenset({"expand", "se_ratio", "groups", "width"}),
    cost=cost,
    cdg=cdg,
    fits=fits,
    sample=sample,
    problems=problems,
    matrices=matrices,
    random_stage=random_stage,
)
