"""`BlockSpec`: everything clnas knows about one block type, declared once in the type's module
(`search_space/block_types/<name>.py`, docs/development.md "Adding a block type").

Every table keyed by block type is derived from the registered specs: the arch format's stage
union (`search_space/arch.py`), the space format's dimensions (`search_space/spaces/format.py`),
the sampler (`search_space/sampling.py`), the module table (`search_space/blocks`), the cost
model (`objectives/cost.py`) and the CDG analysis (`objectives/cdg.py`). A spec holds no torch:
the module class is named by its dotted path and imported only when a network is built, so the
analytic cost and CDG rules stay independent of the modules they are checked against.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, get_args

import numpy as np

from search_space.block_types.base import BlockPlan, StageBase
from search_space.block_types.context import Context
from search_space.block_types.costing import Cost
from search_space.block_types.dims import Dim

Problems = Iterator[tuple[str, str]]  # (key relative to the stage or space entry, message)


def _no_problems(_: Any) -> Problems:
    return iter(())


def _one_matrix(stage: Any, widest: int) -> int:
    return 1


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """One block type.

    - `stage`: its stage model (keys, defaults, per-key validation) with a
      `block: Literal["<name>"]` tag, a subclass of `StageBase`.
    - `module`: the dotted path `"package.module:Class"` of its torch module, built as
      `Class(stage, *, cin, cout, stride, first)`.
    - `dims`, `required`: the space keys it may take, and those a space must give.
    - `cost`: its MAdds and parameters as built, from the plan alone (docs/design.md §3).
    - `cdg`: its channel dependency graph `(cout, cin)`, bool (docs/design.md §2).
    - `fits(dims, ctx, first_stage)`: whether the sampler can place it with those channels;
      `sample(dims, ctx, first_stage)`: its keys, drawn with `ctx.pick` (docs/design.md §5).
    - `problems(plan)`: divisibility and shape rules that depend on the channel flow, as
      `(key, message)`; `space_problems(dims)`: rules on its dimensions in a space.
    - `matrices(stage, widest)`: boolean matrices its CRF analysis holds at the widest layer
      (`search_space.arch.analysis_cells`, docs/limits.md#architecture-documents).
    - `random_stage(rng, cin, top)`: a random valid stage (keys without `block`) after `cin`
      channels with widths <= `top`, covering the options that change its cost or CDG: the
      tests' random-arch generator draws from it.
    """

    stage: type[StageBase]
    module: str
    dims: tuple[Dim, ...]
    cost: Callable[[BlockPlan], Cost]
    cdg: Callable[[BlockPlan], np.ndarray]
    sample: Callable[[Any, Context, bool], dict[str, Any]]
    random_stage: Callable[[random.Random, int, int], dict[str, Any]]
    required: frozenset[str] = frozenset()
    fits: Callable[[Any, Context, bool], bool] = lambda dims, ctx, first_stage: True
    problems: Callable[[BlockPlan], Problems] = _no_problems
    space_problems: Callable[[Any], Problems] = _no_problems
    matrices: Callable[[Any, int], int] = _one_matrix
    name: str = field(init=False)

    def __post_init__(self) -> None:
        tag = get_args(self.stage.model_fields["block"].annotation)
        if len(tag) != 1 or not isinstance(tag[0], str):
            raise TypeError(f"{self.stage.__name__}.block must be Literal['<name>'], got {tag}")
        object.__setattr__(self, "name", tag[0])
        unknown = self.required - {d.name for d in self.dims}
        if unknown:
            raise ValueError(f"{self.name}: required dimensions {sorted(unknown)} not in dims")
        if ":" not in self.module:
            raise ValueError(f"{self.name}: module must read 'package.module:Class'")

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(d.name for d in self.dims)
