"""The block registry: the registered `BlockSpec`s by name, in registration order, and the live
views every table keyed by block type is made of.

The views read the registry when used, so a type registered later (`register`) is in every
table at once; the pydantic models that embed the stage union or the space dimensions (the arch
and space formats) rebuild themselves from the listeners they add (`on_change`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload

from search_space.block_types.spec import BlockSpec

T = TypeVar("T")

REGISTRY: dict[str, BlockSpec] = {}
_LISTENERS: list[Callable[[], None]] = []


def on_change(listener: Callable[[], None]) -> None:
    """Call `listener` now and after every `register` / `unregister`."""
    _LISTENERS.append(listener)
    listener()


def _changed() -> None:
    for listener in _LISTENERS:
        listener()


def register(spec: BlockSpec) -> BlockSpec:
    """Add a block type; every derived table and format sees it at once. Re-registering the same
    spec is a no-op; another spec under a taken name is an error (unregister it first)."""
    known = REGISTRY.get(spec.name)
    if known is spec:
        return spec
    if known is not None:
        raise ValueError(f"block type {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    try:
        _changed()
    except Exception:
        del REGISTRY[spec.name]
        _changed()
        raise
    return spec


def unregister(name: str) -> BlockSpec:
    """Remove a block type (the tests' external types); returns its spec."""
    spec = REGISTRY.pop(name)
    _changed()
    return spec


class Names(Sequence[str]):
    """The registered type names in order; reads and prints like the tuple it stands for."""

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[str, ...]: ...
    def __getitem__(self, i: int | slice) -> str | tuple[str, ...]:
        return tuple(REGISTRY)[i]

    def __len__(self) -> int:
        return len(REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(REGISTRY))

    def __contains__(self, name: object) -> bool:
        return name in REGISTRY

    def __eq__(self, other: object) -> bool:
        return tuple(self) == other if isinstance(other, tuple) else NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(REGISTRY))


class Table(Mapping[str, T]):
    """`{name: what(spec)}` over the registered types, read live."""

    def __init__(self, what: Callable[[BlockSpec], T], description: str):
        self._what, self._description = what, description

    def __getitem__(self, name: str) -> T:
        return self._what(REGISTRY[name])

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(REGISTRY))

    def __len__(self) -> int:
        return len(REGISTRY)

    def __repr__(self) -> str:
        return f"<{self._description}: {list(REGISTRY)}>"


def spec_of(stage: Any) -> BlockSpec:
    """The spec of a stage model instance (`stage.block` is its tag)."""
    return REGISTRY[stage.block]
