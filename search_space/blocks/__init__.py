"""The block registry: every block type declared once, with its stage model (the arch format's
keys and defaults, `search_space/arch.py`), its module class (one module per technique) and its
searchable dimensions (the keys a space may give, `search_space/spaces/format.py`).

Blocks are chosen by name from `BLOCKS` (the arch's `block` key). Every block class takes the
same constructor keywords: `(spec, *, cin, cout, stride, first)`. The analytic cost and CDG rules
(`objectives/cost.py`, `objectives/cdg.py`) stay independent of the modules, since they are the
check on them; a coverage test (`tests/objectives/test_block_registry.py`) fails when any table
keyed by block type lacks a type declared here. Adding a block type: its stage model in
`arch.py` (and the `Stage` union), its module, one `BlockType` below, its cost and CDG rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from pydantic import BaseModel
from torch import nn

from search_space.arch import (
    AntStage,
    ClcStage,
    ConvStage,
    DwsCWStage,
    DwsStage,
    EAntStage,
    EffNetStage,
    GCWMStage,
    GMStage,
    HetConvStage,
    MBConvStage,
    ShuffleStage,
)
from search_space.blocks.ant import AntBlock
from search_space.blocks.clc import ClcBlock
from search_space.blocks.conv import ConvBlock
from search_space.blocks.dws import DwsBlock
from search_space.blocks.dwscw import DwsCWBlock
from search_space.blocks.eant import EAntBlock
from search_space.blocks.effnet import EffNetBlock
from search_space.blocks.gcwm import GCWMBlock
from search_space.blocks.gm import GMBlock
from search_space.blocks.heads import ConvClassifier, FCClassifier
from search_space.blocks.hetconv import HetConvBlock
from search_space.blocks.mbconv import MBConvBlock
from search_space.blocks.shuffle import ShuffleBlock


@dataclass(frozen=True, slots=True)
class BlockType:
    """One block type. `dims`: the space keys (`BlockDims` fields) it may be given; `required`:
    those a space must give (docs/design.md §5)."""

    stage: type[BaseModel]  # the arch format's stage model, e.g. `ClcStage`
    module: type[nn.Module]
    dims: frozenset[str]
    required: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        """The `block` tag of the stage model (`Literal["clc"]` -> "clc")."""
        return str(get_args(self.stage.model_fields["block"].annotation)[0])


def _declare(
    stage: type[BaseModel],
    module: type[nn.Module],
    dims: tuple[str, ...],
    required: tuple[str, ...] = (),
) -> BlockType:
    return BlockType(stage, module, frozenset(dims), frozenset(required))


REGISTRY: dict[str, BlockType] = {
    t.name: t
    for t in (
        _declare(ConvStage, ConvBlock, ("kernel", "bias")),
        _declare(HetConvStage, HetConvBlock, ("kernel", "bias", "part"), ("part",)),
        _declare(DwsStage, DwsBlock, ("kernel", "dw_bn_act")),
        _declare(MBConvStage, MBConvBlock, ("kernel", "expand"), ("expand",)),
        # clc takes g1 as group counts or as CRF sizes `crf = M/g1` (exactly one of them)
        _declare(ClcStage, ClcBlock, ("kernel", "g1", "crf", "g2", "interlace"), ("g2",)),
        _declare(
            AntStage,
            AntBlock,
            ("kernel", "expand", "se_ratio", "groups"),
            ("expand", "se_ratio", "groups"),
        ),
        _declare(
            EAntStage,
            EAntBlock,
            ("kernel", "expand", "se_ratio", "groups", "width"),
            ("expand", "se_ratio", "groups", "width"),
        ),
        _declare(GMStage, GMBlock, ("kernel", "groups"), ("groups",)),
        _declare(GCWMStage, GCWMBlock, ("kernel", "groups", "cw_kernel"), ("groups", "cw_kernel")),
        _declare(DwsCWStage, DwsCWBlock, ("kernel", "cw_kernel"), ("cw_kernel",)),
        _declare(ShuffleStage, ShuffleBlock, ("groups",), ("groups",)),
        _declare(EffNetStage, EffNetBlock, ("kernel",)),
    )
}

BLOCKS: dict[str, type[nn.Module]] = {name: t.module for name, t in REGISTRY.items()}

HEADS: dict[str, type[nn.Module]] = {"fc": FCClassifier, "conv_classifier": ConvClassifier}

__all__ = ["BLOCKS", "HEADS", "REGISTRY", "BlockType"]
