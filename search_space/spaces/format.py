"""The search-space format `clnas.space/1` (docs/design.md §5): which dimensions of an arch are
free.

Every free dimension is a list of choices (an `IntRange` for `repeat`). A space is validated
strictly, like an arch, and errors name the path (`stages[2].blocks[1]: unknown block type`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo

from search_space import block_types
from search_space.arch import BLOCK_TYPES, validate_document
from search_space.block_types.dims import ORDER, Choices, Dim, OddKernel, PosInt
from search_space.errors import ArchError

SPACE_FORMAT = "clnas.space/1"


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
    """Choices per block type; keys not used by a type are rejected when that type is declared.

    Its fields are the registered types' dimensions (`BlockSpec.dims`,
    `search_space/block_types/dims.py`), installed by `_sync_dims` below."""


def _registered_dims() -> list[Dim]:
    """Every dimension of a registered type, once: the shared ones in `dims.ORDER`, then new ones
    in registration order. A name must mean one thing: one type and one default."""
    found: dict[str, Dim] = {}
    for spec in block_types.REGISTRY.values():
        for dim in spec.dims:
            known = found.setdefault(dim.name, dim)
            if known != dim:
                raise ValueError(
                    f"block type {spec.name!r} redefines dimension {dim.name!r} ({dim} vs {known})"
                )
    rank = {d.name: i for i, d in enumerate(ORDER)}
    return sorted(found.values(), key=lambda d: rank.get(d.name, len(rank)))


def _sync_dims() -> None:
    """Make `BlockDims`' fields the registered types' dimensions (after a type is registered or
    unregistered) and rebuild the models that hold it."""
    dims = _registered_dims()
    fields = BlockDims.__pydantic_fields__
    if list(fields) == [d.name for d in dims]:
        return
    fields_now = dict(fields)
    fields.clear()
    for dim in dims:
        fields[dim.name] = fields_now.get(dim.name) or FieldInfo.from_annotated_attribute(
            dim.annotation, dim.default
        )
    BlockDims.model_rebuild(force=True)
    if "Space" in globals():
        Space.model_rebuild(force=True)


_sync_dims()

# keys each block type needs and may use: live views of the block registry (docs/design.md §5)
_REQUIRED = block_types.Table(lambda spec: spec.required, "required dimensions")
_ALLOWED = block_types.Table(lambda spec: spec.allowed, "allowed dimensions")


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
        for key, msg in block_types.REGISTRY[name].space_problems(dims):
            problems.append((f"blocks.{name}.{key}" if key else f"blocks.{name}", msg))
        kernels: list[int] = getattr(dims, "kernel")  # noqa: B009 (a field the registry adds)
        for i, k in enumerate(kernels):
            if k % 2 == 0:
                problems.append((f"blocks.{name}.kernel[{i}]", f"kernel must be odd, got {k}"))
    return problems


block_types.on_change(_sync_dims)


def parse_space(data: Any) -> Space:
    """Validate a space document; raise `ArchError` naming every offending path."""
    space = validate_document(Space, data, "a space")
    problems = _space_problems(space)
    if problems:
        raise ArchError(problems)
    return space
