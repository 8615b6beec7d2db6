"""clcNet's channel-local convolution block (Zhang, CVPR 2018; docs/design.md §1.2): IGC (grouped
kxk conv `M -> L` with `g1` groups + interlace), BN, GC (grouped 1x1 `L -> N`, `g2` groups), BN,
ReLU. FCRF iff `g1 * g2 <= L` (clcNet Sec. 3.3)."""

from __future__ import annotations

import math
import random
from typing import Any, Literal

from search_space.block_types import cdg_ops, draw
from search_space.block_types.base import BlockPlan, Kernel, StageBase, Width, divides
from search_space.block_types.context import Context, pick_kernel
from search_space.block_types.costing import Cost, bn, conv, conv_bn, pixels
from search_space.block_types.dims import CRF, G1, G2, INTERLACE, KERNEL
from search_space.block_types.spec import BlockSpec, Problems


class ClcStage(StageBase):
    block: Literal["clc"]
    g1: Width
    g2: Width
    mid: Width | None = None
    kernel: Kernel = 3
    interlace: bool = True


def cost(p: BlockPlan) -> Cost:
    """clcNet Sec. 3 / Eq. 2: IGC `A*L*M/g1` + GC `N*L/g2` per output pixel, BN after each."""
    s, (_, out_px) = p.spec, pixels(p)
    mid = s.mid or p.cin
    igc = conv(p.cin, mid, area=s.kernel**2, pixels=out_px, groups=s.g1) + bn(mid)
    return igc + conv_bn(mid, p.cout, pixels=out_px, groups=s.g2)


def cdg(p: BlockPlan) -> cdg_ops.CDG:
    s = p.spec
    mid = s.mid or p.cin
    shuffle = cdg_ops.interlace(mid, s.g1) if s.interlace else cdg_ops.identity(mid)
    # IGC (grouped kxk + interlace) -> BN -> GC; FCRF iff g1*g2 <= L (clcNet Sec. 3).
    return cdg_ops.compose(
        cdg_ops.grouped(p.cin, mid, s.g1),
        shuffle,
        cdg_ops.identity(mid),
        cdg_ops.grouped(mid, p.cout, s.g2),
    )


def problems(p: BlockPlan) -> Problems:
    s = p.spec
    mid = s.mid or p.cin
    for key, g, n, what in (
        ("g1", s.g1, p.cin, "input channels"),
        ("g1", s.g1, mid, "mid channels"),
        ("g2", s.g2, mid, "mid channels"),
        ("g2", s.g2, p.cout, "output channels"),
    ):
        if not divides(g, n):
            yield key, f"{g} does not divide {n} {what}"


def space_problems(dims: Any) -> Problems:
    if (dims.g1 is None) == (dims.crf is None):
        yield "", "give exactly one of g1 (group counts) or crf (CRF sizes)"


def _valid_g1(dims: Any, ctx: Context) -> list[int]:
    """clc g1 (given directly or as CRF size M/g1); the stage's g1 must fit every block."""
    if dims.crf is not None:
        g1s = [ctx.cin // c for c in dims.crf if divides(c, ctx.cin)]
    else:
        g1s = list(dims.g1 or [])
    return [g for g in g1s if all(divides(g, a) for pair in ctx.pairs for a in pair)]


def _valid_g2(dims: Any, ctx: Context) -> list[int]:
    return [g for g in dims.g2 or [] if all(divides(g, a) for pair in ctx.pairs for a in pair)]


def fits(dims: Any, ctx: Context, first_stage: bool) -> bool:
    return bool(_valid_g1(dims, ctx)) and bool(_valid_g2(dims, ctx))


def sample(dims: Any, ctx: Context, first_stage: bool) -> dict[str, Any]:
    keys: dict[str, Any] = {"kernel": pick_kernel("clc", dims, ctx)}
    declared_g1 = dims.g1 or [ctx.cin // c for c in dims.crf or [] if divides(c, ctx.cin)]
    keys["g1"] = ctx.pick(
        "clc.g1", declared_g1, _valid_g1(dims, ctx), extra="" if dims.g1 else ",crf"
    )
    keys["g2"] = ctx.pick("clc.g2", dims.g2 or [], _valid_g2(dims, ctx))
    keys["interlace"] = ctx.pick("clc.interlace", dims.interlace, dims.interlace)
    return keys


def random_stage(rng: random.Random, cin: int, top: int) -> dict[str, Any]:
    g1 = rng.choice(draw.divisors(cin))
    mid = cin if rng.random() < 0.6 else draw.width(rng, top, g1)
    # Repeated blocks map `out -> out` (with `mid = out` unless given), so `g1 | out` too.
    g2 = rng.choice([g for g in draw.divisors(mid) if math.lcm(g1, g) <= top])
    out = draw.width(rng, top, math.lcm(g1, g2))
    stage = {"out": out, "g1": g1, "g2": g2, "interlace": rng.random() < 0.7}
    if mid != cin:
        stage["mid"] = mid
    return stage


SPEC = BlockSpec(
    stage=ClcStage,
    module="search_space.blocks.clc:ClcBlock",
    # clc takes g1 as group counts or as CRF sizes `crf = M/g1` (exactly one of them)
    dims=(KERNEL, G1, CRF, G2, INTERLACE),
    required=frozenset({"g2"}),
    cost=cost,
    cdg=cdg,
    fits=fits,
    sample=sample,
    problems=problems,
    space_problems=space_problems,
    random_stage=random_stage,
)
