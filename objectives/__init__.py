"""What does a candidate cost, is it well formed, how good is it?"""

from __future__ import annotations

from objectives.budget import Budget, Verdict, Violation
from objectives.cost import BlockCost, CostReport, StageCost, cost_report
from objectives.groups import min_cost_groups
from objectives.latency import LatencyReport, measure_latency

__all__ = [
    "BlockCost",
    "Budget",
    "CostReport",
    "LatencyReport",
    "StageCost",
    "Verdict",
    "Violation",
    "cost_report",
    "measure_latency",
    "min_cost_groups",
]
