"""The block registry (`search_space/block_types/`) is the one list of block types: every table
keyed by block type is derived from it or checked against it here, one test per table, and the
check fails when a table lacks a registered type (shown on deficient tables built on purpose)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest
import torch

from objectives.cdg import BLOCK_CDGS
from objectives.cost import BLOCK_COSTS
from search_space.arch import BLOCK_TYPES, STAGE_MODELS, Arch
from search_space.block_types import REGISTRY, register, unregister
from search_space.blocks import BLOCKS
from search_space.runtime import fuse
from search_space.sampling import RandomSuggester, sample_arch
from search_space.spaces import format as space_format
from search_space.spaces import load_space
from tests.objectives import block_pwdw
from tests.objectives.random_archs import STAGES, random_plan


def missing_types(tables: Mapping[str, Iterable[str]]) -> list[str]:
    """`"<table> lacks <type>"` for every registered type a table lacks, and `"<table> has
    unregistered <type>"` for every key a table has that the registry does not."""
    registered = set(REGISTRY)
    problems = []
    for name, keys in tables.items():
        have = set(keys)
        problems += [f"{name} lacks {t!r}" for t in sorted(registered - have)]
        problems += [f"{name} has unregistered {t!r}" for t in sorted(have - registered)]
    return problems


def sampled_types(dims: Mapping[str, dict[str, Any]] | None = None) -> set[str]:
    """The types `sample_arch` produces from a one-stage space that allows only that type, with
    the dimensions the `default` space declares for it (or those in `dims`)."""
    default = load_space("default")
    given = {name: d.model_dump(exclude_none=True) for name, d in default.blocks.items()}
    given |= dims or {}
    found = set()
    for block in REGISTRY:
        space = load_space(
            {
                "format": "clnas.space/1",
                "name": f"only-{block}",
                "num_classes": 10,
                "resolution": 16,
                "stem": {"out": [16]},
                "stages": [{"out": [32], "stride": [2], "blocks": [block]}],
                "blocks": {block: given[block]},
            }
        )
        arch = sample_arch(space, RandomSuggester(0))
        found |= {s.block for s in arch.stages}
    return found


def fused_types() -> set[str]:
    """The types whose fused inference form (`search_space/runtime/`) equals the module in eval."""
    found = set()
    for block in REGISTRY:
        plan = random_plan(random.Random(block), block)
        module = BLOCKS[block](
            plan.spec, cin=plan.cin, cout=plan.cout, stride=plan.stride, first=plan.first
        ).eval()
        x = torch.randn(2, plan.cin, plan.size_in, plan.size_in)
        with torch.inference_mode():
            if torch.allclose(fuse(module)(x), module(x), atol=1e-4, rtol=1e-4):
                found.add(block)
    return found


def stage_union_types() -> set[str]:
    """The `block` tags the arch format's `stages` accepts (the pydantic union, as rebuilt)."""
    union = Arch.model_json_schema()["properties"]["stages"]["items"]
    return set(union["discriminator"]["mapping"])


def built_types() -> set[str]:
    """The types whose module class builds from a random plan with the declared keywords."""
    found = set()
    for block in REGISTRY:
        p = random_plan(random.Random(f"build-{block}"), block)
        module = BLOCKS[block](p.spec, cin=p.cin, cout=p.cout, stride=p.stride, first=p.first)
        if module(torch.randn(1, p.cin, p.size_in, p.size_in)).shape[1] == p.cout:
            found.add(block)
    return found


# Every table keyed by block type: the derived ones (read live from the registry) and the
# behaviours checked against it (what the sampler, the runtime and the builder actually do).
TABLES: dict[str, Callable[[], Iterable[str]]] = {
    "search_space.arch.BLOCK_TYPES": lambda: BLOCK_TYPES,
    "search_space.arch.Arch stages union": stage_union_types,
    "search_space.blocks.BLOCKS": lambda: BLOCKS,
    "search_space.blocks (built)": built_types,
    "search_space.spaces.format._REQUIRED": lambda: space_format._REQUIRED,
    "search_space.spaces.format._ALLOWED": lambda: space_format._ALLOWED,
    "search_space.sampling.sample_arch": sampled_types,
    "search_space.runtime.fuse": fused_types,
    "objectives.cost.BLOCK_COSTS": lambda: BLOCK_COSTS,
    "objectives.cdg.BLOCK_CDGS": lambda: BLOCK_CDGS,
    "tests.objectives.random_archs.STAGES": lambda: STAGES,
}


@pytest.mark.parametrize("table", TABLES)
def test_table_covers_every_registered_block_type(table: str) -> None:
    assert missing_types({table: TABLES[table]()}) == []


def test_stage_models_follow_the_registry() -> None:
    assert tuple(t.stage for t in REGISTRY.values()) == STAGE_MODELS  # same types, same order
    assert tuple(REGISTRY) == BLOCK_TYPES


def test_a_table_lacking_a_type_fails_the_check() -> None:
    """A cost table without EffNet, and a CDG table with a type nobody registered."""
    no_effnet = {k: v for k, v in BLOCK_COSTS.items() if k != "effnet"}
    extra = {**BLOCK_CDGS, "octconv": BLOCK_CDGS["conv"]}
    deficient = {"objectives.cost.BLOCK_COSTS": no_effnet, "cdg": extra}
    assert missing_types(deficient) == [
        "objectives.cost.BLOCK_COSTS lacks 'effnet'",
        "cdg has unregistered 'octconv'",
    ]


def test_a_hand_kept_table_misses_a_newly_registered_type() -> None:
    """The failure the registry prevents: a table copied by hand (here a snapshot of the cost
    rules) lacks a type registered afterwards, while the derived tables have it."""
    hand_kept = dict(BLOCK_COSTS)
    register(block_pwdw.SPEC)
    try:
        assert missing_types({"hand-kept costs": hand_kept, "BLOCK_COSTS": BLOCK_COSTS}) == [
            "hand-kept costs lacks 'pwdw'"
        ]
    finally:
        unregister("pwdw")
    assert missing_types({"hand-kept costs": hand_kept}) == []
