from __future__ import annotations

import pydantic
import pytest

from objectives import Budget, cost_report

ARCH = "clcnet_a_cifar100"


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    return cost_report(ARCH)


def test_no_limits_is_feasible(report) -> None:  # type: ignore[no-untyped-def]
    verdict = Budget().check(report)
    assert verdict.feasible and verdict.constraints == [] and str(verdict) == "feasible"


@pytest.mark.parametrize(("field", "attr"), [("max_madds", "madds"), ("max_params", "params")])
def test_count_limits_alone_and_at_the_boundary(report, field: str, attr: str) -> None:  # type: ignore[no-untyped-def]
    value = getattr(report, attr)
    at_limit = Budget(**{field: value}).check(report)
    assert at_limit.feasible and at_limit.constraints == [0.0]  # == limit is feasible
    over = Budget(**{field: value - 1}).check(report)
    assert not over.feasible and over.reasons == [attr]
    assert over.constraints[0] > 0
    v = over.violations[0]
    assert (v.value, v.limit) == (value, value - 1)
    assert f"{value:,}" in v.message and f"{value - 1:,}" in v.message
    loose = Budget(**{field: 2 * value}).check(report)
    assert loose.feasible and loose.constraints[0] == pytest.approx(-0.5)


def test_fcrf_alone() -> None:
    assert Budget(require_fcrf=True).check(cost_report("clcnet_a_cifar100")).feasible
    verdict = Budget(require_fcrf=True).check(cost_report("clcnet_ap_cifar100"))
    assert verdict.reasons == ["fcrf"] and verdict.constraints[0] > 0
    assert "not FCRF" in str(verdict) and "stages[" in str(verdict)


def test_min_crf_fraction_boundary() -> None:
    report = cost_report("clcnet_ap_cifar100")
    worst = min(b.crf_min_fraction for b in report.blocks if b.stage is not None)
    assert Budget(min_crf_fraction=worst).check(report).feasible
    assert Budget(min_crf_fraction=min(1.0, worst * 2)).check(report).reasons == ["crf_fraction"]


def test_head_crf_does_not_count_as_a_block() -> None:
    # ChannelNets' conv classifier reads M - n + 1 channels per logit; FCRF is about blocks.
    report = cost_report("channelnet_v3")
    head = report.blocks[-1]
    assert head.type == "conv_classifier" and head.crf_min_fraction < 1
    blocks_ok = all(b.crf_min_fraction == 1.0 for b in report.blocks if b.stage is not None)
    assert report.fcrf == blocks_ok


def test_all_constraints_combined_report_every_violation(report) -> None:  # type: ignore[no-untyped-def]
    ap = cost_report("clcnet_ap_cifar100")
    budget = Budget(max_madds=ap.madds - 1, max_params=ap.params - 1, require_fcrf=True)
    verdict = budget.check(ap)
    assert verdict.reasons == ["madds", "params", "fcrf"] == budget.constraint_names
    assert len(verdict.constraints) == 3 and all(c > 0 for c in verdict.constraints)
    assert str(verdict).count(";") == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_madds": 0}, "max_madds"),
        ({"max_params": -5}, "max_params"),
        ({"min_crf_fraction": 1.5}, "min_crf_fraction"),
        ({"min_crf_fraction": 0.0}, "min_crf_fraction"),
        ({"max_madds": "1e6"}, "max_madds"),
        ({"max_flops": 10}, "max_flops"),
    ],
)
def test_impossible_budgets_are_rejected_with_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        Budget(**kwargs)
    assert field in str(info.value)


def test_contradictory_budget_has_a_clear_message() -> None:
    with pytest.raises(pydantic.ValidationError, match="require_fcrf already demands"):
        Budget(require_fcrf=True, min_crf_fraction=0.5)


def test_counts_only_report_and_crf_budgets() -> None:
    full, counts = cost_report(ARCH), cost_report(ARCH, crf=False)
    assert (counts.madds, counts.params) == (full.madds, full.params)
    blocks = [b for b in counts.blocks if b.stage is not None]
    assert counts.fcrf is None and all(b.crf_min_fraction is None for b in blocks)
    assert Budget(max_madds=full.madds).check(counts).feasible
    with pytest.raises(ValueError, match="crf=True"):
        Budget(require_fcrf=True).check(counts)
