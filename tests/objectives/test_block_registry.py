"""The block registry (`search_space/blocks/__init__.py`) is the one list of block types: every
table keyed by block type is derived from it or checked here, and the check fails when a table
lacks a registered type (shown on a deficient table built on purpose)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

import torch

from objectives.cdg import BLOCK_CDGS
from objectives.cost import BLOCK_COSTS
from search_space.arch import BLOCK_TYPES, STAGE_MODELS
from search_space.blocks import BLOCKS, REGISTRY
from search_space.runtime import fuse
from search_space.sampling import RandomSuggester, sample_arch
from search_space.spaces import format as space_format
from search_space.spaces import load_space
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


def sampled_types() -> set[str]:
    """The types `sample_arch` produces from a one-stage space that allows only that type, with
    the dimensions the `default` space declares for it."""
    default = load_space("default")
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
                "blocks": {block: default.blocks[block].model_dump(exclude_none=True)},
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


def tables() -> dict[str, Iterable[str]]:
    return {
        "search_space.arch.BLOCK_TYPES (the Stage union)": BLOCK_TYPES,
        "search_space.blocks.BLOCKS": BLOCKS,
        "search_space.spaces.format._REQUIRED": space_format._REQUIRED,
        "search_space.spaces.format._ALLOWED": space_format._ALLOWED,
        "search_space.sampling.sample_arch": sampled_types(),
        "search_space.runtime.fuse": fused_types(),
        "objectives.cost.BLOCK_COSTS": BLOCK_COSTS,
        "objectives.cdg.BLOCK_CDGS": BLOCK_CDGS,
        "tests.objectives.random_archs.STAGES": STAGES,
    }


def test_every_table_covers_every_registered_block_type() -> None:
    assert missing_types(tables()) == []
    assert tuple(t.stage for t in REGISTRY.values()) == STAGE_MODELS  # same types, same order


def test_a_table_lacking_a_type_fails_the_check() -> None:
    """A cost table without EffNet, and a CDG table with a type nobody registered."""
    no_effnet = {k: v for k, v in BLOCK_COSTS.items() if k != "effnet"}
    extra = {**BLOCK_CDGS, "octconv": BLOCK_CDGS["conv"]}
    deficient = {**tables(), "objectives.cost.BLOCK_COSTS": no_effnet, "cdg": extra}
    assert missing_types(deficient) == [
        "objectives.cost.BLOCK_COSTS lacks 'effnet'",
        "cdg has unregistered 'octconv'",
    ]
