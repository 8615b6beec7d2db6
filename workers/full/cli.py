"""`clnas train`: full training of one design on ImageNet folders through Ray Train (issue 7).
`service.cli` mounts it with `add_parser`; Ray and the trainer are imported only when the command
runs, so the other commands do not pay for them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar

from workers.ray_address import ADDRESS_HELP

if TYPE_CHECKING:
    from workers.full.loop import EpochMetrics, Progress
    from workers.full.train import FullResult


def _int_at_least(low: int) -> Any:
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if n < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {n}")
        return n

    return parse


def _non_negative_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return x


def add_parser(subparsers: Any) -> None:
    """Add `train` to the `clnas` sub-command parsers."""
    positive, non_negative = _int_at_least(1), _int_at_least(0)
    p = subparsers.add_parser(
        "train",
        help="train a design in full on ImageNet folders (Ray Train, DDP)",
        description="Train ARCH on DATA/train, evaluate top-1/top-5 on DATA/val every epoch, "
        "checkpoint every epoch, and write safetensors weights, metrics and an ONNX export.",
    )
    p.add_argument("arch", help="zoo name or path to a .json/.yaml clnas.arch/1 document")
    p.add_argument(
        "--data", required=True, help="folder with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG"
    )
    p.add_argument(
        "--recipe",
        default="clcnet",
        help="built-in recipe (clcnet, mobilenet_v2, antnet) or a clnas.recipe/1 file [clcnet]",
    )
    p.add_argument("--workers", type=positive, default=1, help="data-parallel workers [1]")
    p.add_argument("--gpus-per-worker", type=_non_negative_float, default=0.0, metavar="G")
    p.add_argument("--cpus-per-worker", type=_non_negative_float, default=1.0, metavar="C")
    p.add_argument("--epochs", type=positive, help="override the recipe's epochs")
    p.add_argument("--batch-size", type=positive, help="global batch; the lr scales linearly")
    p.add_argument("--image-size", type=positive, help="training crop [224]; eval resize / 0.875")
    p.add_argument("--out", default="clnas_full", help="output directory [clnas_full]")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--seed", type=non_negative, default=0)
    p.add_argument("--stop-after", type=positive, metavar="EPOCH", help="end this call after EPOCH")
    p.add_argument("--loader-workers", type=non_negative, help="DataLoader processes per worker")
    p.add_argument("--ray-address", help=ADDRESS_HELP)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("--verbose", action="store_true", help="show the Ray workers' logs")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    import ray.train

    from workers.data.cifar import DatasetError
    from workers.full.export import ExportError
    from workers.full.train import train_full

    err = Console(stderr=True)
    columns = (
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
    )
    with Bar(*columns, console=err, transient=True) as bar:
        task = bar.add_task("train", total=None, epoch="-", loss="-")

        def show(event: Progress) -> None:
            bar.update(
                task,
                total=event.steps,
                completed=event.step,
                epoch=f"{event.epoch}/{event.epochs}",
                loss=f"{event.train_loss:.4f}",
            )
            if event.metrics is not None:
                bar.console.print(_epoch_line(event.metrics, event.epochs))

        try:
            result = train_full(
                args.arch,
                args.data,
                args.recipe,
                workers=args.workers,
                gpus_per_worker=args.gpus_per_worker,
                cpus_per_worker=args.cpus_per_worker,
                epochs=args.epochs,
                batch_size=args.batch_size,
                image_size=args.image_size,
                out_dir=args.out,
                resume=args.resume,
                seed=args.seed,
                stop_after=args.stop_after,
                loader_workers=args.loader_workers,
                progress_callback=show,
                ray_address=args.ray_address,
                verbose=args.verbose,
            )
        except (DatasetError, ValueError, ExportError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except ray.train.TrainingFailedError as exc:
            print(f"error: training failed: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _summary(Console(), result)
    return 0


def _epoch_line(m: EpochMetrics, epochs: int) -> str:
    line = (
        f"epoch {m['epoch']}/{epochs}  train loss {m['train_loss']:.4f}  "
        f"val loss {m['val_loss']:.4f}  top-1 {m['val_top1']:.2%}  top-5 {m['val_top5']:.2%}"
    )
    if m["ema_val_top1"] is not None and m["ema_val_top5"] is not None:
        line += f"  (EMA top-1 {m['ema_val_top1']:.2%} top-5 {m['ema_val_top5']:.2%})"
    line += f"  {m['images_per_s']:.0f} img/s"
    if m["skipped_images"]:
        line += f"  [yellow]{m['skipped_images']} unreadable images skipped[/yellow]"
    if m["synthetic"]:
        line += "  [dim](synthetic data)[/dim]"
    return line


def _summary(console: Console, r: FullResult) -> None:
    console.print(
        f"[bold]{r.arch}[/bold] with recipe {r.recipe}: {r.epochs}/{r.target_epochs} epochs "
        f"on {r.workers} worker(s), {r.train_images} train / {r.val_images} val images, "
        f"{r.num_classes} classes at {r.image_size}px"
    )
    if r.val_top1 is not None and r.val_top5 is not None:
        note = "  [bold](synthetic data: not an ImageNet accuracy)[/bold]" if r.synthetic else ""
        console.print(f"val top-1 {r.val_top1:.2%}  top-5 {r.val_top5:.2%}{note}")
    if not r.completed:
        console.print(
            f"stopped after epoch {r.epochs}; continue with: clnas train ... --out {r.out_dir} "
            "--resume"
        )
        console.print(f"metrics: {r.metrics_path}  checkpoint: {r.checkpoint}")
        return
    console.print(f"weights: {r.weights_path}  arch: {r.arch_path}")
    console.print(f"ONNX: {r.onnx_path} (max |onnxruntime - PyTorch| {r.onnx_max_abs_diff:.2g})")
    console.print(f"metrics: {r.metrics_path}  checkpoint: {r.checkpoint}")
