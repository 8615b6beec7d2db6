"""Small helpers for the block types' `random_stage` draws (the tests' random-arch generator,
`tests/objectives/random_archs.py`): seeded, valid by construction."""

from __future__ import annotations

import random


def divisors(n: int, limit: int = 16) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def width(rng: random.Random, top: int, multiple: int = 1, low: int = 4) -> int:
    """A random width <= top that is a multiple of `multiple` (and at least `low`)."""
    start = -(-max(low, multiple) // multiple)
    return multiple * rng.randint(start, top // multiple)


def kernel(rng: random.Random) -> int:
    return rng.choice((3, 3, 5))


def expand(rng: random.Random, cin: int, top: int) -> int:
    return rng.choice([t for t in (1, 2, 3, 6) if cin * t <= 4 * top])
