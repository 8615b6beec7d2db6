"""HetConv (Singh et al., CVPR 2019; docs/design.md §1.3): per output channel, `M/P` kxk kernels
and `M - M/P` 1x1 kernels, contiguous arrangement."""

from __future__ import annotations

import random
from typing import Any, Literal

from search_space.block_types import cdg_ops, draw
from search_space.block_types.base import BlockPlan, Kernel, StageBase, Width, divides
from search_space.block_types.context import Choice, Context, pick_kernel
from search_space.block_types.costing import ZERO, Cost, bn, conv, pixels
from search_space.block_types.dims import BIAS, KERNEL, PART
from search_space.block_types.spec import BlockSpec, Problems


class HetConvStage(StageBase):
    block: Literal["hetconv"]
    part: Width | Literal["in"]
    kernel: Kernel = 3
    bias: bool = False


def _part(p: BlockPlan) -> int:
    return p.cin if p.spec.part == "in" else int(p.spec.part)


def cost(p: BlockPlan) -> Cost:
    """HetConv Eq. (FL_HC): `Ho*Wo*N*(M/P*k*k + (M - M/P))`, weights `N*(M/P*k*k + M - M/P)`.

    As built: a grouped kxk conv (`groups = P`, carries the bias) plus, for `P > 1`, a grouped
    1x1 conv (`groups = P`) over the `M - M/P` gathered channels outside each group.
    """
    s, (_, out_px) = p.spec, pixels(p)
    part = _part(p)
    spatial = conv(p.cin, p.cout, area=s.kernel**2, pixels=out_px, groups=part, bias=s.bias)
    others = p.cin - p.cin // part
    pointwise = conv(part * others, p.cout, pixels=out_px, groups=part) if part > 1 else ZERO
    return spatial + pointwise + bn(p.cout)


def cdg(p: BlockPlan) -> cdg_ops.CDG:
    return cdg_ops.hetconv(p.cin, p.cout, _part(p))


def problems(p: BlockPlan) -> Problems:
    part = _part(p)
    if not divides(part, p.cin):
        yield "part", f"{part} does not divide {p.cin} input channels"
    if not divides(part, p.cout):
        yield "part", f"{part} does not divide {p.cout} output channels"


def _valid_parts(dims: Any, ctx: Context) -> list[Choice]:
    def fits(p: Choice, cin: int, cout: int) -> bool:
        part = cin if p == "in" else p
        return divides(part, cin) and divides(part, cout)

    return [p for p in dims.part or [] if all(fits(p, a, b) for a, b in ctx.pairs)]


def fits(dims: Any, ctx: Context, first_stage: bool) -> bool:
    return bool(_valid_parts(dims, ctx))


def sample(dims: Any, ctx: Context, first_stage: bool) -> dict[str, Any]:
    return {
        "kernel": pick_kernel("hetconv", dims, ctx),
        "bias": ctx.pick("hetconv.bias", dims.bias, dims.bias),
        "part": ctx.pick("hetconv.part", dims.part or [], _valid_parts(dims, ctx)),
    }


def random_stage(rng: random.Random, cin: int, top: int) -> dict[str, Any]:
    if cin <= top // 2 and rng.random() < 0.25:
        return {"out": cin * rng.randint(1, top // cin), "part": "in"}
    part = rng.choice(draw.divisors(cin))
    bias = rng.random() < 0.5
    return {
        "out": draw.width(rng, top, part),
        "part": part,
        "kernel": draw.kernel(rng),
        "bias": bias,
    }


SPEC = BlockSpec(
    stage=HetConvStage,
    module="search_space.blocks.hetconv:HetConvBlock",
    dims=(KERNEL, BIAS, PART),
    required=frozenset({"part"}),
    cost=cost,
    cdg=cdg,
    fits=fits,
    sample=sample,
    problems=problems,
    random_stage=random_stage,
)
