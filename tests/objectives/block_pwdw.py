"""A hypothetical block type declared outside the library, as a user would add one: a pointwise
then depthwise block ("pwdw": grouped 1x1 conv + BN + ReLU, then depthwise kxk conv carrying the
stride + BN + ReLU), with one new space dimension (`pw_groups`).

Everything clnas knows about it is `SPEC` below, plus its torch module `PwDwBlock`; registering
`SPEC` (`search_space.block_types.register`) puts it in the arch and space formats, the sampler,
the module table, the cost model and the CDG analysis without editing any library file
(tests/objectives/test_external_block_type.py). Its module lives in this file because it is a
test; a library block type keeps its module in `search_space/blocks/<name>.py`.
"""

from __future__ import annotations

import random
from typing import Any, Literal

import torch
from torch import nn

from search_space.block_types import cdg_ops
from search_space.block_types.base import BlockPlan, Kernel, StageBase, Width, divides
from search_space.block_types.context import Context, groups_ok, pick_kernel
from search_space.block_types.costing import Cost, conv_bn, pixels, total
from search_space.block_types.dims import KERNEL, Choices, Dim, PosInt
from search_space.block_types.spec import BlockSpec, Problems
from search_space.blocks.layers import ConvBNAct

PW_GROUPS = Dim("pw_groups", Choices[PosInt] | None)


class PwDwStage(StageBase):
    block: Literal["pwdw"]
    pw_groups: Width = 1
    kernel: Kernel = 3


class PwDwBlock(nn.Module):
    def __init__(self, spec: PwDwStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        self.pw = ConvBNAct(cin, cout, kernel=1, groups=spec.pw_groups)
        self.dw = ConvBNAct(cout, cout, kernel=spec.kernel, stride=stride, groups=cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dw(self.pw(x))


def cost(p: BlockPlan) -> Cost:
    """Grouped 1x1 on the input map, depthwise kxk on the output map, BN after each."""
    in_px, out_px = pixels(p)
    s = p.spec
    return total(
        conv_bn(p.cin, p.cout, pixels=in_px, groups=s.pw_groups),
        conv_bn(p.cout, p.cout, area=s.kernel**2, pixels=out_px, groups=p.cout),
    )


def cdg(p: BlockPlan) -> cdg_ops.CDG:
    return cdg_ops.compose(
        cdg_ops.grouped(p.cin, p.cout, p.spec.pw_groups), cdg_ops.identity(p.cout)
    )


def problems(p: BlockPlan) -> Problems:
    g = p.spec.pw_groups
    for n, what in ((p.cin, "input"), (p.cout, "output")):
        if not divides(g, n):
            yield "pw_groups", f"{g} does not divide {n} {what} channels"


def fits(dims: Any, ctx: Context, first_stage: bool) -> bool:
    return any(groups_ok(g, ctx) for g in dims.pw_groups or [])


def sample(dims: Any, ctx: Context, first_stage: bool) -> dict[str, Any]:
    groups = [g for g in dims.pw_groups or [] if groups_ok(g, ctx)]
    return {
        "kernel": pick_kernel("pwdw", dims, ctx),
        "pw_groups": ctx.pick("pwdw.pw_groups", dims.pw_groups or [], groups),
    }


def random_stage(rng: random.Random, cin: int, top: int) -> dict[str, Any]:
    g = rng.choice([d for d in (1, 2, 4) if cin % d == 0])
    return {"out": g * rng.randint(1, top // g), "pw_groups": g, "kernel": rng.choice((3, 5))}


SPEC = BlockSpec(
    stage=PwDwStage,
    module="tests.objectives.block_pwdw:PwDwBlock",
    dims=(KERNEL, PW_GROUPS),
    required=frozenset({"pw_groups"}),
    cost=cost,
    cdg=cdg,
    fits=fits,
    sample=sample,
    problems=problems,
    random_stage=random_stage,
)
