"""What a block type's sampling rules see (docs/design.md §5): the stage being sampled, with the
channels and stride already drawn, and `pick`, which suggests one choice among the valid ones.

Choices that would break a divisibility rule for the channels already sampled are filtered out
*before* the suggestion, so every sample validates by construction. Optuna needs one fixed choice
list per parameter name, so when filtering changes the list the name carries the context
(`s2.clc.g1@in=64,out=128`); a dimension with a single valid choice is not suggested at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from search_space.block_types.base import divides

Choice = Any


class Suggester(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[Choice]) -> Choice: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...


class Context:
    """What the choices of one stage depend on."""

    def __init__(
        self, trial: Suggester, stage: int, cin: int, cout: int, stride: int, repeat: int, size: int
    ):
        self.trial, self.stage = trial, stage
        self.cin, self.cout, self.stride, self.repeat, self.size = cin, cout, stride, repeat, size

    def pick(
        self, key: str, declared: Sequence[Choice], valid: Sequence[Choice], extra: str = ""
    ) -> Choice:
        if not valid:
            raise ValueError(f"stages[{self.stage}].{key}: no valid choice")  # filtered upstream
        if len(valid) == 1:
            return valid[0]
        name = f"s{self.stage}.{key}"
        if list(valid) != list(declared) or extra:
            name += f"@in={self.cin},out={self.cout},s={self.stride}{extra}"
        return self.trial.suggest_categorical(name, list(valid))

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """(in, out) of the stage's first block and, when repeated, of the others."""
        return [(self.cin, self.cout)] + ([(self.cout, self.cout)] if self.repeat > 1 else [])


def groups_ok(g: int, ctx: Context, expand: int = 1) -> bool:
    """`g` groups fit every block of the stage: they divide its (expanded) input and output."""
    return all(divides(g, cin * expand) and divides(g, cout) for cin, cout in ctx.pairs)


def pick_kernel(block: str, dims: Any, ctx: Context) -> int:
    """The `kernel` key most block types take, suggested as `s<i>.<block>.kernel`."""
    return int(ctx.pick(f"{block}.kernel", dims.kernel, dims.kernel))
