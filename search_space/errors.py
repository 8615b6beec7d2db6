"""The one exception every malformed candidate raises: it names the path of each offending value."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Loc = Sequence[str | int]


def format_path(loc: Loc) -> str:
    """`("stages", 3, "g1")` -> `stages[3].g1`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


class ArchError(ValueError):
    """A `clnas.arch/1` document (or a search-space document) is malformed.

    `problems` holds `(path, message)` pairs; `str()` gives one `path: message` line each.
    """

    def __init__(self, problems: Iterable[tuple[str, str]]):
        self.problems: list[tuple[str, str]] = list(problems)
        super().__init__("\n".join(f"{path}: {msg}" for path, msg in self.problems))

    @classmethod
    def at(cls, loc: Loc, message: str) -> ArchError:
        return cls([(format_path(loc), message)])

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.problems]
