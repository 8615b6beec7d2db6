"""The torch modules of the block types, one module per technique, and the heads.

Each block type is declared once, torch-free, in `search_space/block_types/<name>.py`; its
`SPEC.module` names the class here (`"search_space.blocks.clc:ClcBlock"`), imported the first time
a network needs it. `BLOCKS` is the live table `{block type: module class}` over the registry, so
a type registered later (`search_space.block_types.register`) is built like the built-in ones.
Every block class takes the same constructor keywords: `(spec, *, cin, cout, stride, first)`.
"""

from __future__ import annotations

import importlib
from functools import cache

from torch import nn

from search_space.block_types import REGISTRY, BlockSpec, Table
from search_space.blocks.heads import ConvClassifier, FCClassifier


@cache
def _resolve(dotted: str) -> type[nn.Module]:
    module, _, name = dotted.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"{dotted} is not a torch.nn.Module class")
    return cls


def module_class(spec: BlockSpec) -> type[nn.Module]:
    """The block type's torch module class, imported from its dotted name on first use."""
    return _resolve(spec.module)


BLOCKS: Table[type[nn.Module]] = Table(module_class, "block modules")

HEADS: dict[str, type[nn.Module]] = {"fc": FCClassifier, "conv_classifier": ConvClassifier}

__all__ = ["BLOCKS", "HEADS", "REGISTRY", "module_class"]
