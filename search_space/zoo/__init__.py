"""The zoo: published models as `clnas.arch/1` documents shipped as package data."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from search_space.arch import Arch, parse_arch
from search_space.errors import ArchError


def zoo_names() -> list[str]:
    files = resources.files(__package__).iterdir()
    return sorted(f.name.removesuffix(".json") for f in files if f.name.endswith(".json"))


def zoo_arch(name: str) -> Arch:
    """A private copy of a zoo model (the parsed documents are cached)."""
    return _zoo_arch(name).model_copy(deep=True)


@cache
def _zoo_arch(name: str) -> Arch:
    path = resources.files(__package__) / f"{name}.json"
    if not path.is_file():
        raise ArchError.at((), f"unknown zoo model {name!r}; `clnas zoo` lists {len(zoo_names())}")
    try:
        return parse_arch(json.loads(path.read_text()))
    except ArchError as exc:
        raise ArchError((f"zoo:{name}:{p}", m) for p, m in exc.problems) from None
