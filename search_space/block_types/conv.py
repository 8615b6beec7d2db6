"""Plain kxk conv + BN + ReLU (the dense baseline; docs/design.md §1.1)."""

from __future__ import annotations

import random
from typing import Any, Literal

from search_space.block_types import cdg_ops, draw
from search_space.block_types.base import BlockPlan, Kernel, StageBase
from search_space.block_types.context import Context, pick_kernel
from search_space.block_types.costing import Cost, conv_bn, pixels
from search_space.block_types.dims import BIAS, KERNEL
from search_space.block_types.spec import BlockSpec


class ConvStage(StageBase):
    block: Literal["conv"]
    kernel: Kernel = 3
    bias: bool = False


def cost(p: BlockPlan) -> Cost:
    s, (_, out_px) = p.spec, pixels(p)
    return conv_bn(p.cin, p.cout, area=s.kernel**2, pixels=out_px, bias=s.bias)


def cdg(p: BlockPlan) -> cdg_ops.CDG:
    return cdg_ops.grouped(p.cin, p.cout)


def sample(dims: Any, ctx: Context, first_stage: bool) -> dict[str, Any]:
    return {
        "kernel": pick_kernel("conv", dims, ctx),
        "bias": ctx.pick("conv.bias", dims.bias, dims.bias),
    }


def random_stage(rng: random.Random, cin: int, top: int) -> dict[str, Any]:
    return {"out": draw.width(rng, top), "kernel": draw.kernel(rng), "bias": rng.random() < 0.5}


SPEC = BlockSpec(
    stage=ConvStage,
    module="search_space.blocks.conv:ConvBlock",
    dims=(KERNEL, BIAS),
    cost=cost,
    cdg=cdg,
    sample=sample,
    random_stage=random_stage,
)
