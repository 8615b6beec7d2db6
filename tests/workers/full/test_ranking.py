from __future__ import annotations

import math

import pytest

from workers.full.ranking import kendall_tau


def test_perfect_and_reversed_rankings() -> None:
    assert kendall_tau([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]) == 1.0
    assert kendall_tau([0.1, 0.2, 0.3, 0.4], [0.8, 0.7, 0.6, 0.5]) == -1.0


def test_tie_in_one_ranking() -> None:
    # pairs: 5 concordant, 0 discordant, one tied in proxy: 5 / sqrt((6 - 1) * (6 - 0))
    tau = kendall_tau([1, 2, 2, 3], [1, 3, 2, 4])
    assert tau == pytest.approx(5 / math.sqrt(30))  # 0.912870929 (scipy.stats.kendalltau agrees)


def test_ties_in_both_rankings_and_discordance() -> None:
    # 10 pairs: 6 concordant, 3 discordant, the pair (0, 1) tied in both: 3 / sqrt(9 * 9)
    assert kendall_tau([1, 1, 2, 3, 4], [2, 2, 1, 4, 3]) == pytest.approx(1 / 3)


def test_undefined_cases() -> None:
    assert kendall_tau([], []) is None
    assert kendall_tau([0.1, 0.2], [0.3, 0.4]) is None  # fewer than 3 designs
    assert kendall_tau([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]) is None  # one ranking all ties
    with pytest.raises(ValueError, match="3 proxy accuracies but 2"):
        kendall_tau([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        kendall_tau([0.1, math.nan, 0.3], [0.1, 0.2, 0.3])
