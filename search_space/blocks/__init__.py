"""One module per technique; blocks are chosen by name from `BLOCKS` (the arch's `block` key).

Every block class takes the same constructor keywords: `(spec, *, cin, cout, stride, first)`.
"""

from __future__ import annotations

from torch import nn

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

BLOCKS: dict[str, type[nn.Module]] = {
    "conv": ConvBlock,
    "hetconv": HetConvBlock,
    "dws": DwsBlock,
    "mbconv": MBConvBlock,
    "clc": ClcBlock,
    "ant": AntBlock,
    "eant": EAntBlock,
    "gm": GMBlock,
    "gcwm": GCWMBlock,
    "dwscw": DwsCWBlock,
    "shuffle": ShuffleBlock,
    "effnet": EffNetBlock,
}

HEADS: dict[str, type[nn.Module]] = {"fc": FCClassifier, "conv_classifier": ConvClassifier}

__all__ = ["BLOCKS", "HEADS"]
