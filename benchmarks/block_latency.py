"""Per block type and typical shape: reference module vs its fused inference form vs the dense
or depthwise-separable baseline of the same width, eager PyTorch, batch 1 and 32.

Each ratio comes from two modules timed interleaved (round-robin, medians) in one process run,
so it is robust to background load on a shared machine: fused vs reference in one run, fused vs
baseline in another (the "fast ms" column is from that second run). Interleaving all three
made the reference, tens of times slower at batch 32 and 10x at batch 1, evict the others' data
between their timed passes, which slowed the baseline by up to 2.7x (the
MobileNetV1 block at 112x112: 1.15 ms interleaved with the reference, 0.42 ms without); the
"ref/base" column is the product of the two ratios. The fused form gets its input as it would
inside a network: channels_last, and for a CLC block in the paired order the previous
CLC block writes (and it writes the next one's), or on maps up to 28x28 as the group-major
hand-off between two CLC blocks (both ways). The reference gets NCHW, as it does.

    .venv/bin/python benchmarks/block_latency.py [--threads 2] [--repeats 30] [--batches 1 32]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from objectives.latency import Runner, compare_latency
from search_space.arch import Arch, parse_arch
from search_space.blocks import BLOCKS
from search_space.blocks.clc import ClcBlock
from search_space.runtime.clc import MERGED_Z_MAX_ROWS, FusedClc, handoff_layout, z_crf
from search_space.runtime.conv import FusedConv
from search_space.runtime.hetconv import FusedHetConv
from search_space.runtime.network import fuse_block, preferred_order


@dataclass(frozen=True)
class Case:
    stage: dict[str, Any]  # the stage keys (block, out, stride, ...)
    cin: int
    size: int
    baseline: dict[str, Any] | None  # same width, dense or depthwise separable

    @property
    def label(self) -> str:
        keys = {k: v for k, v in self.stage.items() if k not in ("block", "out", "stride")}
        extra = " ".join(f"{k}={v}" for k, v in keys.items())
        stride = self.stage.get("stride", 1)
        s2 = " s2" if stride == 2 else ""
        return f"{self.stage['block']} {self.cin}->{self.stage['out']}@{self.size}{s2} {extra}"


def dws(out: int, stride: int = 1) -> dict[str, Any]:
    return {"block": "dws", "out": out, "stride": stride}


def conv(out: int) -> dict[str, Any]:
    return {"block": "conv", "out": out, "bias": True}


def mbconv(out: int, expand: int) -> dict[str, Any]:
    return {"block": "mbconv", "out": out, "expand": expand}


ANT = {"block": "ant", "expand": 6}
MB64 = {"block": "mbconv", "out": 64, "expand": 6}

CASES = [
    # clcNet-A (g2 = 2, CRF-2 IGC), baseline MobileNetV1's dws at the same width
    Case({"block": "clc", "out": 64, "g1": 16, "g2": 2}, 32, 112, dws(64)),
    Case({"block": "clc", "out": 128, "g1": 64, "g2": 2}, 128, 56, dws(128)),
    Case({"block": "clc", "out": 256, "g1": 128, "g2": 2}, 256, 28, dws(256)),
    Case({"block": "clc", "out": 512, "g1": 256, "g2": 2}, 512, 14, dws(512)),
    Case({"block": "clc", "out": 1024, "g1": 256, "g2": 2, "stride": 2}, 512, 14, dws(1024, 2)),
    Case({"block": "clc", "out": 1024, "g1": 512, "g2": 2}, 1024, 7, dws(1024)),
    Case({"block": "clc", "out": 512, "g1": 128, "g2": 4}, 512, 14, dws(512)),  # CRF 4
    Case({"block": "clc", "out": 512, "g1": 256, "g2": 2, "interlace": False}, 512, 14, dws(512)),
    # HetConv VGG-16 on CIFAR (P = 4, and P = in), baseline the dense 3x3 conv (P = 1)
    Case({"block": "hetconv", "out": 64, "part": 4, "bias": True}, 64, 32, conv(64)),
    Case({"block": "hetconv", "out": 128, "part": 4, "bias": True}, 128, 16, conv(128)),
    Case({"block": "hetconv", "out": 256, "part": 4, "bias": True}, 256, 8, conv(256)),
    Case({"block": "hetconv", "out": 512, "part": 4, "bias": True}, 512, 4, conv(512)),
    Case({"block": "hetconv", "out": 512, "part": 4, "bias": True}, 512, 2, conv(512)),
    Case({"block": "hetconv", "out": 128, "part": "in", "bias": True}, 128, 16, conv(128)),
    # ChannelNets (g = 2, dc = 8 / 64), baseline dws
    Case({"block": "gm", "out": 512, "groups": 2}, 512, 14, dws(512)),
    Case({"block": "gcwm", "out": 512, "groups": 2, "cw_kernel": 8}, 512, 14, dws(512)),
    Case({"block": "dwscw", "out": 1024, "cw_kernel": 64}, 1024, 7, dws(1024)),
    # ANTNets (t = 6), baseline MobileNetV2's inverted residual
    Case(ANT | {"out": 32, "se_ratio": 12, "groups": 2}, 32, 28, mbconv(32, 6)),
    Case(ANT | {"out": 96, "se_ratio": 24, "groups": 2}, 96, 14, mbconv(96, 6)),
    Case(ANT | {"block": "eant", "out": 64, "se_ratio": 16, "groups": [1, 2]}, 64, 14, MB64),
    # baselines and the rest
    Case({"block": "shuffle", "out": 240, "groups": 3}, 240, 28, dws(240)),
    Case({"block": "effnet", "out": 128, "stride": 2}, 64, 16, dws(128, 2)),
    Case(mbconv(32, 6), 32, 28, dws(32)),
    Case(dws(512), 512, 14, None),
    Case(conv(128), 128, 16, None),
]  # fmt: skip


def build_block(stage: dict[str, Any], cin: int, size: int) -> tuple[nn.Module, Arch]:
    doc = {
        "format": "clnas.arch/1",
        "num_classes": 10,
        "resolution": 32,  # blocks do not depend on it
        "stem": {"out": cin, "stride": 1},
        "stages": [{"stride": 1, "repeat": 1, **stage}],
        "head": {"type": "fc"},
    }
    arch = parse_arch(doc)
    plan = next(iter(arch.blocks()))
    block = BLOCKS[plan.block](
        plan.spec, cin=plan.cin, cout=plan.cout, stride=plan.stride, first=True
    )
    return randomise(block).eval(), arch


def randomise(module: nn.Module) -> nn.Module:
    for bn in module.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            bn.running_var.uniform_(0.5, 2.0)
    return module


def fused_form(block: nn.Module, stage: dict[str, Any], cin: int) -> tuple[nn.Module, Any]:
    """The block's fused form fed and feeding as inside a chain of blocks of its kind (a CLC
    block on the Z path hands its output over group-major on small maps, see fast_input)."""
    nxt, _ = build_block({**stage, "stride": 1}, stage["out"], 8)
    in_order, out_order = preferred_order(block), preferred_order(nxt)
    if isinstance(block, ClcBlock) and z_crf(nxt) is not None:
        fused = FusedClc(block, in_order=in_order, out_order=out_order, next_crf=z_crf(nxt))
        return fused, in_order
    return fuse_block(block, in_order=in_order, out_order=out_order), in_order


def fast_input(block: nn.Module, stage: dict[str, Any], x: torch.Tensor, in_order: Any) -> Any:
    """What the fused block receives inside such a chain: channels_last in its preferred order,
    or, for a Z-path CLC block on a map the previous (same-kind) block hands over group-major,
    that hand-off."""
    crf = z_crf(block)
    b, _, h, w = x.shape
    if (
        crf is not None
        and b * h * w <= MERGED_Z_MAX_ROWS
        and (x.shape[1] // stage["g2"]) % crf == 0
    ):
        return handoff_layout(x, stage["g2"], crf)
    x_fast = x if in_order is None else x[:, in_order]
    return x_fast.contiguous(memory_format=torch.channels_last)


def impl_of(fused: nn.Module, batch: int, size: int) -> str:
    names = []
    for m in fused.modules():
        if isinstance(m, FusedConv | FusedHetConv):
            names.append(m.impl(batch, size, size))
        elif isinstance(m, FusedClc):
            out_size = -(-size // m.stride)
            handed = m.handoff is not None and batch * out_size**2 <= MERGED_Z_MAX_ROWS
            names.append(("z" if m.zpath else "grouped") + ("+handoff" if handed else ""))
    return ",".join(dict.fromkeys(names))  # unique, in order


def madds(block: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        block(x[:1])
    return counter.get_total_flops() // 2


def runner(module: nn.Module, x: torch.Tensor) -> Runner:
    def run() -> Any:
        with torch.inference_mode():
            return module(x)

    return Runner(run, x.shape[0], x.shape[-1], "torch-eager", False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30, help="timed rounds at batch 1 [30]")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} cores; medians of "
        f"interleaved rounds (ref, fast, baseline); load avg {os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'block @ input':44s} {'B':>3s} {'ref ms':>8s} {'fast ms':>8s} {'base ms':>8s} "
        f"{'fast/ref':>8s} {'fast/base':>9s} {'ref/base':>8s} {'MAdds/base':>10s}  fast path"
    )
    print(header)
    print("-" * len(header))
    worst = 0.0
    for batch in args.batches:
        repeats = max(5, args.repeats if batch == 1 else args.repeats // 3)
        for case in CASES:
            block, _ = build_block(case.stage, case.cin, case.size)
            fused, in_order = fused_form(block, case.stage, case.cin)
            x = torch.randn(batch, case.cin, case.size, case.size)
            x_fast = fast_input(block, case.stage, x, in_order)
            fast_runner = runner(fused, x_fast)
            vs_ref = compare_latency(
                {"ref": runner(block, x), "fast": fast_runner}, warmup=3, repeats=repeats
            )
            ref, fast = vs_ref["ref"].median_ms, vs_ref["fast"].median_ms
            worst = max(worst, fast / ref)
            if case.baseline is None:
                cells = [f"{case.label:44s} {batch:3d} {ref:8.3f} {fast:8.3f}"]
                cells.append(f"{'-':>8s} {fast / ref:8.2f} {'-':>9s} {'-':>8s} {'-':>10s}")
            else:
                base, _ = build_block(case.baseline, case.cin, case.size)
                base_runner = runner(
                    fuse_block(base), x.contiguous(memory_format=torch.channels_last)
                )
                vs_base = compare_latency(
                    {"fast": fast_runner, "base": base_runner}, warmup=3, repeats=repeats
                )
                fast_b, base_ms = vs_base["fast"].median_ms, vs_base["base"].median_ms
                cells = [f"{case.label:44s} {batch:3d} {ref:8.3f} {fast_b:8.3f}"]
                cells.append(
                    f"{base_ms:8.3f} {fast / ref:8.2f} {fast_b / base_ms:9.2f} "
                    f"{ref / fast * fast_b / base_ms:8.2f} {madds(block, x) / madds(base, x):10.2f}"
                )
            print(" ".join(cells) + f"  {impl_of(fused, batch, case.size)}", flush=True)
    print(f"\nworst fast/ref over the table: {worst:.2f} (acceptance: <= 1.00 everywhere)")
    print(f"load avg after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
