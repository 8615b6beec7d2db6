"""MobileNetV2 inverted residual (docs/design.md §1.1): 1x1 expand (skipped at `expand = 1`),
depthwise kxk, 1x1 project; identity shortcut at stride 1 when in == out."""

from __future__ import annotations

import random
from typing import Any, Literal

from search_space.block_types import cdg_ops, draw
from search_space.block_types.base import BlockPlan, Expand, Kernel, StageBase
from search_space.block_types.context import Context, pick_kernel
from search_space.block_types.costing import ZERO, Cost, conv_bn, pixels, squeeze_excite, total
from search_space.block_types.dims import EXPAND, KERNEL
from search_space.block_types.spec import BlockSpec


class MBConvStage(StageBase):
    block: Literal["mbconv"]
    expand: Expand
    kernel: Kernel = 3


def inverted_residual(
    p: BlockPlan, *, expand: int, kernel: int, groups: int = 1, se_ratio: int | None = None
) -> Cost:
    """MobileNetV2 inverted residual (docs/design.md §1.1); with `se_ratio` the ANTBlock
    (docs/design.md §1.5)."""
    in_px, out_px = pixels(p)
    hidden = p.cin * expand
    return total(
        conv_bn(p.cin, hidden, pixels=in_px) if expand > 1 else ZERO,
        conv_bn(hidden, hidden, area=kernel**2, pixels=out_px, groups=hidden),
        squeeze_excite(hidden, se_ratio) if se_ratio is not None else ZERO,
        conv_bn(hidden, p.cout, pixels=out_px, groups=groups),
    )


def cost(p: BlockPlan) -> Cost:
    return inverted_residual(p, expand=p.spec.expand, kernel=p.spec.kernel)


def cdg(p: BlockPlan) -> cdg_ops.CDG:
    hidden = p.cin * p.spec.expand
    expand = cdg_ops.grouped(p.cin, hidden) if p.spec.expand > 1 else cdg_ops.identity(p.cin)
    body = cdg_ops.compose(expand, cdg_ops.identity(hidden), cdg_ops.grouped(hidden, p.cout))
    return cdg_ops.residual(body, p)


def sample(dims: Any, ctx: Context, first_stage: bool) -> dict[str, Any]:
    return {
        "kernel": pick_kernel("mbconv", dims, ctx),
        "expand": ctx.pick("mbconv.expand", dims.expand or [], dims.expand or []),
    }


def random_stage(rng: random.Random, cin: int, top: int) -> dict[str, Any]:
    return {
        "out": draw.width(rng, top),
        "expand": draw.expand(rng, cin, top),
        "kernel": draw.kernel(rng),
    }


SPEC = BlockSpec(
    stage=MBConvStage,
    module="search_space.blocks.mbconv:MBConvBlock",
    dims=(KERNEL, EXPAND),
    required=frozenset({"expand"}),
    cost=cost,
    cdg=cdg,
    sample=sample,
    random_stage=random_stage,
)
