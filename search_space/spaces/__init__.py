"""Search spaces: the `clnas.space/1` format and the built-in spaces shipped as package data."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from search_space.arch import load_document
from search_space.errors import ArchError
from search_space.spaces.format import SPACE_FORMAT, BlockDims, Space, parse_space

_BUILTIN = resources.files(__package__) / "builtin"


def space_names() -> list[str]:
    return sorted(
        f.name.removesuffix(".json") for f in _BUILTIN.iterdir() if f.name.endswith(".json")
    )


@cache
def _builtin(name: str) -> Space:
    path = _BUILTIN / f"{name}.json"
    if not path.is_file():
        raise ArchError.at(
            ("space",), f"unknown built-in space {name!r}; built-in: {space_names()}"
        )
    return parse_space(json.loads(path.read_text()))


def load_space(x: Space | dict[str, Any] | str | Path) -> Space:
    """A `Space` from a dict, a .json/.yaml path, or a built-in name."""
    if isinstance(x, Space):
        return x
    if isinstance(x, dict):
        return parse_space(x)
    p = Path(x)
    if p.suffix.lower() in (".json", ".yaml", ".yml"):
        return parse_space(load_document(p))
    return _builtin(str(x))


__all__ = ["SPACE_FORMAT", "BlockDims", "Space", "load_space", "parse_space", "space_names"]
