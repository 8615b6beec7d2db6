"""The search-space format `clnas.space/1` (docs/design.md §5): which dimensions of an arch are
free.

Every free dimension is a list of choices (an `IntRange` for `repeat`). A space is validated
strictly, like an arch, and errors name the path (`stages[2].blocks[1]: unknown block type`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from search_space.arch import BLOCK_TYPES, validate_document
from search_space.blocks import REGISTRY
from search_space.errors import ArchError

SPACE_FORMAT = "clnas.space/1"

PosInt = Annotated[int, Field(ge=1)]
OddKernel = Annotated[int, Field(ge=1, le=11, multiple_of=1)]


T = TypeVar("T")
# A non-empty list of choices (distinctness is checked by `_Strict`).
Choices = Annotated[list[T], Field(min_length=1, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="after")
    def _distinct(self) -> Any:
        for name, value in self:
            if isinstance(value, list) and value and not isinstance(value[0], dict | BaseModel):
                seen = [repr(v) for v in value]
                if len(set(seen)) != len(seen):
                    raise ValueError(f"{name}: choices must be distinct, got {value}")
        return self


class IntRange(_Strict):
    low: PosInt
    high: PosInt

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        return self


class StemSpace(_Strict):
    out: Choices[PosInt]
    kernel: Choices[OddKernel] = [3]
    stride: Choices[Literal[1, 2]] = [2]
    act: Literal["relu", "relu6"] = "relu"
    pool: Literal["max"] | None = None


class StageSpace(_Strict):
    out: Choices[PosInt]
    stride: Choices[Literal[1, 2]] = [1]
    repeat: IntRange = IntRange(low=1, high=1)
    blocks: Choices[str]
    pool: Literal["max"] | None = None


class BlockDims(_Strict):
    """Choices per block type; keys not used by a type are rejected when that type is declared."""

    kernel: Choices[OddKernel] = [3]
    bias: Choices[bool] = [False]
    part: Choices[PosInt | Literal["in"]] | None = None  # hetconv P
    expand: Choices[PosInt] | None = None  # mbconv, ant, eant
    g1: Choices[PosInt] | None = None  # clc, as a group count ...
    crf: Choices[PosInt] | None = None  # ... or as the IGC CRF size M/g1
    g2: Choices[PosInt] | None = None
    interlace: Choices[bool] = [True]
    se_ratio: Choices[PosInt] | None = None  # ant, eant
    groups: Choices[PosInt] | None = None  # ant, eant members, gm, gcwm, shuffle
    width: Choices[Annotated[int, Field(ge=1, le=8)]] | None = None  # eant ensemble width K
    cw_kernel: Choices[PosInt] | None = None  # gcwm, dwscw (dc)
    dw_bn_act: Choices[bool] = [True]  # dws: BN + ReLU after the depthwise conv (not ChannelNets)


# keys each block type needs and may use: from the block registry (docs/design.md §5)
_REQUIRED: dict[str, frozenset[str]] = {name: t.required for name, t in REGISTRY.items()}
_ALLOWED: dict[str, frozenset[str]] = {name: t.dims for name, t in REGISTRY.items()}


class HeadSpace(_Strict):
    type: Choices[Literal["fc", "conv_classifier"]] = ["fc"]
    conv_out: Choices[PosInt | None] = [None]
    dropout: Choices[Annotated[float, Field(ge=0.0, lt=1.0)]] = [0.0]


class Space(_Strict):
    format: Literal["clnas.space/1"]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str = ""
    dataset: Literal["cifar100", "cifar10", "imagenet", "synthetic"] = "cifar100"
    num_classes: PosInt
    resolution: Annotated[int, Field(ge=8, le=1024)]
    in_channels: PosInt = 3
    stem: StemSpace | None = None
    stages: Annotated[list[StageSpace], Field(min_length=1, max_length=32)]
    blocks: dict[str, BlockDims] = Field(default_factory=dict)
    head: HeadSpace = HeadSpace()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def _space_problems(space: Space) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for si, stage in enumerate(space.stages):
        for bi, b in enumerate(stage.blocks):
            if b not in BLOCK_TYPES:
                problems.append(
                    (
                        f"stages[{si}].blocks[{bi}]",
                        f"unknown block type {b!r}; expected one of {BLOCK_TYPES}",
                    )
                )
    if problems:
        return problems
    used = {b for stage in space.stages for b in stage.blocks}
    for name in space.blocks:
        if name not in BLOCK_TYPES:
            problems.append(
                (f"blocks.{name}", f"unknown block type; expected one of {BLOCK_TYPES}")
            )
    for name in sorted(used):
        dims = space.blocks.get(name, BlockDims())
        set_keys = {
            k
            for k, f in BlockDims.model_fields.items()
            if k in dims.model_fields_set
            and getattr(dims, k) != f.get_default(call_default_factory=True)
        }
        for key in sorted(_REQUIRED[name]):
            if getattr(dims, key) is None:
                problems.append((f"blocks.{name}.{key}", f"required for block type {name!r}"))
        for key in sorted(set_keys - _ALLOWED[name]):
            problems.append((f"blocks.{name}.{key}", f"not a dimension of block type {name!r}"))
        if name == "clc" and (dims.g1 is None) == (dims.crf is None):
            problems.append(
                ("blocks.clc", "give exactly one of g1 (group counts) or crf (CRF sizes)")
            )
        for i, k in enumerate(dims.kernel):
            if k % 2 == 0:
                problems.append((f"blocks.{name}.kernel[{i}]", f"kernel must be odd, got {k}"))
    return problems


def parse_space(data: Any) -> Space:
    """Validate a space document; raise `ArchError` naming every offending path."""
    space = validate_document(Space, data, "a space")
    problems = _space_problems(space)
    if problems:
        raise ArchError(problems)
    return space
