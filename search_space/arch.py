"""The `clnas.arch/1` architecture format (docs/design.md §4): one candidate network as a document.

Parsing is strict (unknown keys and wrong types are rejected) and every error names the path of
the offending value, e.g. `stages[3].g1: 3 does not divide 128 input channels`. Structural checks
(group divisibility, channel flow, spatial sizes) run after parsing, while the document is walked
block by block; the same walk (`Arch.blocks()`) is what the builder and the cost model consume, so
stage logic (stride on the first block, widths) lives in exactly one place.

The stage models, their union and each type's structural rules come from the block registry
(`search_space/block_types/`, one module per type); `Arch.stages` is rebuilt when a type is
registered or unregistered, and `BLOCK_TYPES` / `STAGE_MODELS` are live views of the registry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    TypeAlias,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

import pydantic
import yaml
from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

# The stage models are re-exported here under their old names (as `X as X`): each now lives in
# its block type's module, `search_space/block_types/<name>.py`; the bounds in `.../base.py`.
from search_space import block_types
from search_space.block_types.ant import AntStage as AntStage
from search_space.block_types.base import (
    MAX_ANALYSIS_CELLS,
    MAX_BLOCKS,
    MAX_CLASSES,
    MAX_HEAD_LAYERS,
    MAX_HIDDEN,
    MAX_IN_CHANNELS,
    MAX_RESOLUTION,
    MAX_STAGES,
    MIN_RESOLUTION,
    Act,
    BlockPlan,
    Kernel,
    Stride,
    Width,
    conv_out_size,
)
from search_space.block_types.base import MAX_CHANNELS as MAX_CHANNELS
from search_space.block_types.base import MAX_EXPAND as MAX_EXPAND
from search_space.block_types.base import MAX_GROUPS as MAX_GROUPS
from search_space.block_types.base import MAX_REPEAT as MAX_REPEAT
from search_space.block_types.base import Expand as Expand
from search_space.block_types.base import StageBase as _StageBase
from search_space.block_types.base import Strict as _Strict
from search_space.block_types.clc import ClcStage as ClcStage
from search_space.block_types.conv import ConvStage as ConvStage
from search_space.block_types.dws import DwsStage as DwsStage
from search_space.block_types.dwscw import DwsCWStage as DwsCWStage
from search_space.block_types.eant import EAntStage as EAntStage
from search_space.block_types.effnet import EffNetStage as EffNetStage
from search_space.block_types.effnet import effnet_bottleneck as effnet_bottleneck
from search_space.block_types.gcwm import GCWMStage as GCWMStage
from search_space.block_types.gm import GMStage as GMStage
from search_space.block_types.hetconv import HetConvStage as HetConvStage
from search_space.block_types.mbconv import MBConvStage as MBConvStage
from search_space.block_types.shuffle import ShuffleStage as ShuffleStage
from search_space.errors import ArchError, format_path

FORMAT = "clnas.arch/1"
M = TypeVar("M", bound=BaseModel)

# The stage models and their `block` tags, in registration order: live views of the block
# registry (`search_space/block_types/`), so a type registered later is in both.
BLOCK_TYPES = block_types.Names()


class _StageModels(block_types.Table[type[_StageBase]]):
    """The registered stage models in order; compares equal to the tuple of them."""

    def __eq__(self, other: object) -> bool:
        return tuple(self.values()) == other if isinstance(other, tuple) else NotImplemented


STAGE_MODELS = _StageModels(lambda spec: spec.stage, "stage models")


def stage_union() -> Any:
    """The discriminated union of the registered stage models (the arch's `stages` items)."""
    models = tuple(spec.stage for spec in block_types.REGISTRY.values())
    return Annotated[Union[models], Field(discriminator="block")]  # noqa: UP007


if TYPE_CHECKING:
    Stage: TypeAlias = _StageBase
else:
    Stage = stage_union()
_built_models: tuple[type[_StageBase], ...] = tuple(STAGE_MODELS.values())


class Stem(_Strict):
    out: Width
    kernel: Kernel = 3
    stride: Stride = 2
    act: Act = "relu"
    pool: Literal["max"] | None = None


class FCHead(_Strict):
    type: Literal["fc"]
    conv_out: Width | None = None
    act: Act = "relu6"
    hidden: Annotated[list[Width], Field(max_length=MAX_HEAD_LAYERS)] = Field(default_factory=list)
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class ConvClassifierHead(_Strict):
    type: Literal["conv_classifier"]


Head = Annotated[FCHead | ConvClassifierHead, Field(discriminator="type")]
HEAD_TYPES: tuple[str, ...] = ("fc", "conv_classifier")


class Arch(_Strict):
    format: Literal["clnas.arch/1"]
    name: Annotated[str, Field(min_length=1, max_length=200)] = "custom"
    num_classes: Annotated[int, Field(ge=1, le=MAX_CLASSES)]
    resolution: Annotated[int, Field(ge=MIN_RESOLUTION, le=MAX_RESOLUTION)]
    in_channels: Annotated[int, Field(ge=1, le=MAX_IN_CHANNELS)] = 3
    stem: Stem | None = None
    stages: Annotated[list[Stage], Field(min_length=1, max_length=MAX_STAGES)]
    head: Head
    # Free-form record of where the design came from (study, trial, metrics, versions); written
    # by exports, ignored by the builder and the cost model.
    provenance: dict[str, Any] | None = None

    # -- the walk -------------------------------------------------------------------------
    def stem_size(self, resolution: int | None = None) -> int:
        size = resolution or self.resolution
        if self.stem is not None:
            size = conv_out_size(size, self.stem.kernel, self.stem.stride)
            if self.stem.pool == "max":
                size = conv_out_size(size, 3, 2)
        return size

    def blocks(self, resolution: int | None = None) -> Iterator[BlockPlan]:
        """Every block in order with its channels, stride and spatial sizes (docs/design.md §4
        stage rule)."""
        cin = self.stem.out if self.stem is not None else self.in_channels
        size = self.stem_size(resolution)
        for si, stage in enumerate(self.stages):
            for bi in range(stage.repeat):
                stride = stage.stride if bi == 0 else 1
                out_size = conv_out_size(size, 3, stride)
                yield BlockPlan(si, bi, stage, cin, stage.out, stride, size, out_size)
                cin, size = stage.out, out_size
            if stage.pool == "max":
                size //= 2

    def final_features(self, resolution: int | None = None) -> tuple[int, int]:
        """(channels, spatial side) entering the head."""
        channels = self.stem.out if self.stem is not None else self.in_channels
        size = self.stem_size(resolution)
        for stage in self.stages:
            channels = stage.out
            size = conv_out_size(size, 3, stage.stride)
            if stage.pool == "max":
                size //= 2
        return channels, size

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def with_changes(self, **changes: Any) -> Arch:
        """A validated copy with top-level fields replaced (e.g. `num_classes=100`)."""
        return parse_arch({**self.to_dict(), **changes})


def _rebuild_stage_union() -> None:
    """Re-derive `Stage` and `Arch.stages` after a block type is (un)registered."""
    global Stage, _built_models
    models = tuple(STAGE_MODELS.values())
    if models == _built_models:
        return
    Stage = union = stage_union()
    _built_models = models
    Arch.__pydantic_fields__["stages"] = FieldInfo.from_annotation(
        Annotated[list[union], Field(min_length=1, max_length=MAX_STAGES)]  # type: ignore[arg-type,valid-type]
    )
    Arch.model_rebuild(force=True)


# -- parsing ------------------------------------------------------------------------------

_UNION_TAGS = {"stages": BLOCK_TYPES, "head": HEAD_TYPES}


def _plain_union_fields() -> set[str]:
    """Stage keys typed as plain (non-discriminated) unions, e.g. hetconv's `part: Width |
    Literal["in"]`: pydantic appends the member's label to the field's path
    (`stages.0.hetconv.part.constrained-int`, `...part.literal['in']`). `X | None` is not one."""
    fields = set()
    for model in STAGE_MODELS.values():
        for name, f in model.model_fields.items():
            members = [a for a in get_args(f.annotation) if a is not type(None)]
            if get_origin(f.annotation) in (Union, type(int | None)) and len(members) > 1:
                fields.add(name)
    return fields


_PLAIN_UNION_FIELDS: set[str] = set()


def _rederive() -> None:
    _rebuild_stage_union()
    _PLAIN_UNION_FIELDS.clear()
    _PLAIN_UNION_FIELDS.update(_plain_union_fields())


block_types.on_change(_rederive)


def _clean_loc(loc: tuple[str | int, ...]) -> list[str | int]:
    """Drop the tags pydantic inserts into union paths (`stages.3.clc.g1`, `part.literal['in']`)."""
    out: list[str | int] = []
    for i, part in enumerate(loc):
        if i >= 1 and isinstance(part, str) and loc[i - 1] in _PLAIN_UNION_FIELDS:
            continue
        if i >= 1 and isinstance(part, str):
            owner = loc[i - 2] if isinstance(loc[i - 1], int) and i >= 2 else loc[i - 1]
            if part in _UNION_TAGS.get(str(owner), ()) and i + 1 < len(loc):
                continue
        out.append(part)
    return out


def _error_loc(err: Any) -> list[str | int]:
    """The cleaned path; a bad or missing `block`/`type` tag is reported at that key."""
    loc = _clean_loc(tuple(err["loc"]))
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append(str(err.get("ctx", {}).get("discriminator", "")).strip("'"))
    return loc


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        expected = err.get("ctx", {}).get("expected_tags")
        return f"unknown type {tag!r}; expected one of {expected}"
    if kind == "union_tag_not_found":
        return f"missing discriminator key {err.get('ctx', {}).get('discriminator')}"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    return f"{err['msg']} (got {err.get('input')!r})"


def validate_document(model: type[M], data: Any, what: str) -> M:
    """`model.model_validate(data)`, with pydantic's errors turned into one `ArchError` whose
    paths read `stages[3].g1` (shared by the arch, space and study formats)."""
    if not isinstance(data, dict):
        raise ArchError.at((), f"{what} document must be a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ArchError((format_path(_error_loc(e)), _message(e)) for e in exc.errors()) from None


def parse_arch(data: Any) -> Arch:
    """Validate a plain document (dict) into an `Arch`; raise `ArchError` naming every bad path."""
    arch = validate_document(Arch, data, "an arch")
    problems = list(_bound_problems(arch))  # before any walk: the bounds keep the walk cheap
    if problems:
        raise ArchError(problems)
    problems = list(_structural_problems(arch))
    if problems:
        raise ArchError(problems)
    return arch


def _block_widths(arch: Arch) -> Iterator[tuple[int, int, int]]:
    """(stage, input channels, widest layer) of each distinct block, from the stage list alone:
    a stage's first block and, when it repeats, one of the others (they are all alike)."""
    cin = arch.stem.out if arch.stem is not None else arch.in_channels
    for si, stage in enumerate(arch.stages):
        for block_in in (cin, stage.out)[: min(stage.repeat, 2)]:
            hidden = block_in * getattr(stage, "expand", 1)
            mid = getattr(stage, "mid", None) or getattr(stage, "bottleneck", None) or 0
            yield si, block_in, max(block_in, stage.out, hidden, mid)
        cin = stage.out


def analysis_cells(arch: Arch) -> int:
    """An upper estimate of the CRF analysis' size: the cells of a square boolean matrix at each
    distinct block's widest layer, times the matrices its type's analysis holds
    (`BlockSpec.matrices`: one per e-ANT member, `1 + widest // 1024` for gcwm's fused
    channel-wise conv; docs/limits.md#architecture-documents)."""
    cells = 0
    for si, _, widest in _block_widths(arch):
        stage = arch.stages[si]
        cells += block_types.spec_of(stage).matrices(stage, widest) * widest * widest
    return cells


def _bound_problems(arch: Arch) -> Iterator[tuple[str, str]]:
    """The bounds that span fields (docs/limits.md#architecture-documents); per-field bounds
    are in the models. Cheap: one step per stage, whatever the repeats."""
    blocks = sum(stage.repeat for stage in arch.stages)
    if blocks > MAX_BLOCKS:
        yield "stages", f"{blocks} blocks in total exceed the limit of {MAX_BLOCKS}"
    for si, block_in, _ in _block_widths(arch):
        stage = arch.stages[si]
        if hasattr(stage, "expand") and block_in * stage.expand > MAX_HIDDEN:
            yield (
                f"stages[{si}].expand",
                f"expand {stage.expand} x {block_in} input channels = {block_in * stage.expand} "
                f"expanded channels exceed the limit of {MAX_HIDDEN}",
            )
            return
    cells = analysis_cells(arch)
    if cells > MAX_ANALYSIS_CELLS:
        yield (
            "stages",
            f"analysing this design takes {cells} channel-pair cells, over the limit of "
            f"{MAX_ANALYSIS_CELLS}; use fewer distinct or narrower stages",
        )


def _structural_problems(arch: Arch) -> Iterator[tuple[str, str]]:
    """Divisibility and shape rules that pydantic cannot see (they depend on the channel flow)."""
    if arch.stem is not None:
        if arch.stem.kernel % 2 == 0:
            yield "stem.kernel", f"kernel must be odd, got {arch.stem.kernel}"
        if arch.stem_size() < 1:
            yield "stem", "the stem reduces the input to nothing"
    reported: set[str] = set()
    for plan in arch.blocks():
        where = f"stages[{plan.stage}]"
        if plan.size_in < 1:
            yield where, "the feature map has shrunk to nothing before this stage"
            return
        for key, msg in _block_problems(plan):
            path = f"{where}.{key}" if key else where
            if path not in reported:
                reported.add(path)
                yield path, msg
        last_of_stage = plan.index == plan.spec.repeat - 1
        if last_of_stage and plan.spec.pool == "max" and plan.size_out < 2:
            yield f"{where}.pool", f"cannot max-pool a {plan.size_out}x{plan.size_out} map"
            return
    channels, _ = arch.final_features()
    if isinstance(arch.head, ConvClassifierHead) and channels < arch.num_classes:
        yield (
            "head.type",
            f"conv_classifier needs at least num_classes={arch.num_classes} input channels, "
            f"got {channels}",
        )


def _block_problems(p: BlockPlan) -> Iterator[tuple[str, str]]:
    """The odd-kernel rule every type with a `kernel` shares, then the type's own rules
    (`BlockSpec.problems`)."""
    kernel = getattr(p.spec, "kernel", 3)
    if kernel % 2 == 0:
        yield "kernel", f"kernel must be odd, got {kernel}"
    yield from block_types.spec_of(p.spec).problems(p)


# -- loading ------------------------------------------------------------------------------


def load_document(path: str | Path) -> Any:
    """Read a JSON or YAML file (by suffix) into plain data; errors name the file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ArchError.at((), f"cannot read {p}: {exc.strerror}") from None
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            return yaml.safe_load(text)
        return json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ArchError.at((), f"{p} is not valid {p.suffix.lstrip('.').upper()}: {exc}") from None
