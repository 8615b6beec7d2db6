"""`clnas search STUDY.json`: run a whole study without the service (issue 4), with a live
progress bar and the final Pareto front as a table."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from workers.ray_address import ADDRESS_HELP

if TYPE_CHECKING:
    from workers.tune import StudyProgress

DEFAULT_DB = "sqlite:///clnas.db"
console = Console()


def default_db() -> str:
    """`$CLNAS_DB`, else an SQLite file in the working directory (shared with `clnas serve`)."""
    return os.environ.get("CLNAS_DB", DEFAULT_DB)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "search",
        help="run (or resume) a study: sample, reject, proxy-train on Ray, print the front",
        description="Run a clnas.study/1 document to completion. Re-running the same command "
        "against the same database resumes an interrupted study.",
    )
    p.add_argument("study", help="path to a clnas.study/1 JSON/YAML document")
    p.add_argument("--db", default=None, help=f"SQLAlchemy URL of the trial store [{DEFAULT_DB}]")
    p.add_argument("--ray-address", default=None, help=ADDRESS_HELP)
    p.add_argument("--data-dir", default=None, help="override the study's data_dir")
    p.add_argument(
        "--results-dir", default="ray_results", help="Ray Tune's experiment folder [ray_results]"
    )
    p.add_argument("--json", action="store_true", help="print the outcome as JSON, no bar")
    p.add_argument("-v", "--verbose", action="count", default=0, help="show Ray Tune's output")
    p.set_defaults(func=cmd_search)


def _fmt_m(n: float) -> str:
    return f"{n / 1e6:,.2f}M"


def _blocks(arch: dict[str, Any]) -> str:
    return " ".join(f"{s['block']}x{s.get('repeat', 1)}" for s in arch["stages"])


def front_table(title: str, rows: list[Any], metrics: list[str], label: str) -> Table:
    table = Table(title=title)
    table.add_column(label, justify="right" if label == "trial" else "left")
    headers = {"val_top1": "val top-1", "madds": "MAdds", "params": "params",
               "latency_ms": "latency ms"}
    for m in metrics:
        table.add_column(headers[m], justify="right")
    table.add_column("FCRF")
    table.add_column("blocks")
    for t in sorted(rows, key=lambda t: -t.values[0]):
        cells = [str(t.number) if label == "trial" else t.user_attrs["baseline"]]
        for m, v in zip(metrics, t.values, strict=True):
            cells.append(
                f"{100 * v:.2f}%" if m == "val_top1"
                else _fmt_m(v) if m in ("madds", "params") else f"{v:.2f}"
            )
        cost = t.user_attrs.get("cost", {})
        cells.append({True: "yes", False: "no"}.get(cost.get("fcrf"), "-"))
        cells.append(_blocks(t.user_attrs["arch"]))
        table.add_row(*cells)
    return table


def cmd_search(args: argparse.Namespace) -> int:
    import json

    from workers.study import load_study
    from workers.tune import run_study

    spec = load_study(args.study)
    if args.data_dir is not None:
        spec = spec.model_copy(update={"data_dir": args.data_dir})
    db = args.db or default_db()
    Path(args.results_dir).mkdir(parents=True, exist_ok=True)
    synthetic = " [synthetic data]" if spec.dataset == "synthetic" else ""
    if args.json:
        outcome = run_study(spec, storage_url=db, results_dir=args.results_dir,
                            ray_address=args.ray_address, verbose=args.verbose)
        print(json.dumps({
            "study": spec.name, "dataset": spec.dataset, "progress": outcome.progress.to_dict(),
            "front": [{"number": t.number, "values": t.values} for t in outcome.front],
            "baselines": [{"name": t.user_attrs["baseline"], "values": t.values}
                          for t in outcome.baselines],
        }, indent=2))
        return _exit_status(outcome.progress)
    console.print(f"study [bold]{spec.name}[/]{synthetic}: {spec.search.n_trials} candidates, "
                  f"sampler {spec.search.sampler}, scheduler {spec.search.scheduler}, db {db}")
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("trials", total=spec.search.n_trials,
                            detail="checking the data, starting Ray")
        download: list[TaskID] = []

        def downloaded(done: int, total: int | None) -> None:
            """The dataset download, as a row of this bar (one live display per terminal)."""
            if not download:
                download.append(bar.add_task(f"downloading {spec.dataset}", detail="MiB",
                                             total=total // 2**20 if total else None))
            bar.update(download[0], completed=done // 2**20)

        def show(p: StudyProgress) -> None:
            detail = (
                f"trained {p.completed}  rejected {p.rejected}  pruned {p.pruned}  "
                f"running {p.running}  failed {p.failed}  front {p.front_size}"
            )
            if p.baselines_total:
                detail += f"  baselines {p.baselines_done}/{p.baselines_total}"
            bar.update(task, completed=p.finished, detail=detail)

        outcome = run_study(spec, storage_url=db, results_dir=args.results_dir,
                            ray_address=args.ray_address, verbose=args.verbose, on_progress=show,
                            on_download=downloaded)
    metrics = spec.metrics
    console.print(front_table(f"Pareto front of {spec.name}{synthetic} "
                              f"({len(outcome.front)} trials)", outcome.front, metrics, "trial"))
    if outcome.baselines:
        console.print(front_table(f"Baselines (same proxy recipe){synthetic}",
                                  outcome.baselines, metrics, "baseline"))
    p = outcome.progress
    console.print(f"{p.finished}/{p.n_trials} candidates: {p.completed} trained, {p.rejected} "
                  f"rejected {p.rejected_by_reason or ''}, {p.pruned} pruned, {p.failed} failed")
    return _exit_status(p)


def _exit_status(progress: StudyProgress) -> int:
    """3 when the study fell short (docs/cli.md#clnas-search), saying so on stderr."""
    if (short := progress.shortfall()) is None:
        return 0
    print(f"incomplete: {short}", file=sys.stderr)
    return 3
