"""How long the dashboard's study view takes to render a large study in headless Chromium.

Seeds studies of `--trials` and `--baseline` trials (real sampling and cost model, stand-in
accuracies: `tests.service.conftest.seed_study`) into a SQLite file, then starts a fresh service
on it and times, per study, navigation start -> the study view reporting itself rendered (every
trial plotted, front, hypervolume history and the first table page drawn), on the page's own
clock. The first load of each study is "cold" (the service reads and analyses the study's
trials); later loads reuse the service's snapshot, as every load does while nothing changes.
Prints cold, warm median and the ratio large / baseline.

    python benchmarks/dashboard_render.py                  # 5,000 vs 500 trials
    python benchmarks/dashboard_render.py --db /tmp/b.db   # keep (and reuse) the seeded store

Seeding 5,000 trials takes minutes (one Optuna ask/tell per trial); a store seeded before is
reused, so later runs only time the rendering.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the seeding and browser helpers live in the test suite

from service.settings import Settings  # noqa: E402
from tests.service.browser import chromium, live_server  # noqa: E402
from tests.service.conftest import seed_study  # noqa: E402

EXAMPLE = json.loads((ROOT / "examples" / "synthetic_small.json").read_text())
RENDER_LIMIT_S = 3.0


def study_doc(n: int) -> dict[str, Any]:
    return EXAMPLE | {
        "name": f"bench-{n}",
        "budget": {"max_madds": 40_000_000},
        "search": EXAMPLE["search"] | {"n_trials": n},
    }


def ensure_study(base: str, db_url: str, n: int) -> int:
    """The id of a study holding `n` trials, submitting and seeding what is missing."""
    doc = study_doc(n)
    http = httpx.Client(base_url=base, timeout=600)
    studies = http.get("/api/dashboard/studies", params={"limit": 500}).json()["items"]
    sid = next((s["id"] for s in studies if s["name"] == doc["name"]), None)
    if sid is None:
        r = http.post("/api/studies", json=doc)
        r.raise_for_status()
        sid = r.json()["id"]
    have = http.get(f"/api/dashboard/studies/{sid}", params={"since": 2**31 - 1}).json()["total"]
    if have < n:
        t0 = time.perf_counter()
        print(f"seeding {doc['name']}: {n - have} trials ...", flush=True)
        seed_study(db_url, doc, n - have, seed=have)
        print(f"  seeded in {time.perf_counter() - t0:.0f} s", flush=True)
    return int(sid)


def render_times(base: str, sid: int, repeats: int) -> list[tuple[float, float]]:
    """Per load: (data received, study view rendered), seconds since navigation start."""
    out = []
    with chromium() as browser:
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/#/studies/{sid}")
            page.wait_for_function(
                f"window.clnas && window.clnas.rendered === {sid}", timeout=120_000
            )
            data_ms, render_ms = page.evaluate("[window.clnas.dataMs, window.clnas.renderMs]")
            out.append((data_ms / 1000, render_ms / 1000))
            page.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5000)
    ap.add_argument("--baseline", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5, help="loads per study (the first is cold)")
    ap.add_argument("--db", default=None, help="SQLite file to seed / reuse [a temp file]")
    args = ap.parse_args()
    db = Path(args.db or Path(tempfile.mkdtemp(prefix="clnas-bench-")) / "bench.db").resolve()
    settings = Settings(
        db_url=f"sqlite:///{db}", run_studies=False, results_dir=str(db.parent / "ray_results")
    )
    with live_server(settings) as base:
        ids = {n: ensure_study(base, settings.db_url, n) for n in (args.baseline, args.trials)}
    warm = {}
    with live_server(settings) as base:  # a fresh service: its first load of a study is cold
        for n, sid in ids.items():
            runs = render_times(base, sid, args.repeats)
            warm[n] = statistics.median(r for _, r in runs[1:]) if len(runs) > 1 else runs[0][1]
            print(
                f"{n:>6} trials: cold {runs[0][1]:.2f} s, warm median {warm[n]:.2f} s   "
                f"(render s: {', '.join(f'{r:.2f}' for _, r in runs)}; data received at "
                f"{', '.join(f'{d:.2f}' for d, _ in runs)})"
            )
    ratio = warm[args.trials] / warm[args.baseline]
    ok = warm[args.trials] < RENDER_LIMIT_S
    print(
        f"ratio {args.trials}/{args.baseline} trials (warm): {ratio:.2f}x   "
        f"{args.trials} trials under {RENDER_LIMIT_S:.0f} s: {'ok' if ok else 'TOO SLOW'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
