from __future__ import annotations

import pytest

from objectives import min_cost_groups
from objectives.groups import clc_cost, feasible_groups


@pytest.mark.parametrize(
    ("M", "L", "N", "expected"),
    [
        # clcNet Table 1 (A = 9), as listed in docs/design.md §1.2
        (32, 32, 64, (16, 2)),
        (64, 64, 128, (16, 4)),
        (128, 128, 256, (32, 4)),
        (64, 64, 64, (32, 2)),
        (128, 128, 128, (32, 4)),
    ],
)
def test_clcnet_table1(M: int, L: int, N: int, expected: tuple[int, int]) -> None:
    assert min_cost_groups(M, L, N, area=9) == expected


def test_minimiser_is_the_brute_force_minimum_under_fcrf() -> None:
    for M, L, N in [(24, 48, 96), (96, 96, 160), (60, 60, 120), (7, 7, 7)]:
        g1, g2 = min_cost_groups(M, L, N)
        assert g1 * g2 <= L and M % g1 == 0 and L % g1 == 0 and L % g2 == 0 and N % g2 == 0
        best = min(
            clc_cost(a, b, M=M, L=L, N=N)
            for a in range(1, M + 1)
            for b in range(1, N + 1)
            if M % a == 0 and L % a == 0 and L % b == 0 and N % b == 0 and a * b <= L
        )
        assert clc_cost(g1, g2, M=M, L=L, N=N) == best


def test_feasible_groups_respect_the_fcrf_rule() -> None:
    pairs = feasible_groups(64, 64, 128)
    assert (16, 4) in pairs and (64, 2) not in pairs and all(a * b <= 64 for a, b in pairs)


@pytest.mark.parametrize("bad", [0, -4])
def test_bad_channels_name_the_argument(bad: int) -> None:
    with pytest.raises(ValueError, match="L must be a positive integer"):
        min_cost_groups(32, bad, 64)
