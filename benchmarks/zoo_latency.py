"""Every ImageNet zoo model's latency relative to MobileNetV1 and MobileNetV2, measured in the
same run, beside its MAdds ratio; and the HetConv VGG-16 (CIFAR-10) parts relative to P1.

Three columns of latency per model at batch 1 on the model's own resolution; within a column
the models are timed in one interleaved run (every round runs each model once, round-robin;
`--repeats` rounds; medians), and the columns run one after the other:
- `fast`: eager PyTorch, `build_model(arch, runtime="fused")` under `torch.inference_mode()`,
- `ref`: eager PyTorch, the reference modules (`runtime="reference"`),
- `ort`: ONNX Runtime on the exported graph (`clnas export-onnx`).
Ratios are taken within a column (fast/fast, ref/ref, ort/ort), so the baselines get the same
machinery as the model they are compared with.

    .venv/bin/python benchmarks/zoo_latency.py [--threads 2] [--repeats 30] [--no-ort]
"""

from __future__ import annotations

import argparse
import os
import warnings

import torch

from objectives import cost_report
from objectives.latency import Backend, LatencyReport, compare_latency, make_runner
from search_space import load_arch, zoo_names
from search_space.builder import Runtime

COLUMNS: dict[str, tuple[Backend, Runtime]] = {
    "fast": ("torch", "fused"),
    "ref": ("torch", "reference"),
    "ort": ("onnxruntime", "reference"),
}


def measure(
    names: list[str], columns: list[str], threads: int, repeats: int, warmup: int
) -> dict[str, dict[str, LatencyReport]]:
    """`{column: {model: report}}`: per column, one interleaved run over its models (the
    models a ratio compares share every round; the columns run one after the other, so one
    backend's runtime does not evict another's weights between two timed passes)."""
    out: dict[str, dict[str, LatencyReport]] = {}
    for column in columns:
        backend, runtime = COLUMNS[column]
        runners = {
            name: make_runner(name, backend=backend, runtime=runtime, threads=threads)
            for name in names
        }
        out[column] = compare_latency(runners, threads=threads, warmup=warmup, repeats=repeats)
    return out


SHORT = {"mobilenet_v1": "MBv1", "mobilenet_v2": "MBv2", "hetconv_vgg16_p1": "P1"}


def table(
    title: str, names: list[str], bases: list[str], reports: dict[str, dict[str, LatencyReport]]
) -> None:
    madds = {name: cost_report(name, crf=False).madds for name in names}
    columns = list(reports)
    print(f"\n{title}")
    head = f"{'model':30s} {'MAdds':>8s}" + "".join(
        f" {'MAdds/' + SHORT.get(b, b):>15s}" for b in bases
    )
    for column in columns:
        head += f" {column + ' ms':>9s}" + "".join(
            f" {column + '/' + SHORT.get(b, b):>15s}" for b in bases
        )
    print(head)
    print("-" * len(head))
    for name in names:
        row = f"{name:30s} {madds[name] / 1e6:7.1f}M"
        row += "".join(f" {madds[name] / madds[b]:15.2f}" for b in bases)
        for column in columns:
            ms = reports[column][name].median_ms
            row += f" {ms:9.2f}" + "".join(
                f" {ms / reports[column][b].median_ms:15.2f}" for b in bases
            )
        print(row)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-ort", action="store_true", help="skip the ONNX Runtime column")
    parser.add_argument("--only", nargs="*", help="restrict to these ImageNet models")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    columns = [c for c in COLUMNS if not (args.no_ort and c == "ort")]
    imagenet = [n for n in zoo_names() if load_arch(n).num_classes == 1000]
    if args.only:
        imagenet = [n for n in imagenet if n in set(args.only) | {"mobilenet_v1", "mobilenet_v2"}]
    hetconv = [n for n in zoo_names() if n.startswith("hetconv_vgg16_")]
    print(
        f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cores, batch 1, "
        f"{args.repeats} interleaved rounds, medians; load avg {os.getloadavg()[0]:.2f}"
    )
    reports = measure(imagenet, columns, args.threads, args.repeats, args.warmup)
    table(
        "ImageNet models (224x224) vs MobileNetV1/V2",
        imagenet,
        ["mobilenet_v1", "mobilenet_v2"],
        reports,
    )
    reports = measure(hetconv, columns, args.threads, args.repeats, args.warmup)
    table("HetConv VGG-16, CIFAR-10 (32x32) vs P1", hetconv, ["hetconv_vgg16_p1"], reports)
    print(f"\nload avg after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
