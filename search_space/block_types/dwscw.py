"""ChannelNets' depthwise separable channel-wise convolution DWSCW (docs/design.md §1.4):
depthwise kxk (stride, no BN or activation: paper §4.2), then a channel-wise conv (kernel `dc`) in
place of the 1x1 conv, BN, ReLU6. `M -> N` uses `N/M` kernels when widening or channel stride
`M/N` when narrowing."""

from __future__ import annotations

import random
from typing import Any, Literal

from search_space.block_types import cdg_ops, draw
from search_space.block_types.base import BlockPlan, Kernel, StageBase, Width, divides
from search_space.block_types.context import Context, pick_kernel
from search_space.block_types.costing import Cost, bn, channel_wise, conv, pixels, total
from search_space.block_types.dims import CW_KERNEL, KERNEL
from search_space.block_types.spec import BlockSpec, Problems


class DwsCWStage(StageBase):
    block: Literal["dwscw"]
    cw_kernel: Width
    kernel: Kernel = 3


def dwscw_kernels_and_stride(cin: int, cout: int) -> tuple[int, int]:
    """(kernels, channel stride) of the channel-wise conv mapping `cin -> cout`."""
    return (cout // cin, 1) if cout >= cin else (1, cin // cout)


def cost(p: BlockPlan) -> Cost:
    """ChannelNets DWSCW: weights `k*k*M + dc*kernels` + BN(N), `N/M` kernels when widening;
    no BN after the depthwise conv (ChannelNets §4.2)."""
    s, (_, out_px) = p.spec, pixels(p)
    kernels = p.cout // p.cin if p.cout >= p.cin else 1
    return total(
        conv(p.cin, p.cin, area=s.kernel**2, pixels=out_px, groups=p.cin),
        channel_wise(s.cw_kernel, kernels=kernels, out_channels=p.cout, pixels=out_px),
        bn(p.cout),
    )


def cdg(p: BlockPlan) -> cdg_ops.CDG:
    kernels, cw_stride = dwscw_kernels_and_stride(p.cin, p.cout)
    return cdg_ops.compose(
        cdg_ops.identity(p.cin), cdg_ops.channel_wise(p.cin, p.spec.cw_kernel, kernels, cw_stride)
    )


def problems(p: BlockPlan) -> Problems:
    if not (divides(p.cin, p.cout) or divides(p.cout, p.cin)):
        yield (
            "out",
            f"a channel-wise conv maps {p.cin} -> {p.cout} channels only when one divides "
            "the other",
        )


def fits(dims: Any, ctx: Context, first_stage: bool) -> bool:
    return divides(ctx.cin, ctx.cout) or divides(ctx.cout, ctx.cin)


def sample(dims: Any, ctx: Context, first_stage: bool) -> dict[str, Any]:
    return {
        "kernel": pick_kernel("dwscw", dims, ctx),
        "cw_kernel": ctx.pick("dwscw.cw_kernel", dims.cw_kernel or [], dims.cw_kernel or []),
    }


def random_stage(rng: random.Random, cin: int, top: int) -> dict[str, Any]:
    if rng.random() < 0.5 and cin * 2 <= top:
        out = cin * rng.randint(1, top // cin)  # widening: out/in kernels
    else:
        out = cin // rng.choice(draw.divisors(cin))  # narrowing: channel stride in/out
    return {"out": out, "cw_kernel": rng.randint(1, 16), "kernel": draw.kernel(rng)}


SPEC = BlockSpec(
    stage=DwsCWStage,
    module="search_space.blocks.dwscw:DwsCWBlock",
    dims=(KERNEL, CW_KERNEL),
    required=frozenset({"cw_kernel"}),
    cost=cost,
    cdg=cdg,
    fits=fits,
    sample=sample,
    problems=problems,
    random_stage=random_stage,
)
