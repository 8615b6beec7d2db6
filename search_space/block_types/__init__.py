"""Block types: each declared once, in its own module here, as a torch-free `SPEC` (`BlockSpec`:
stage model, searchable dimensions, cost and CDG rules, sampling rules, and the dotted name of its
torch module in `search_space/blocks/`). See docs/development.md "Adding a block type".

The built-in types are registered below, in the order of the arch format's stage union; another
module adds its own with `register(SPEC)` (and `unregister(name)` removes it), and every table
keyed by block type (the formats, the sampler, the module table, the cost and CDG rules) sees it.
This package never imports torch (tests/test_import_graph.py).
"""

from __future__ import annotations

from search_space.block_types import (
    ant,
    clc,
    conv,
    dws,
    dwscw,
    eant,
    effnet,
    gcwm,
    gm,
    hetconv,
    mbconv,
    shuffle,
)
from search_space.block_types.dims import Dim
from search_space.block_types.registry import (
    REGISTRY,
    Names,
    Table,
    on_change,
    register,
    spec_of,
    unregister,
)
from search_space.block_types.spec import BlockSpec

BUILTIN: tuple[BlockSpec, ...] = tuple(
    m.SPEC for m in (conv, hetconv, dws, mbconv, clc, ant, eant, gm, gcwm, dwscw, shuffle, effnet)
)
for _spec in BUILTIN:
    register(_spec)

__all__ = [
    "BUILTIN",
    "REGISTRY",
    "BlockSpec",
    "Dim",
    "Names",
    "Table",
    "on_change",
    "register",
    "spec_of",
    "unregister",
]
