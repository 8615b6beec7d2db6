"""How well does the proxy rank designs? Kendall's tau-b between proxy (CIFAR-100) and full
(ImageNet) accuracies of the same designs."""

from __future__ import annotations

import math
from collections.abc import Sequence

MIN_PAIRS = 3


def kendall_tau(proxy: Sequence[float], full: Sequence[float]) -> float | None:
    """Kendall's tau-b (Kendall 1945; ties in either ranking are corrected for):

        tau_b = (C - D) / sqrt((n0 - n1) * (n0 - n2))

    over the n0 = n(n-1)/2 pairs of designs, C concordant and D discordant, n1 and n2 the pairs
    tied in `proxy` and in `full`. None with fewer than 3 designs, or when either ranking is
    all ties (tau is undefined). O(n^2): promoted designs are few."""
    if len(proxy) != len(full):
        raise ValueError(f"{len(proxy)} proxy accuracies but {len(full)} full accuracies")
    if any(not math.isfinite(v) for v in (*proxy, *full)):
        raise ValueError("accuracies must be finite numbers")
    n = len(proxy)
    if n < MIN_PAIRS:
        return None
    concordant = discordant = tied_proxy = tied_full = 0
    for i in range(n):
        for j in range(i + 1, n):
            dp = proxy[i] - proxy[j]
            df = full[i] - full[j]
            tied_proxy += dp == 0
            tied_full += df == 0
            if dp * df > 0:
                concordant += 1
            elif dp * df < 0:
                discordant += 1
    pairs = n * (n - 1) // 2
    denominator = math.sqrt((pairs - tied_proxy) * (pairs - tied_full))
    if denominator == 0:
        return None
    return (concordant - discordant) / denominator
