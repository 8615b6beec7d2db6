"""Budgets a candidate must meet before it is trained, and the verdict on a cost report.

Constraint values follow Optuna's `constraints_func` convention: one float per constraint,
`<= 0` is feasible. They are relative (`madds / max_madds - 1`), so NSGA-II's constrained
domination compares violations of different units on one scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Budget(BaseModel):
    """`max_madds`, `max_params` (absolute counts), `require_fcrf`, `min_crf_fraction` (0..1]."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_madds: Annotated[int, Field(ge=1)] | None = None
    max_params: Annotated[int, Field(ge=1)] | None = None
    require_fcrf: bool = False
    min_crf_fraction: Annotated[float, Field(gt=0.0, le=1.0)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Budget:
        if self.require_fcrf and self.min_crf_fraction not in (None, 1.0):
            raise ValueError(
                "require_fcrf already demands a CRF fraction of 1.0; "
                f"min_crf_fraction={self.min_crf_fraction} contradicts it"
            )
        return self

    @property
    def constraint_names(self) -> list[str]:
        names = []
        if self.max_madds is not None:
            names.append("madds")
        if self.max_params is not None:
            names.append("params")
        if self.require_fcrf:
            names.append("fcrf")
        if self.min_crf_fraction is not None:
            names.append("crf_fraction")
        return names

    def check(self, report: Any) -> Verdict:
        """Judge a cost report (`objectives.cost_report`): FCRF and CRF limits apply to the
        blocks (rows with a stage), not to the stem or the head (docs/design.md §2)."""
        blocks = [b for b in report.blocks if b.stage is not None]
        needs_crf = self.require_fcrf or self.min_crf_fraction is not None
        if needs_crf and report.fcrf is None:
            raise ValueError(
                "this budget constrains the CRF: cost the arch with cost_report(crf=True)"
            )
        crf_min = min((b.crf_min_fraction for b in blocks if needs_crf), default=1.0)
        values: list[float] = []
        violations: list[Violation] = []

        def add(name: str, value: float, limit: float, slack: float, message: str) -> None:
            values.append(slack)
            if slack > 0:
                violations.append(Violation(name, value, limit, message))

        if self.max_madds is not None:
            m = self.max_madds
            add(
                "madds",
                report.madds,
                m,
                report.madds / m - 1,
                f"{report.madds:,} MAdds exceed max_madds {m:,}",
            )
        if self.max_params is not None:
            p = self.max_params
            add(
                "params",
                report.params,
                p,
                report.params / p - 1,
                f"{report.params:,} params exceed max_params {p:,}",
            )
        if self.require_fcrf:
            worst = [b.name for b in blocks if b.crf_min_fraction < 1.0]
            add(
                "fcrf",
                crf_min,
                1.0,
                1.0 - crf_min,
                f"not FCRF: {len(worst)} block(s) without full channel receptive field "
                f"(first: {worst[0] if worst else '-'}, min CRF fraction {crf_min:.3f})",
            )
        if self.min_crf_fraction is not None:
            f = self.min_crf_fraction
            add(
                "crf_fraction",
                crf_min,
                f,
                f - crf_min,
                f"min CRF fraction {crf_min:.3f} below min_crf_fraction {f}",
            )
        return Verdict(values, violations)


@dataclass(frozen=True)
class Violation:
    constraint: str
    value: float
    limit: float
    message: str


@dataclass(frozen=True)
class Verdict:
    constraints: list[float]  # Optuna `constraints_func` values, <= 0 feasible
    violations: list[Violation] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def reasons(self) -> list[str]:
        return [v.constraint for v in self.violations]

    def __str__(self) -> str:
        if self.feasible:
            return "feasible"
        return "; ".join(v.message for v in self.violations)
