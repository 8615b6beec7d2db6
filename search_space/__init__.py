"""What is a candidate? The `clnas.arch/1` format, the blocks, the builder and the zoo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from search_space.arch import FORMAT, Arch, BlockPlan, load_document, parse_arch
from search_space.builder import Network, build_model
from search_space.errors import ArchError
from search_space.zoo import zoo_arch, zoo_names


def load_arch(x: Arch | dict[str, Any] | str | Path) -> Arch:
    """An `Arch` from a dict, a path to a .json/.yaml/.yml file, or a zoo name."""
    if isinstance(x, Arch):
        return x
    if isinstance(x, dict):
        return parse_arch(x)
    if isinstance(x, str | Path):
        p = Path(x)
        if p.suffix.lower() in (".json", ".yaml", ".yml"):
            return parse_arch(load_document(p))
        return zoo_arch(str(x))
    raise ArchError.at((), f"cannot load an arch from {type(x).__name__}")


__all__ = [
    "FORMAT",
    "Arch",
    "ArchError",
    "BlockPlan",
    "Network",
    "build_model",
    "load_arch",
    "parse_arch",
    "zoo_names",
]
