from __future__ import annotations

import json
import random
from collections import Counter

import optuna
import pytest

from search_space import ArchError, parse_arch
from search_space.arch import BLOCK_TYPES
from search_space.sampling import RandomSuggester, sample_arch
from search_space.spaces import load_space, parse_space, space_names


def test_builtin_spaces_exist() -> None:
    assert {"default", "clcnet", "hetconv", "channelnet", "antnet"} <= set(space_names())


@pytest.mark.slow  # 10,000 samples per space (~1 min in all on 2 cores)
@pytest.mark.parametrize("name", space_names())
def test_10000_samples_all_validate(name: str) -> None:
    space = load_space(name)
    rng = random.Random(0)
    blocks: Counter[str] = Counter()
    for _ in range(10_000):
        arch = sample_arch(space, RandomSuggester(rng))
        assert parse_arch(arch.to_dict()) == arch
        blocks.update(s.block for s in arch.stages)
    declared = {b for stage in space.stages for b in stage.blocks}
    assert set(blocks) == declared  # every declared block type is reachable


def test_default_space_covers_every_technique() -> None:
    space = load_space("default")
    declared = {b for stage in space.stages for b in stage.blocks}
    assert declared == set(BLOCK_TYPES)
    assert set(space.head.type) == {"fc", "conv_classifier"}


def test_space_round_trips() -> None:
    for name in space_names():
        space = load_space(name)
        assert parse_space(json.loads(json.dumps(space.to_dict()))) == space


def test_sampling_over_an_optuna_trial_is_reproducible() -> None:
    space = load_space("default")

    def archs(seed: int) -> list[str]:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        out = []
        for _ in range(20):
            trial = study.ask()
            out.append(sample_arch(space, trial).to_json())
            study.tell(trial, 0.0)
        return out

    assert archs(3) == archs(3)
    assert archs(3) != archs(4)


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"format": "clnas.space/2"}, "format"),
        ({"stages": []}, "stages"),
        ({"stages": [{"out": [32], "blocks": ["nope"]}]}, "stages[0].blocks[0]"),
        ({"stages": [{"out": [], "blocks": ["dws"]}]}, "stages[0].out"),
        ({"stages": [{"out": [32, 32], "blocks": ["dws"]}]}, "stages[0]"),
        (
            {"stages": [{"out": [32], "blocks": ["clc"]}], "blocks": {"clc": {"g2": [2]}}},
            "blocks.clc",
        ),
        ({"stages": [{"out": [32], "blocks": ["ant"]}], "blocks": {}}, "blocks.ant.expand"),
        (
            {"stages": [{"out": [32], "blocks": ["dws"]}], "blocks": {"dws": {"part": [2]}}},
            "blocks.dws.part",
        ),
        (
            {"stages": [{"out": [32], "blocks": ["dws"]}], "blocks": {"dws": {"kernel": [4]}}},
            "blocks.dws.kernel[0]",
        ),
        (
            {"stages": [{"out": [32], "blocks": ["dws"], "repeat": {"low": 3, "high": 1}}]},
            "stages[0].repeat",
        ),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_bad_spaces_name_the_path(patch: dict, path: str) -> None:
    doc = load_space("default").to_dict() | patch
    with pytest.raises(ArchError) as info:
        parse_space(doc)
    assert path in info.value.paths, info.value.problems
