"""The `clnas.arch/1` architecture format (docs/design.md §4): one candidate network as a document.

Parsing is strict (unknown keys and wrong types are rejected) and every error names the path of
the offending value, e.g. `stages[3].g1: 3 does not divide 128 input channels`. Structural checks
(group divisibility, channel flow, spatial sizes) run after parsing, while the document is walked
block by block; the same walk (`Arch.blocks()`) is what the builder and the cost model consume, so
stage logic (stride on the first block, widths) lives in exactly one place.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from search_space.errors import ArchError, format_path

FORMAT = "clnas.arch/1"
M = TypeVar("M", bound=BaseModel)

# Upper bounds on a document (docs/limits.md#architecture-documents). Each is at least twice the
# largest value in the zoo (in brackets) and keeps analysing any accepted document bounded: the
# structural walk and the cost model visit every block, and the CRF analysis (objectives.cdg)
# holds boolean matrices as wide as a block's widest layer, so widths bound its memory.
MAX_CHANNELS = 4096  # channels of any layer: stage, stem, mid, bottleneck, head [1920]
MAX_IN_CHANNELS = 64  # channels of the input image [3]
MAX_EXPAND = 16  # expansion ratio of mbconv / ant / eant [6]
MAX_HIDDEN = 4096  # expanded channels inside a block, expand x input channels [1920]
MAX_REPEAT = 64  # blocks in one stage [8]
MAX_STAGES = 64  # stages [9]
MAX_BLOCKS = 256  # blocks in the whole network, sum of repeats [17]
MAX_CLASSES = 100_000  # num_classes [1000]
MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024  # input side in pixels [32 .. 224]
MAX_HEAD_LAYERS = 8  # hidden FC layers of the head [1]
MAX_GROUPS = 8  # members of an e-ANT ensemble [3]
# The CRF analysis builds boolean matrices as wide as a block's widest layer, once per branch:
# their cells, summed over the distinct blocks, bound its time and memory before it starts
# [9.7e6 in the zoo (shufflenet_v1_g3_x2); 3.8e7 sampled from the default space].
MAX_ANALYSIS_CELLS = 2**26

Expand = Annotated[int, Field(ge=1, le=MAX_EXPAND)]
Width = Annotated[int, Field(ge=1, le=MAX_CHANNELS)]
Kernel = Annotated[int, Field(ge=1, le=11)]
Stride = Literal[1, 2]
Act = Literal["relu", "relu6"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Stem(_Strict):
    out: Width
    kernel: Kernel = 3
    stride: Stride = 2
    act: Act = "relu"
    pool: Literal["max"] | None = None


class _StageBase(_Strict):
    out: Width
    stride: Stride = 1
    repeat: Annotated[int, Field(ge=1, le=MAX_REPEAT)] = 1
    pool: Literal["max"] | None = None


class ConvStage(_StageBase):
    block: Literal["conv"]
    kernel: Kernel = 3
    bias: bool = False


class HetConvStage(_StageBase):
    block: Literal["hetconv"]
    part: Width | Literal["in"]
    kernel: Kernel = 3
    bias: bool = False


class DwsStage(_StageBase):
    block: Literal["dws"]
    kernel: Kernel = 3
    # BN + ReLU after the depthwise conv (MobileNetV1); false in ChannelNets (docs/design.md §1.4)
    dw_bn_act: bool = True


class MBConvStage(_StageBase):
    block: Literal["mbconv"]
    expand: Expand
    kernel: Kernel = 3


class ClcStage(_StageBase):
    block: Literal["clc"]
    g1: Width
    g2: Width
    mid: Width | None = None
    kernel: Kernel = 3
    interlace: bool = True


class AntStage(_StageBase):
    block: Literal["ant"]
    expand: Expand
    se_ratio: Width
    groups: Width = 1
    kernel: Kernel = 3


class EAntStage(_StageBase):
    block: Literal["eant"]
    expand: Expand
    se_ratio: Width
    groups: Annotated[list[Width], Field(min_length=1, max_length=MAX_GROUPS)]
    kernel: Kernel = 3


class GMStage(_StageBase):
    block: Literal["gm"]
    groups: Width
    kernel: Kernel = 3


class GCWMStage(_StageBase):
    block: Literal["gcwm"]
    groups: Width
    cw_kernel: Width
    kernel: Kernel = 3


class DwsCWStage(_StageBase):
    block: Literal["dwscw"]
    cw_kernel: Width
    kernel: Kernel = 3


class ShuffleStage(_StageBase):
    block: Literal["shuffle"]
    groups: Width
    in_groups: Width | None = None


class EffNetStage(_StageBase):
    block: Literal["effnet"]
    kernel: Kernel = 3
    bottleneck: Width | None = None


Stage = Annotated[
    ConvStage
    | HetConvStage
    | DwsStage
    | MBConvStage
    | ClcStage
    | AntStage
    | EAntStage
    | GMStage
    | GCWMStage
    | DwsCWStage
    | ShuffleStage
    | EffNetStage,
    Field(discriminator="block"),
]

# The stage models and their `block` tags, in union order, derived from `Stage` (the block
# registry, `search_space/blocks/__init__.py`, pairs each with its module and search dimensions).
STAGE_MODELS: tuple[type[_StageBase], ...] = get_args(get_args(Stage)[0])
BLOCK_TYPES: tuple[str, ...] = tuple(
    str(get_args(m.model_fields["block"].annotation)[0]) for m in STAGE_MODELS
)


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


@dataclass(frozen=True, slots=True)
class BlockPlan:
    """One block of the network with its resolved shapes (what the builder and cost model need)."""

    stage: int  # index into `Arch.stages`
    index: int  # block index inside the stage
    spec: Any  # the stage's model (ConvStage, ClcStage, ...)
    cin: int
    cout: int
    stride: int
    size_in: int  # square spatial side entering the block
    size_out: int

    @property
    def first(self) -> bool:
        return self.index == 0

    @property
    def block(self) -> str:
        return str(self.spec.block)


def conv_out_size(size: int, kernel: int, stride: int) -> int:
    """Spatial side after a conv with `padding = kernel // 2` (odd kernels: 'same' at stride 1)."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


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


# -- parsing ------------------------------------------------------------------------------

_UNION_TAGS = {"stages": set(BLOCK_TYPES), "head": set(HEAD_TYPES)}
# Plain (non-discriminated) unions: pydantic appends the member's label to the field's path
# (`stages.0.hetconv.part.constrained-int`, `...part.literal['in']`).
_PLAIN_UNION_FIELDS = {"part"}


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
    distinct block's widest layer, once per e-ANT member; a gcwm block's fused channel-wise conv
    has a distinct row per channel, so its product grows as widest^3, counted as
    `1 + widest // 1024` matrices (docs/limits.md#architecture-documents)."""
    cells = 0
    for si, _, widest in _block_widths(arch):
        stage = arch.stages[si]
        if isinstance(stage, EAntStage):
            matrices = len(stage.groups)
        elif isinstance(stage, GCWMStage):
            matrices = 1 + widest // 1024
        else:
            matrices = 1
        cells += matrices * widest * widest
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


def _divides(g: int, n: int) -> bool:
    return n % g == 0


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
    s = p.spec
    kernel = getattr(s, "kernel", 3)
    if kernel % 2 == 0:
        yield "kernel", f"kernel must be odd, got {kernel}"

    def div(key: str, g: int, n: int, what: str) -> Iterator[tuple[str, str]]:
        if not _divides(g, n):
            yield key, f"{g} does not divide {n} {what}"

    if isinstance(s, HetConvStage):
        part = p.cin if s.part == "in" else s.part
        yield from div("part", part, p.cin, "input channels")
        yield from div("part", part, p.cout, "output channels")
    elif isinstance(s, ClcStage):
        mid = s.mid or p.cin
        yield from div("g1", s.g1, p.cin, "input channels")
        yield from div("g1", s.g1, mid, "mid channels")
        yield from div("g2", s.g2, mid, "mid channels")
        yield from div("g2", s.g2, p.cout, "output channels")
    elif isinstance(s, AntStage | EAntStage):
        hidden = s.expand * p.cin
        groups = [s.groups] if isinstance(s, AntStage) else s.groups
        for i, g in enumerate(groups):
            key = "groups" if isinstance(s, AntStage) else f"groups[{i}]"
            yield from div(key, g, hidden, "expanded channels")
            yield from div(key, g, p.cout, "output channels")
    elif isinstance(s, GMStage | GCWMStage):
        yield from div("groups", s.groups, p.cin, "input channels")
        yield from div("groups", s.groups, p.cout, "output channels")
    elif isinstance(s, DwsCWStage):
        if not (_divides(p.cin, p.cout) or _divides(p.cout, p.cin)):
            yield (
                "out",
                (
                    f"a channel-wise conv maps {p.cin} -> {p.cout} channels only when one divides "
                    "the other"
                ),
            )
    elif isinstance(s, ShuffleStage):
        if p.cout % 4:
            yield "out", f"{p.cout} output channels are not divisible by 4 (bottleneck = out/4)"
            return
        mid = p.cout // 4
        if p.stride == 1 and p.cin != p.cout:
            yield "stride", f"a stride-1 shuffle unit needs in == out, got {p.cin} -> {p.cout}"
            return
        branch = p.cout - p.cin if p.stride == 2 else p.cout
        if branch < 1:
            yield "out", f"a stride-2 shuffle unit must widen: {p.cin} -> {p.cout}"
            return
        if p.first:
            in_groups = s.in_groups or s.groups
            yield from div("in_groups", in_groups, p.cin, "input channels")
            yield from div("in_groups", in_groups, mid, "bottleneck channels")
        else:
            yield from div("groups", s.groups, p.cin, "input channels")
        yield from div("groups", s.groups, mid, "bottleneck channels")
        yield from div("groups", s.groups, branch, "branch output channels")
    elif isinstance(s, EffNetStage):
        if s.bottleneck is None and p.cout < 2:
            yield "out", "effnet needs at least 2 output channels (bottleneck = out/2)"
        if p.stride == 2 and p.size_in < 2:
            yield "stride", f"cannot stride a {p.size_in}x{p.size_in} map"


def effnet_bottleneck(spec: EffNetStage, cout: int) -> int:
    return spec.bottleneck or cout // 2


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
