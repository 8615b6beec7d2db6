"""The `clnas` command line: zoo, show, validate, cost, groups, search, serve, token, train,
export-onnx."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy.exc
from rich.console import Console
from rich.table import Table

from search_space import Arch, ArchError, load_arch
from search_space.export import add_parser as add_export_parser
from workers.data.cifar import DatasetError
from workers.full.cli import add_parser as add_train_parser

console = Console()


def _fmt_m(n: int) -> str:
    return f"{n / 1e6:,.2f}M"


def _arch_summary(arch: Arch) -> str:
    return " ".join(f"{s.block}x{s.repeat}" for s in arch.stages)


def cmd_zoo(args: argparse.Namespace) -> int:
    from service.views import zoo_rows

    rows = zoo_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"clnas zoo ({len(rows)} models)")
    for col in ("name", "classes", "res", "MAdds", "params", "FCRF", "blocks"):
        table.add_column(
            col, justify="right" if col in ("classes", "res", "MAdds", "params") else "left"
        )
    for r in rows:
        table.add_row(
            r["name"],
            str(r["num_classes"]),
            str(r["resolution"]),
            _fmt_m(r["madds"]),
            _fmt_m(r["params"]),
            "yes" if r["fcrf"] else "no",
            ",".join(r["blocks"]),
        )
    console.print(table)
    return 0


def _stage_keys(stage: Any) -> str:
    skip = {"block", "out", "stride", "repeat"}
    return " ".join(
        f"{k}={v}" for k, v in stage.model_dump(exclude_none=True).items() if k not in skip
    )


def cmd_show(args: argparse.Namespace) -> int:
    arch = load_arch(args.arch)
    console.print(
        f"[bold]{arch.name}[/bold]  format {arch.format}  input {arch.in_channels}x"
        f"{arch.resolution}x{arch.resolution}  classes {arch.num_classes}"
    )
    table = Table()
    for col in ("#", "block", "repeat", "stride", "in", "out", "keys", "output"):
        table.add_column(col)
    if arch.stem is not None:
        s = arch.stem
        keys = f"kernel={s.kernel} act={s.act}" + (" pool=max" if s.pool else "")
        size = arch.stem_size()
        table.add_row(
            "stem",
            "conv",
            "1",
            str(s.stride),
            str(arch.in_channels),
            str(s.out),
            keys,
            f"{s.out}x{size}x{size}",
        )
    last: dict[int, Any] = {}
    first_in: dict[int, int] = {}
    for plan in arch.blocks():
        last[plan.stage] = plan
        first_in.setdefault(plan.stage, plan.cin)
    for i, stage in enumerate(arch.stages):
        plan = last[i]
        size = plan.size_out // 2 if stage.pool == "max" else plan.size_out
        table.add_row(
            str(i),
            stage.block,
            str(stage.repeat),
            str(stage.stride),
            str(first_in[i]),
            str(stage.out),
            _stage_keys(stage),
            f"{stage.out}x{size}x{size}",
        )
    head = arch.head.model_dump(exclude_none=True)
    table.add_row(
        "head",
        head.pop("type"),
        "",
        "",
        str(arch.final_features()[0]),
        str(arch.num_classes),
        " ".join(f"{k}={v}" for k, v in head.items()),
        str(arch.num_classes),
    )
    console.print(table)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    arch = load_arch(args.file)
    console.print(
        f"[green]valid[/green] {arch.format} document {arch.name!r}: "
        f"{sum(s.repeat for s in arch.stages)} blocks in {len(arch.stages)} stages"
    )
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    from objectives import cost_report

    arch = load_arch(args.arch)
    report = cost_report(arch, resolution=args.resolution, num_classes=args.num_classes)
    status = 0
    check: dict[str, Any] | None = None
    if args.check:
        from objectives.fvcore_count import fvcore_counts

        madds, params = fvcore_counts(
            arch, resolution=args.resolution, num_classes=args.num_classes
        )
        agree = madds == report.madds and params == report.params
        check = {"fvcore_madds": madds, "fvcore_params": params, "agree": agree}
        status = 0 if agree else 1
    if args.json:
        out = report.to_dict()
        if check is not None:
            out["check"] = check
        print(json.dumps(out, indent=2))
        return status
    table = Table(title=f"{arch.name} @ {report.resolution}px, {report.num_classes} classes")
    for col in ("stage", "blocks", "type", "in", "out", "output", "MAdds", "params", "CRF min"):
        table.add_column(col, justify="left" if col in ("stage", "type") else "right")
    for st in report.stages:
        table.add_row(
            st.name,
            str(st.blocks),
            st.type,
            str(st.cin),
            str(st.cout),
            f"{st.size_out}x{st.size_out}",
            _fmt_m(st.madds),
            f"{st.params:,}",
            "-" if st.crf_min_fraction is None else f"{st.crf_min_fraction:.3f}",
        )
    console.print(table)
    console.print(
        f"total: [bold]{report.madds:,}[/bold] MAdds ({_fmt_m(report.madds)}), "
        f"[bold]{report.params:,}[/bold] params ({_fmt_m(report.params)}), "
        f"FCRF: {'yes' if report.fcrf else 'no'}"
    )
    if check is not None:
        verdict = "[green]agrees[/green]" if check["agree"] else "[red]DISAGREES[/red]"
        console.print(
            f"fvcore: {check['fvcore_madds']:,} MAdds, {check['fvcore_params']:,} params "
            f"-> {verdict}"
        )
    return status


def cmd_groups(args: argparse.Namespace) -> int:
    from objectives import min_cost_groups
    from objectives.groups import clc_cost

    g1, g2 = min_cost_groups(args.M, args.L, args.N, area=args.area)
    cost = clc_cost(g1, g2, M=args.M, L=args.L, N=args.N, area=args.area)
    if args.json:
        print(json.dumps({"g1": g1, "g2": g2, "cost_per_pixel": cost}))
    else:
        console.print(
            f"M={args.M} L={args.L} N={args.N} A={args.area}: g1={g1} g2={g2} "
            f"(clcNet Eq. 2 cost {cost:g} MAdds per output pixel; g1*g2={g1 * g2} <= L)"
        )
    return 0


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clnas", description="Architecture search over channel-local CNN blocks"
    )
    sub = p.add_subparsers(dest="command", required=True)

    zoo = sub.add_parser("zoo", help="list the published models shipped with clnas")
    zoo.add_argument("--json", action="store_true", help="machine-readable output")
    zoo.set_defaults(func=cmd_zoo)

    show = sub.add_parser("show", help="stages and output shape per stage of an arch")
    show.add_argument("arch", help="zoo name or path to a .json/.yaml clnas.arch/1 document")
    show.set_defaults(func=cmd_show)

    val = sub.add_parser("validate", help="check a clnas.arch/1 document (exit 1 if malformed)")
    val.add_argument("file")
    val.set_defaults(func=cmd_validate)

    cost = sub.add_parser("cost", help="analytic MAdds / params / FCRF of an arch")
    cost.add_argument("arch", help="zoo name or path to a .json/.yaml document")
    cost.add_argument("--resolution", type=_positive, default=None)
    cost.add_argument("--num-classes", type=_positive, default=None)
    cost.add_argument("--json", action="store_true")
    cost.add_argument(
        "--check", action="store_true", help="also count with fvcore; fail on any difference"
    )
    cost.set_defaults(func=cmd_cost)

    groups = sub.add_parser("groups", help="clcNet cost-minimising (g1, g2) under the FCRF rule")
    groups.add_argument("M", type=_positive)
    groups.add_argument("L", type=_positive)
    groups.add_argument("N", type=_positive)
    groups.add_argument("--area", type=_positive, default=9, help="k*k of the IGC kernel [9]")
    groups.add_argument("--json", action="store_true")
    groups.set_defaults(func=cmd_groups)

    from service import search_cmd, serve_cmd

    search_cmd.add_parser(sub)
    serve_cmd.add_parser(sub)
    add_train_parser(sub)
    add_export_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ArchError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except sqlalchemy.exc.DBAPIError as exc:  # --db unreachable, refused, locked, no rights
        print(f"error: the database (--db): {str(exc.orig).strip()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
