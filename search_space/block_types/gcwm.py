"""ChannelNets' group channel-wise module GCWM (docs/design.md §1.4): the GM body followed by a
group channel-wise conv with `g` kernels of size `dc` (ChannelNets Sec. 3.3) that fuses the
groups."""

from __future__ import annotations

import random
from typing import Any, Literal

from search_space.block_types import cdg_ops, gm
from search_space.block_types.base import BlockPlan, Kernel, StageBase, Width
from search_space.block_types.context import Context, pick_kernel
from search_space.block_types.costing import Cost, channel_wise, pixels
from search_space.block_types.dims import CW_KERNEL, GROUPS, KERNEL
from search_space.block_types.spec import BlockSpec


class GCWMStage(StageBase):
    block: Literal["gcwm"]
    groups: Width
    cw_kernel: Width
    kernel: Kernel = 3


def cost(p: BlockPlan) -> Cost:
    """GM + group channel-wise conv with `g` kernels of size `dc` (ChannelNets Sec. 3.3)."""
    s, (_, out_px) = p.spec, pixels(p)
    fuse = channel_wise(s.cw_kernel, kernels=s.groups, out_channels=p.cout, pixels=out_px)
    return gm.pair_cost(p) + fuse


def cdg(p: BlockPlan) -> cdg_ops.CDG:
    s = p.spec
    # Group channel-wise conv: `g` kernels with channel stride `g` (ChannelNets Sec. 3.3).
    fuse = cdg_ops.channel_wise(p.cout, s.cw_kernel, kernels=s.groups, cw_stride=s.groups)
    return cdg_ops.residual(cdg_ops.compose(gm.pair_cdg(p), fuse), p)


def matrices(stage: Any, widest: int) -> int:
    """The fused channel-wise conv has a distinct row per channel, so its product grows as
    widest^3: counted as `1 + widest // 1024` matrices (docs/limits.md#architecture-documents)."""
    return 1 + widest // 1024


def sample(dims: Any, ctx: Context, first_stage: bool) -> dict[str, Any]:
    return {
        "kernel": pick_kernel("gcwm", dims, ctx),
        "groups": gm.pick_groups("gcwm", dims, ctx),
        "cw_kernel": ctx.pick("gcwm.cw_kernel", dims.cw_kernel or [], dims.cw_kernel or []),
    }


def random_stage(rng: random.Random, cin: int, top: int) -> dict[str, Any]:
    stage = gm.random_stage(rng, cin, top)
    return {**stage, "cw_kernel": rng.randint(1, 2 * stage["groups"] + 2)}


SPEC = BlockSpec(
    stage=GCWMStage,
    module="search_space.blocks.gcwm:GCWMBlock",
    dims=(KERNEL, GROUPS, CW_KERNEL),
    required=frozenset({"groups", "cw_kernel"}),
    cost=cost,
    cdg=cdg,
    fits=gm.fits,
    sample=sample,
    problems=gm.problems,
    matrices=matrices,
    random_stage=random_stage,
)
