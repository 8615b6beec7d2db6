"""EffNet block (Freeman et al., 2018; docs/design.md §1.6): 1x1 to the bottleneck, depthwise
1xk, a 2x1 separable max pool when striding, depthwise kx1, then a 2x1 conv with stride 1x2 (1x1
when not striding)."""

from __future__ import annotations

import random
from typing import Any, Literal

from search_space.block_types import cdg_ops, draw
from search_space.block_types.base import BlockPlan, Kernel, StageBase, Width
from search_space.block_types.context import Context, pick_kernel
from search_space.block_types.costing import Cost, conv_bn, pixels, total
from search_space.block_types.dims import KERNEL
from search_space.block_types.spec import BlockSpec, Problems


class EffNetStage(StageBase):
    block: Literal["effnet"]
    kernel: Kernel = 3
    bottleneck: Width | None = None


def effnet_bottleneck(spec: EffNetStage, cout: int) -> int:
    return spec.bottleneck or cout // 2


def cost(p: BlockPlan) -> Cost:
    """EffNet (Freeman et al. 2018; docs/design.md §1.6): 1x1, dw 1xk on the input map; when
    striding, the 2x1 separable pool halves the height *before* the dw kx1, so it runs on
    `size_out x size_in` pixels (for k = 3: `3*Df^2*M + 3*(Df^2/2)*M` for the two depthwise
    convs), and the last conv is 2x1 with stride 1x2 (`2*N*M` per output pixel); else 1x1.
    Pool and stride round up, so every halved side is `size_out`."""
    s = p.spec
    in_px, out_px = pixels(p)
    mid = effnet_bottleneck(s, p.cout)
    strided = p.stride == 2
    return total(
        conv_bn(p.cin, mid, pixels=in_px),
        conv_bn(mid, mid, area=s.kernel, pixels=in_px, groups=mid),
        conv_bn(mid, mid, area=s.kernel, pixels=p.size_out * p.size_in, groups=mid),
        conv_bn(mid, p.cout, area=2 if strided else 1, pixels=out_px),
    )


def cdg(p: BlockPlan) -> cdg_ops.CDG:
    mid = effnet_bottleneck(p.spec, p.cout)
    return cdg_ops.compose(
        cdg_ops.grouped(p.cin, mid),
        cdg_ops.identity(mid),
        cdg_ops.identity(mid),
        cdg_ops.grouped(mid, p.cout),
    )


def problems(p: BlockPlan) -> Problems:
    if p.spec.bottleneck is None and p.cout < 2:
        yield "out", "effnet needs at least 2 output channels (bottleneck = out/2)"
    if p.stride == 2 and p.size_in < 2:
        yield "stride", f"cannot stride a {p.size_in}x{p.size_in} map"


def fits(dims: Any, ctx: Context, first_stage: bool) -> bool:
    return ctx.cout >= 2 and (ctx.stride == 1 or ctx.size >= 2)


def sample(dims: Any, ctx: Context, first_stage: bool) -> dict[str, Any]:
    return {"kernel": pick_kernel("effnet", dims, ctx)}


def random_stage(rng: random.Random, cin: int, top: int) -> dict[str, Any]:
    stage: dict[str, Any] = {"out": draw.width(rng, top, low=2), "kernel": draw.kernel(rng)}
    if rng.random() < 0.4:
        stage["bottleneck"] = draw.width(rng, top)
    return stage


SPEC = BlockSpec(
    stage=EffNetStage,
    module="search_space.blocks.effnet:EffNetBlock",
    dims=(KERNEL,),
    cost=cost,
    cdg=cdg,
    fits=fits,
    sample=sample,
    problems=problems,
    random_stage=random_stage,
)
