"""Issue 18, acceptance 1: adding a block type is one module plus its tests. A pointwise +
depthwise block declared outside the library (tests/objectives/block_pwdw.py), registered from
this test only, validates, is sampled from a space, costs what fvcore counts, has the CDG the
autograd Jacobian shows, and builds and trains, with no library file naming it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from objectives.cdg import block_cdg
from objectives.cost import cost_report
from objectives.fvcore_count import fvcore_counts
from search_space import Arch, ArchError, build_model, parse_arch
from search_space.arch import BLOCK_TYPES
from search_space.block_types import REGISTRY, register, unregister
from search_space.sampling import RandomSuggester, sample_arch
from search_space.spaces import load_space
from search_space.spaces.format import BlockDims
from tests.objectives import block_pwdw
from tests.objectives.random_archs import random_arch, random_plan
from tests.objectives.test_block_registry import TABLES, missing_types, sampled_types
from tests.objectives.test_cdg import built_block_cdg

ROOT = Path(__file__).resolve().parents[2]
PWDW_DIMS = {"pwdw": {"pw_groups": [1, 2, 4], "kernel": [3, 5]}}


@pytest.fixture(autouse=True, scope="module")
def pwdw() -> Iterator[None]:
    register(block_pwdw.SPEC)
    yield
    unregister("pwdw")


def _arch(stage: dict[str, object]) -> dict[str, object]:
    return {
        "format": "clnas.arch/1",
        "num_classes": 10,
        "resolution": 16,
        "stem": {"out": 16},
        "stages": [{"block": "pwdw", "out": 32, **stage}, {"block": "dws", "out": 48}],
        "head": {"type": "fc"},
    }


def _space(dims: dict[str, object]) -> dict[str, object]:
    return {
        "format": "clnas.space/1",
        "name": "pwdw-space",
        "num_classes": 10,
        "resolution": 16,
        "stem": {"out": [16]},
        "stages": [
            {"out": [24, 32, 48], "stride": [1, 2], "blocks": ["pwdw", "dws"]},
            {"out": [32, 64], "repeat": {"low": 1, "high": 2}, "blocks": ["pwdw"]},
        ],
        "blocks": dims,
    }


def test_no_library_file_names_it() -> None:
    library = [p for pkg in ("search_space", "objectives", "workers", "service")
               for p in (ROOT / pkg).rglob("*.py")]  # fmt: skip
    assert len(library) > 60
    assert [p for p in library if "pwdw" in p.read_text()] == []


@pytest.mark.parametrize("table", sorted(set(TABLES) - {"search_space.sampling.sample_arch"}))
def test_every_table_has_it(table: str) -> None:
    assert "pwdw" in set(TABLES[table]())
    assert missing_types({table: TABLES[table]()}) == []


def test_the_sampler_table_has_it() -> None:
    assert missing_types({"sample_arch": sampled_types(PWDW_DIMS)}) == []


def test_it_validates_with_paths() -> None:
    arch = parse_arch(_arch({"pw_groups": 4, "kernel": 5, "stride": 2}))
    spec = arch.stages[0]
    assert isinstance(spec, block_pwdw.PwDwStage) and (spec.pw_groups, spec.kernel) == (4, 5)
    assert parse_arch(_arch({})).stages[0].pw_groups == 1  # the stage model's default
    assert arch.to_dict()["stages"][0] == {
        "out": 32, "stride": 2, "repeat": 1, "block": "pwdw", "pw_groups": 4, "kernel": 5,
    }  # fmt: skip
    with pytest.raises(ArchError) as bad:
        parse_arch(_arch({"pw_groups": 3, "colour": "red", "kernel": 4}))
    assert "stages[0].colour: unknown key" in str(bad.value)
    with pytest.raises(ArchError) as bad:
        parse_arch(_arch({"pw_groups": 3, "kernel": 4}))
    assert bad.value.problems == [
        ("stages[0].kernel", "kernel must be odd, got 4"),
        ("stages[0].pw_groups", "3 does not divide 16 input channels"),
    ]


def test_a_space_gives_it_dimensions() -> None:
    assert "pw_groups" in BlockDims.model_fields
    space = load_space(_space(PWDW_DIMS))
    given = space.to_dict()["blocks"]["pwdw"]
    assert (given["kernel"], given["pw_groups"]) == ([3, 5], [1, 2, 4])
    with pytest.raises(ArchError) as bad:
        load_space(_space({"pwdw": {"kernel": [3]}}))
    assert bad.value.problems == [("blocks.pwdw.pw_groups", "required for block type 'pwdw'")]
    with pytest.raises(ArchError) as bad:
        load_space(_space({**PWDW_DIMS, "dws": {"pw_groups": [2]}}))
    assert bad.value.problems == [("blocks.dws.pw_groups", "not a dimension of block type 'dws'")]


def test_it_is_sampled_from_a_space() -> None:
    space = load_space(_space(PWDW_DIMS))
    archs = [sample_arch(space, RandomSuggester(seed)) for seed in range(40)]
    pwdw = [s for a in archs for s in a.stages if s.block == "pwdw"]
    assert len(pwdw) > 40
    assert {s.pw_groups for s in pwdw} == {1, 2, 4} and {s.kernel for s in pwdw} == {3, 5}


def _random_pwdw_archs(n: int) -> list[Arch]:
    """Random archs of the tests' one generator that contain a pwdw stage."""
    rng, found = random.Random("pwdw"), []
    while len(found) < n:
        arch = random_arch(rng)
        if any(s.block == "pwdw" for s in arch.stages):
            found.append(arch)
    return found


def test_its_cost_equals_fvcore() -> None:
    assert "pwdw" in BLOCK_TYPES
    for arch in _random_pwdw_archs(12):
        report = cost_report(arch)
        assert (report.madds, report.params) == fvcore_counts(arch), arch.to_json(indent=None)


def test_its_cdg_equals_the_autograd_jacobian() -> None:
    rng = random.Random("pwdw-cdg")
    plans = [random_plan(rng, "pwdw", top=32) for _ in range(40)]
    assert {p.spec.pw_groups for p in plans} == {1, 2, 4} and {p.stride for p in plans} == {1, 2}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed, plan in enumerate(plans):
            got = block_cdg(plan)
            assert np.array_equal(got, built_block_cdg(plan, seed)), plan
    finally:
        torch.set_num_threads(threads)


def test_it_builds_and_trains_a_step() -> None:
    torch.manual_seed(0)
    model = build_model(parse_arch(_arch({"pw_groups": 2, "stride": 2})))
    pw = next(m for m in model.modules() if isinstance(m, block_pwdw.PwDwBlock))
    convs = (pw.pw[0].weight, pw.dw[0].weight)
    before = [w.detach().clone() for w in convs]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())
    assert all(not torch.equal(a, w) for a, w in zip(before, convs, strict=True))
    assert pw.pw[0].groups == 2


def test_unregistering_removes_it_everywhere() -> None:
    unregister("pwdw")
    try:
        assert "pwdw" not in BLOCK_TYPES and "pwdw" not in REGISTRY
        assert "pw_groups" not in BlockDims.model_fields
        with pytest.raises(ArchError) as bad:
            parse_arch(_arch({"pw_groups": 2}))
        assert bad.value.problems[0][0] == "stages[0].block"
        assert "unknown type 'pwdw'" in bad.value.problems[0][1]
    finally:
        register(block_pwdw.SPEC)
    assert parse_arch(_arch({"pw_groups": 2})).stages[0].block == "pwdw"
