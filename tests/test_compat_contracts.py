"""Private internals of the libraries clnas is built on stay inside one adapter module per
library, and each adapter's contract holds for the installed version.

A new release of optuna, ray or torch may move any private name. The scan below fails on a
private use outside the adapters; the contract tests fail, naming the library and version,
when an adapter's internals changed (`scripts/test-latest.sh` runs them against the newest
releases our ranges allow).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ("search_space", "objectives", "workers", "service")
# library -> the one module allowed to use its internals
ADAPTERS = {
    "optuna": "workers/optuna_compat.py",
    "ray": None,  # clnas uses only Ray's public API
    "torch": "search_space/torch_compat.py",
}

_LIB = r"(?P<lib>optuna|ray|torch)"
PATTERNS = [
    # a private segment in a dotted path: torch._C, optuna.storages._rdb, torch.ops.mkldnn._x
    re.compile(rf"\b{_LIB}(\.[A-Za-z0-9]\w*)*\._[A-Za-z0-9]\w*"),
    # a private name imported from a public module
    re.compile(rf"^\s*from\s+{_LIB}[\w.]*\s+import\s+(\(?\s*|.*,\s*)_[A-Za-z0-9]\w*", re.M),
]
# private attributes of these libraries' objects (the names seen in clnas's history)
PRIVATE_ATTRS = {
    "optuna": re.compile(r"\.(_trial_id|_study_id|_cached_frozen_trial)\b"),
    "ray": re.compile(r"\.(_ot_\w+|_completed_trials|_local_tuner|_searcher)\b"),
}


def private_uses(path: str, text: str) -> list[tuple[str, int, str]]:
    """(library, line, text) of every private use in `text`, ignoring allowed modules."""
    found = []
    for pattern in PATTERNS:
        for m in pattern.finditer(text):
            found.append((m.group("lib"), m.start()))
    for lib, pattern in PRIVATE_ATTRS.items():
        for m in pattern.finditer(text):
            found.append((lib, m.start()))
    out = []
    for lib, pos in sorted(set(found), key=lambda f: f[1]):
        if ADAPTERS.get(lib) == path:
            continue
        line = text.count("\n", 0, pos) + 1
        out.append((lib, line, text.splitlines()[line - 1].strip()))
    return out


def test_private_internals_only_in_adapters() -> None:
    bad = []
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            rel = file.relative_to(ROOT).as_posix()
            bad += [f"{rel}:{line}: {lib} internal: {src}"
                    for lib, line, src in private_uses(rel, file.read_text())]
    assert not bad, "private library internals outside their adapter module:\n" + "\n".join(bad)


@pytest.mark.parametrize(("snippet", "lib"), [
    ("x = optuna._hypervolume.compute_hypervolume(a, b)", "optuna"),
    ("from optuna.storages._rdb import models", "optuna"),
    ("from optuna.study import _fast_non_domination_rank", "optuna"),
    ("from optuna.study import StudyDirection, _helper", "optuna"),
    ("storage.set_trial_state_values(t._trial_id, state)", "optuna"),
    ("y = torch.ops.mkldnn._convolution_pointwise(x)", "torch"),
    ("w = torch._C._nn.mkldnn_reorder_conv2d_weight(w)", "torch"),
    ("trial = self._ot_trials.pop(trial_id)", "ray"),
])
def test_scan_flags_private_uses(snippet: str, lib: str) -> None:
    """The scan is not vacuous: each kind of private use is flagged outside an adapter..."""
    assert [u[0] for u in private_uses("service/x.py", snippet)] == [lib]


@pytest.mark.parametrize("snippet", [
    "import torch\nprint(torch.__version__)",
    "from optuna.study import StudyDirection",
    "self._storage_url = url",
    "from ray.tune.search import Searcher",
])
def test_scan_allows_public_uses(snippet: str) -> None:
    """...and public names (dunders included) are not."""
    assert private_uses("service/x.py", snippet) == []


def test_optuna_adapter_contract() -> None:
    from workers import optuna_compat

    problems = optuna_compat.contract_problems()
    assert not problems, "\n".join(problems)


def test_torch_adapter_contract() -> None:
    from search_space import torch_compat

    problems = torch_compat.contract_problems()
    assert not problems, "\n".join(problems)


def test_torch_adapter_names_library_and_version_when_internals_move(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from search_space import torch_compat

    monkeypatch.setattr(torch_compat, "reorder_conv2d_weight",
                        lambda *a: (_ for _ in ()).throw(RuntimeError("no such op")))
    problems = torch_compat.contract_problems()
    if not torch.backends.mkldnn.is_available():
        pytest.skip("PyTorch built without oneDNN: the adapter's ops are not used")
    assert problems and any("packed oneDNN convolution fails: no such op" in p for p in problems)
    assert all(p.startswith(f"torch {torch.__version__} (clnas checked 2.13.0)") for p in problems)
