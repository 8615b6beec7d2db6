"""The searchable dimensions a space may give a block type (`clnas.space/1`, docs/design.md §5).

A dimension is one key of `BlockDims` with its choice type and default. A key means the same
thing for every block type that takes it (`groups`, `kernel`, `expand`), so each is declared
once, here; a block type lists the ones it takes in its `SPEC.dims`. A new block type may declare
a new `Dim` in its own module: the registry appends it to `BlockDims` (after the ones below, whose
order is the order of `BlockDims`' fields and so of a space's JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field

PosInt = Annotated[int, Field(ge=1)]
OddKernel = Annotated[int, Field(ge=1, le=11, multiple_of=1)]

T = TypeVar("T")
# A non-empty list of choices (distinctness is checked by the space format's `_Strict`).
Choices = Annotated[list[T], Field(min_length=1, max_length=64)]


@dataclass(frozen=True, slots=True)
class Dim:
    """One key of a block type's choices in a space: `annotation` is its pydantic type (a list
    of choices), `default` its value when the space does not give it (None: not given; a type
    that needs it lists it in `BlockSpec.required`)."""

    name: str
    annotation: Any
    default: Any = None


KERNEL = Dim("kernel", Choices[OddKernel], [3])
BIAS = Dim("bias", Choices[bool], [False])
PART = Dim("part", Choices[PosInt | Literal["in"]] | None)  # hetconv P
EXPAND = Dim("expand", Choices[PosInt] | None)  # mbconv, ant, eant
G1 = Dim("g1", Choices[PosInt] | None)  # clc, as a group count ...
CRF = Dim("crf", Choices[PosInt] | None)  # ... or as the IGC CRF size M/g1
G2 = Dim("g2", Choices[PosInt] | None)
INTERLACE = Dim("interlace", Choices[bool], [True])
SE_RATIO = Dim("se_ratio", Choices[PosInt] | None)  # ant, eant
GROUPS = Dim("groups", Choices[PosInt] | None)  # ant, eant members, gm, gcwm, shuffle
WIDTH = Dim("width", Choices[Annotated[int, Field(ge=1, le=8)]] | None)  # eant ensemble width K
CW_KERNEL = Dim("cw_kernel", Choices[PosInt] | None)  # gcwm, dwscw (dc)
# dws: BN + ReLU after the depthwise conv (not ChannelNets)
DW_BN_ACT = Dim("dw_bn_act", Choices[bool], [True])

# The order of `BlockDims`' fields for the dimensions above.
ORDER: tuple[Dim, ...] = (
    KERNEL, BIAS, PART, EXPAND, G1, CRF, G2, INTERLACE, SE_RATIO, GROUPS, WIDTH, CW_KERNEL,
    DW_BN_ACT,
)  # fmt: skip
