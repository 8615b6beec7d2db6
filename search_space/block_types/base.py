"""What every block type builds on, torch-free: the stage model's base and field types, the
document bounds (docs/limits.md#architecture-documents) and `BlockPlan`, one block with its
resolved shapes (what the builder, the cost model and the CDG rules consume).

It lives here rather than in `search_space/arch.py` so that a block type's module
(`search_space/block_types/<name>.py`) can declare its stage model without importing the arch
format, which is itself derived from the registered block types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StageBase(Strict):
    """The keys every stage has (docs/design.md §4); a block type's stage model adds its own
    keys and a `block: Literal["<name>"]` tag."""

    if TYPE_CHECKING:  # the tag is each subclass' own field; declared here for the type checker
        block: str

    out: Width
    stride: Stride = 1
    repeat: Annotated[int, Field(ge=1, le=MAX_REPEAT)] = 1
    pool: Literal["max"] | None = None


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


def divides(g: int, n: int) -> bool:
    return n % g == 0


# -- shape rules shared by the modules (search_space/blocks) and the analyses (objectives) ----


def cw_padding(cw_kernel: int, cw_stride: int) -> tuple[int, int]:
    """(front, back) channel padding so each channel-wise kernel yields `C / cw_stride` outputs.

    Total padding `dc - s` (negative crops). Output channel `o` of every kernel reads the window
    of input channels `[o*s - front, o*s - front + dc)`.
    """
    total = cw_kernel - cw_stride
    front = total // 2
    return front, total - front


def se_hidden(channels: int, se_ratio: int) -> int:
    """Hidden width of the squeeze-and-excitation FCs (ANTNets): `max(1, C // r)`."""
    return max(1, channels // se_ratio)
