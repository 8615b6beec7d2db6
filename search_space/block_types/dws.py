"""MobileNetV1 depthwise separable conv (docs/design.md §1.1): depthwise kxk (+ BN + ReLU unless
`dw_bn_act` is false, as in ChannelNets §4.2, docs/design.md §1.4), then 1x1 conv + BN + ReLU."""

from __future__ import annotations

import random
from typing import Any, Literal

from search_space.block_types import cdg_ops, draw
from search_space.block_types.base import BlockPlan, Kernel, StageBase
from search_space.block_types.context import Context, pick_kernel
from search_space.block_types.costing import ZERO, Cost, bn, conv, conv_bn, pixels
from search_space.block_types.dims import DW_BN_ACT, KERNEL
from search_space.block_types.spec import BlockSpec


class DwsStage(StageBase):
    block: Literal["dws"]
    kernel: Kernel = 3
    # BN + ReLU after the depthwise conv (MobileNetV1); false in ChannelNets (docs/design.md §1.4)
    dw_bn_act: bool = True


def cost(p: BlockPlan) -> Cost:
    """MobileNetV1 depthwise separable conv (docs/design.md §1.1); without the depthwise BN when
    `dw_bn_act` is false (ChannelNets, docs/design.md §1.4)."""
    s, (_, out_px) = p.spec, pixels(p)
    dw = conv(p.cin, p.cin, area=s.kernel**2, pixels=out_px, groups=p.cin)
    return dw + (bn(p.cin) if s.dw_bn_act else ZERO) + conv_bn(p.cin, p.cout, pixels=out_px)


def cdg(p: BlockPlan) -> cdg_ops.CDG:
    return cdg_ops.compose(cdg_ops.identity(p.cin), cdg_ops.grouped(p.cin, p.cout))


def sample(dims: Any, ctx: Context, first_stage: bool) -> dict[str, Any]:
    return {
        "kernel": pick_kernel("dws", dims, ctx),
        "dw_bn_act": ctx.pick("dws.dw_bn_act", dims.dw_bn_act, dims.dw_bn_act),
    }


def random_stage(rng: random.Random, cin: int, top: int) -> dict[str, Any]:
    return {
        "out": draw.width(rng, top),
        "kernel": draw.kernel(rng),
        "dw_bn_act": rng.random() < 0.5,
    }


SPEC = BlockSpec(
    stage=DwsStage,
    module="search_space.blocks.dws:DwsBlock",
    dims=(KERNEL, DW_BN_ACT),
    cost=cost,
    cdg=cdg,
    sample=sample,
    random_stage=random_stage,
)
