"""clcNet's cost-minimising group setting (clcNet Eq. 2, Table 1; docs/design.md §1.2)."""

from __future__ import annotations


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def clc_cost(g1: int, g2: int, *, M: int, L: int, N: int, area: int = 9) -> float:
    """clcNet Eq. 2: `C(g1, g2) = A*L*M/g1 + N*L/g2` multiply-adds per output pixel."""
    return area * L * M / g1 + N * L / g2


def feasible_groups(M: int, L: int, N: int) -> list[tuple[int, int]]:
    """Every `(g1, g2)` with `g1 | M, g1 | L, g2 | L, g2 | N` and the FCRF rule `g1*g2 <= L`."""
    for name, value in (("M", M), ("L", L), ("N", N)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    g1s = [g for g in _divisors(M) if L % g == 0]
    g2s = [g for g in _divisors(L) if N % g == 0]
    return [(g1, g2) for g1 in g1s for g2 in g2s if g1 * g2 <= L]


def min_cost_groups(M: int, L: int, N: int, area: int = 9) -> tuple[int, int]:
    """`(g1, g2)` minimising clcNet Eq. 2 under the FCRF rule, by enumeration.

    Ties go to the larger `g1` (the cheaper kxk part). Reference (clcNet Table 1, A = 9):
    (32, 32, 64) -> (16, 2); (64, 64, 128) -> (16, 4); (128, 128, 256) -> (32, 4).
    """
    if area < 1:
        raise ValueError(f"area must be a positive integer, got {area!r}")
    candidates = feasible_groups(M, L, N)
    return min(candidates, key=lambda g: (clc_cost(*g, M=M, L=L, N=N, area=area), -g[0]))
