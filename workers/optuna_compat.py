"""The one place clnas touches Optuna internals (everything else uses Optuna's public API).

Checked against optuna 5.0.0 and 5.1.0 (`CHECKED_VERSIONS`). Nothing public exists for:

- **Hypervolume** of a point set (`optuna._hypervolume.compute_hypervolume`, the WFG algorithm).
- **Pareto front and non-domination ranks of a list of trials** that is not a `Study`
  (`optuna.study._multi_objective`): the service computes fronts on trials it read itself, and
  MO-ASHA ranks rung results. Using Optuna's own code keeps "on the front" meaning exactly what
  `Study.best_trials` means (infeasible trials excluded).
- **Optuna's RDB tables** (`optuna.storages._rdb.models`): the service reads a study's trials
  with one Core query per table, because the storage API builds every trial through the ORM
  (seconds per call at a few thousand trials). The column meaning of those tables (how a
  trial's constraint values are stored as system attributes) is Optuna's, described here too.

`contract_problems()` exercises every one of these on a small known case and says what broke,
naming the installed optuna version; `tests/test_compat_contracts.py` fails on any problem, so
an Optuna release that moves them is caught by `scripts/test-latest.sh` before users see it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

CHECKED_VERSIONS = ("5.0.0", "5.1.0")
LIBRARY = f"optuna {optuna.__version__}"


class OptunaInternalsChanged(RuntimeError):
    """An Optuna internal this module relies on is missing or behaves differently."""


def _import_internals() -> tuple[Any, Any, Any, Any]:
    try:
        from optuna._hypervolume import compute_hypervolume
        from optuna.storages._rdb import models
        from optuna.study._multi_objective import (
            _fast_non_domination_rank,
            _get_pareto_front_trials_by_trials,
        )
    except ImportError as e:  # pragma: no cover - only with an Optuna that moved them
        raise OptunaInternalsChanged(
            f"{LIBRARY}: {e}; clnas's Optuna adapter (workers/optuna_compat.py) was checked "
            f"against optuna {', '.join(CHECKED_VERSIONS)}"
        ) from e
    return compute_hypervolume, models, _fast_non_domination_rank, \
        _get_pareto_front_trials_by_trials


(_compute_hypervolume, _models, _non_domination_rank,
 _pareto_front_by_trials) = _import_internals()


# --- Optuna's RDB tables ---------------------------------------------------------------------

TRIALS = _models.TrialModel.__table__
VALUES = _models.TrialValueModel.__table__
USER_ATTRS = _models.TrialUserAttributeModel.__table__
SYSTEM_ATTRS = _models.TrialSystemAttributeModel.__table__
STUDIES = _models.StudyModel.__table__
# A trial's constraint values (`Trial.set_constraint`) are system attributes: one per
# constraint, "constraints:NAME" (Optuna 5), or one list under "constraints" (Optuna 4).
CONSTRAINTS_KEY = "constraints"
# How a value row of an infinite objective is stored (`value_type` column).
_INF = {"INF_POS": math.inf, "INF_NEG": -math.inf}


def is_constraint_key(key: str) -> bool:
    return key == CONSTRAINTS_KEY or key.startswith(f"{CONSTRAINTS_KEY}:")


def stored_value(value: float | None, value_type: Any) -> float:
    """A trial value row's float (Optuna stores +-inf as a type with a NULL value)."""
    inf = _INF.get(getattr(value_type, "name", value_type))
    return inf if inf is not None else float(value)  # type: ignore[arg-type]


def decode_attr(raw: str) -> Any:
    return json.loads(raw)


# --- Pareto fronts, ranks, hypervolume ----------------------------------------------------------

def pareto_front(trials: Sequence[FrozenTrial],
                 directions: Sequence[StudyDirection]) -> list[FrozenTrial]:
    """`Study.best_trials` over a list of trials: complete, feasible, non-dominated."""
    return list(_pareto_front_by_trials(trials, directions, consider_constraint=True))


def non_domination_rank(losses: np.ndarray) -> np.ndarray:
    """Pareto layer of each row of `losses` (all objectives minimised; 0 = the front)."""
    return np.asarray(_non_domination_rank(np.asarray(losses, dtype=float)))


def hypervolume(losses: np.ndarray, reference: np.ndarray, *,
                assume_pareto: bool = False) -> float:
    """Volume dominated by the rows of `losses` (minimised) and bounded by `reference`."""
    return float(_compute_hypervolume(np.asarray(losses, dtype=float),
                                      np.asarray(reference, dtype=float),
                                      assume_pareto=assume_pareto))


# --- The contract ---------------------------------------------------------------------------------

def contract_problems() -> list[str]:
    """What no longer holds of the internals above, each naming the installed optuna version
    (empty when everything holds)."""
    problems: list[str] = []

    def check(what: str, ok: bool) -> None:
        if not ok:
            problems.append(
                f"{LIBRARY}: {what} (workers/optuna_compat.py was checked against optuna "
                f"{', '.join(CHECKED_VERSIONS)})"
            )

    try:
        pts = np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
        check("hypervolume of a known 2-D set is not 3.0",
              math.isclose(hypervolume(pts, np.array([3.0, 3.0])), 3.0))
        check("non-domination ranks of a known set are not [0, 0, 1, 2]",
              non_domination_rank(pts).tolist() == [0, 0, 1, 2])
        directions = [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]

        def trial(values: list[float], constraint: float) -> FrozenTrial:
            return optuna.trial.create_trial(
                values=values, system_attrs={f"{CONSTRAINTS_KEY}:c": constraint})

        good, worse = trial([0.5, 10.0], -1.0), trial([0.4, 20.0], 0.0)
        infeasible = trial([0.9, 1.0], 1.0)  # dominates both, but violates its constraint
        front = pareto_front([good, worse, infeasible], directions)
        check("the Pareto front does not read 'constraints:NAME' system attributes as "
              "constraints", front == [good])
        study = optuna.create_study(directions=["maximize", "minimize"])
        study.add_trial(infeasible)
        study.add_trial(good)
        check("Study.best_trials and the adapter's pareto_front disagree",
              [t.values for t in study.best_trials] == [t.values for t in front])
        cols = {c.name for c in TRIALS.columns} | {c.name for c in VALUES.columns}
        check(f"the trial tables lack expected columns (have {sorted(cols)})",
              {"trial_id", "number", "study_id", "state", "datetime_start",
               "datetime_complete", "objective", "value", "value_type"} <= cols)
        for table in (USER_ATTRS, SYSTEM_ATTRS):
            check(f"{table.name} lacks trial_id/key/value_json",
                  {"trial_id", "key", "value_json"} <= {c.name for c in table.columns})
        check("the studies table lacks study_id/study_name",
              {"study_id", "study_name"} <= {c.name for c in STUDIES.columns})
        problems.extend(_stored_constraints_problems(check))
    except Exception as e:  # any exception is itself a broken contract
        problems.append(f"{LIBRARY}: {type(e).__name__}: {e}")
    return problems


def _stored_constraints_problems(check: Any) -> list[str]:
    """Round-trip `Trial.set_constraint` and a value through a real SQLite storage and read it
    back the way the service does (raw table reads)."""
    import tempfile
    from pathlib import Path

    import sqlalchemy as sa

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'contract.db'}"
        study = optuna.create_study(storage=url, directions=["maximize", "minimize"])
        t = study.ask()
        t.set_constraint("max_madds", -2.5)
        study.tell(t, [0.5, math.inf])
        engine = sa.create_engine(url)
        try:
            with engine.connect() as con:
                attrs = {k: decode_attr(v) for k, v in con.execute(
                    sa.select(SYSTEM_ATTRS.c.key, SYSTEM_ATTRS.c.value_json))
                    if is_constraint_key(k)}
                values = sorted((o, stored_value(v, k)) for o, v, k in con.execute(
                    sa.select(VALUES.c.objective, VALUES.c.value, VALUES.c.value_type)))
        finally:
            engine.dispose()
    check(f"set_constraint is not stored as system attributes 'constraints:NAME' "
          f"(found {attrs})", attrs in ({"constraints:max_madds": -2.5},
                                       {"constraints": [-2.5]}))
    check(f"trial values do not read back from the values table (found {values})",
          values == [(0, 0.5), (1, math.inf)])
    return []
