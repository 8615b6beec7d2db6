"""The analytic cost model equals fvcore's count of the built module exactly (docs/design.md §3) on
every
zoo model and on random archs covering every block type, and reproduces the papers' numbers
(docs/design.md §7)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from objectives.cost import cost_report
from objectives.fvcore_count import fvcore_counts
from search_space import Arch, ArchError, build_model, load_arch, zoo_names
from search_space.arch import BLOCK_TYPES, HEAD_TYPES, DwsCWStage
from tests.objectives.random_archs import random_arch

RANDOM_SEEDS = range(300)
ZOO = zoo_names()


def _zoo(name: str) -> Arch:
    if name not in ZOO:
        pytest.skip(f"zoo model {name} is not in search_space/zoo yet")
    return load_arch(name)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


# -- exact agreement with fvcore -----------------------------------------------------------


@pytest.mark.parametrize(
    "name", ZOO or [pytest.param("", marks=pytest.mark.skip(reason="the zoo is empty"))]
)
def test_zoo_matches_fvcore(name: str) -> None:
    report = cost_report(name)
    assert (report.madds, report.params) == fvcore_counts(name)


@pytest.mark.parametrize("seed", RANDOM_SEEDS)
def test_random_arch_matches_fvcore(seed: int) -> None:
    arch = random_arch(random.Random(seed))
    report = cost_report(arch)
    assert (report.madds, report.params) == fvcore_counts(arch), arch.to_json(indent=None)

    # Row by row too, so two errors cannot cancel: each row's params are its module's.
    model = build_model(arch)
    blocks = [
        b
        for stage in model.stages.children()
        for b in stage.children()
        if not isinstance(b, nn.MaxPool2d)
    ]
    modules = [model.stem] * (arch.stem is not None) + blocks + [model.head]
    assert [r.params for r in report.blocks] == [_params(m) for m in modules]


def _features(arch: Arch) -> set[str]:
    """What a random arch exercises, for the coverage check."""
    found = {f"block:{s.block}" for s in arch.stages} | {f"head:{arch.head.type}"}
    found.add("stem:pool" if arch.stem and arch.stem.pool else "stem:none" if not arch.stem else "")
    head = arch.head
    if head.type == "fc":
        found |= {"fc:conv_out"} if head.conv_out else set()
        found |= {"fc:hidden"} if head.hidden else set()
        found |= {"fc:plain"} if not (head.conv_out or head.hidden) else set()
    for p in arch.blocks():
        s = p.spec
        found |= {"stage:pool"} if s.pool else set()
        found |= {f"{p.block}:kernel5"} if getattr(s, "kernel", 3) == 5 else set()
        found |= {f"{p.block}:stride2"} if p.stride == 2 else set()
        found |= {f"{p.block}:bias"} if getattr(s, "bias", False) else set()
        checks = {
            "hetconv:part_in": p.block == "hetconv" and s.part == "in",
            "mbconv:expand1": p.block == "mbconv" and s.expand == 1,
            "ant:expand1": p.block == "ant" and s.expand == 1,
            "ant:groups": p.block == "ant" and s.groups > 1,
            "eant:ensemble": p.block == "eant" and len(s.groups) > 1,
            "clc:no_interlace": p.block == "clc" and not s.interlace,
            "clc:mid": p.block == "clc" and s.mid not in (None, p.cin),
            "gcwm:cw_kernel<groups": p.block == "gcwm" and s.cw_kernel < s.groups,
            "dwscw:widen": isinstance(s, DwsCWStage) and p.cout > p.cin,
            "dwscw:narrow": isinstance(s, DwsCWStage) and p.cout < p.cin,
            "shuffle:stride1": p.block == "shuffle" and p.stride == 1,
            "shuffle:in_groups": p.block == "shuffle" and p.first and s.in_groups != s.groups,
            "effnet:bottleneck": p.block == "effnet" and s.bottleneck is not None,
            "dws:bare_dw": p.block == "dws" and not s.dw_bn_act,
        }
        found |= {name for name, hit in checks.items() if hit}
    return found - {""}


def test_random_archs_cover_every_option() -> None:
    found = set().union(*(_features(random_arch(random.Random(s))) for s in RANDOM_SEEDS))
    expected = (
        {f"block:{b}" for b in BLOCK_TYPES}
        | {f"head:{h}" for h in HEAD_TYPES}
        | {
            "stem:pool",
            "stem:none",
            "stage:pool",
            "fc:conv_out",
            "fc:hidden",
            "fc:plain",
            "conv:bias",
            "hetconv:bias",
            "hetconv:part_in",
            "hetconv:kernel5",
            "mbconv:expand1",
            "ant:expand1",
            "ant:groups",
            "eant:ensemble",
            "clc:no_interlace",
            "clc:mid",
            "gcwm:cw_kernel<groups",
            "dwscw:widen",
            "dwscw:narrow",
            "shuffle:stride1",
            "shuffle:stride2",
            "shuffle:in_groups",
            "effnet:stride2",
            "effnet:bottleneck",
            "effnet:kernel5",
            "dws:kernel5",
            "dws:bare_dw",
        }
    )
    assert expected <= found, sorted(expected - found)


# -- the papers' numbers (docs/design.md §7)
# ---------------------------------------------------------


def test_mobilenet_v2_matches_paper() -> None:
    report = cost_report(_zoo("mobilenet_v2"))
    assert report.madds == 300_774_272  # MobileNetV2 paper: 300M; torchvision: 300.77M
    assert report.params == 3_504_872


def test_clcnet_a_matches_paper() -> None:
    report = cost_report(_zoo("clcnet_a"))
    assert report.madds == 342_973_440  # docs/design.md §3: 342.97M
    assert report.params == 3_253_640
    assert report.madds == pytest.approx(343e6, rel=0.005)  # clcNet Table 5
    assert report.params == pytest.approx(3.25e6, rel=0.005)
    assert report.fcrf


def _dws(cin: int, cout: int, side: int) -> tuple[int, int]:
    """(MAdds, params) of a ChannelNets depthwise separable layer: bare dw 3x3, 1x1 + BN."""
    return side * side * (9 * cin + cin * cout), 9 * cin + cin * cout + 2 * cout


def _gm(c: int, g: int, side: int, cw_kernel: int = 0) -> tuple[int, int]:
    """GM `c -> c`: two (bare dw 3x3, group 1x1 + BN) layers (docs/design.md §1.4); with
    `cw_kernel` the GCWM, whose group channel-wise conv has `g` kernels of `dc` weights."""
    weights = 9 * c + c * c // g
    madds = 2 * side * side * weights + side * side * cw_kernel * c
    return madds, 2 * (weights + 2 * c) + g * cw_kernel


def test_channelnet_v1_from_the_formulas() -> None:
    """ChannelNet-v1 (Gao et al. 2018, Table 3) counted layer by layer from docs/design.md §1.4
    and §3: MobileNetV1 whose 512-channel layers are 2 GCWMs + 1 GM (g = 2, dc = 8), with no BN
    or activation after any depthwise conv. The paper reports 407M MAdds; counted this way (and
    by the authors' code) it is ~468M."""
    stem = (112 * 112 * 32 * 27, 32 * 27 + 2 * 32)
    layers = [
        _dws(32, 64, 112),
        _dws(64, 128, 56),
        _dws(128, 128, 56),
        _dws(128, 256, 28),
        _dws(256, 256, 28),
        _dws(256, 512, 14),
        _gm(512, 2, 14, cw_kernel=8),
        _gm(512, 2, 14, cw_kernel=8),
        _gm(512, 2, 14),
        _dws(512, 1024, 7),
        _dws(1024, 1024, 7),
    ]
    head = (1024 * 1000, 1024 * 1000 + 1000)
    madds = sum(m for m, _ in [stem, *layers, head])
    params = sum(p for _, p in [stem, *layers, head])
    report = cost_report(_zoo("channelnet_v1"))
    assert (report.madds, report.params) == (madds, params)
    assert report.madds == pytest.approx(468.5e6, rel=0.001)  # not the paper's 407M


def test_effnet_block_matches_the_papers_formula() -> None:
    """EffNet (Freeman et al. 2018; docs/design.md §1.6), worked example: Df = 32, M = 32
    bottleneck channels, k = 3, 16 -> 64 channels, stride 2. The separable pool halves the map
    before the 3x1 depthwise, so the depthwise part is `3*Df^2*M + 3*(Df^2/2)*M`; the 1x1 runs on
    the input map and the 2x1 stride-1x2 conv on the `Df/2 x Df/2` output."""
    df, m, cin, n = 32, 32, 16, 64
    depthwise = 3 * df**2 * m + 3 * (df**2 // 2) * m
    assert depthwise == 147_456
    block_madds = df**2 * cin * m + depthwise + (df // 2) ** 2 * 2 * m * n
    arch = load_arch(
        {
            "format": "clnas.arch/1",
            "num_classes": 10,
            "resolution": df,
            "in_channels": cin,
            "stages": [{"block": "effnet", "out": n, "stride": 2, "bottleneck": m}],
            "head": {"type": "fc"},
        }
    )
    row = cost_report(arch).blocks[0]
    assert (row.size_in, row.size_out) == (df, df // 2)
    assert row.madds == block_madds
    assert cost_report(arch).madds == block_madds + n * 10 == fvcore_counts(arch)[0]

    # The depthwise convs of the built block, counted from their outputs: kernel 3, one input
    # channel per output channel.
    counted: list[int] = []
    model = build_model(arch).eval()
    for conv in model.modules():
        if isinstance(conv, nn.Conv2d) and conv.groups > 1:
            conv.register_forward_hook(lambda _m, _x, y: counted.append(3 * y.numel()))
    model(torch.randn(1, cin, df, df))
    assert sum(counted) == depthwise


# VGG-16 for CIFAR: 13 convs with bias, (channels, map side) per layer (HetConv Sec. 4.1).
VGG16_CIFAR = [(64, 32)] * 2 + [(128, 16)] * 2 + [(256, 8)] * 3 + [(512, 4)] * 3 + [(512, 2)] * 3


@pytest.mark.parametrize(
    ("name", "paper_flops", "paper_params"),
    [("hetconv_vgg16_p1", 313.74e6, 15.00e6), ("hetconv_vgg16_p4", 105.98e6, 5.17e6)],
)
def test_hetconv_vgg16_matches_paper(name: str, paper_flops: float, paper_params: float) -> None:
    """HetConv Table 1 counts FLOPs as multiply-adds plus one addition per conv bias per output
    element (276,480 for VGG-16 on 32x32 inputs), so compare `madds + conv_bias_adds`."""
    report = cost_report(_zoo(name))
    assert report.conv_bias_adds == sum(c * side * side for c, side in VGG16_CIFAR)
    assert report.madds + report.conv_bias_adds == pytest.approx(paper_flops, rel=0.01)
    assert report.params == pytest.approx(paper_params, rel=0.01)


# -- the report ----------------------------------------------------------------------------


def test_report_rows_add_up_and_serialise() -> None:
    arch = random_arch(random.Random(7))
    report = cost_report(arch)
    assert report.madds == sum(r.madds for r in report.blocks)
    assert report.params == sum(r.params for r in report.blocks)
    names = [r.name for r in report.blocks]
    assert names[-1] == "head"
    assert names[: arch.stem is not None] == ["stem"] * (arch.stem is not None)
    block_rows = [r for r in report.blocks if r.stage is not None]
    assert len(report.stages) == len(arch.stages)
    for stage in report.stages:
        rows = [r for r in block_rows if r.stage == stage.stage]
        assert stage.madds == sum(r.madds for r in rows)
        assert stage.params == sum(r.params for r in rows)
        assert len(rows) == stage.blocks
        assert stage.crf_min_fraction == min(r.crf_min_fraction for r in rows)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["madds"] == report.madds and d["blocks"][-1]["out"] == arch.num_classes
    assert {"in", "out", "size_in", "size_out", "crf_min_fraction"} <= set(d["blocks"][0])


def test_loads_every_form_of_arch(tmp_path: Path) -> None:
    arch = random_arch(random.Random(3))
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json())
    expected = cost_report(arch)
    for form in (arch.to_dict(), path, str(path)):
        assert cost_report(form) == expected


def test_overrides_change_the_cost_and_are_validated() -> None:
    arch = random_arch(random.Random(11))
    report = cost_report(arch, resolution=64, num_classes=10)
    assert (report.resolution, report.num_classes) == (64, 10)
    assert report == cost_report(arch.with_changes(resolution=64, num_classes=10))
    assert (report.madds, report.params) == fvcore_counts(arch, resolution=64, num_classes=10)
    assert cost_report(arch, resolution=arch.resolution) == cost_report(arch)

    narrow = next(
        a
        for a in (random_arch(random.Random(s)) for s in RANDOM_SEEDS)
        if a.head.type == "conv_classifier"
    )
    with pytest.raises(ArchError) as err:
        cost_report(narrow, num_classes=1000)  # the conv classifier needs M >= n
    assert err.value.paths == ["head.type"]
    with pytest.raises(ArchError) as err:
        cost_report(arch, resolution=4)
    assert err.value.paths == ["resolution"]


def test_crf_fractions_and_fcrf() -> None:
    if not {"clcnet_a", "clcnet_ap", "channelnet_v3"} <= set(ZOO):
        pytest.skip("clcnet_a, clcnet_ap and channelnet_v3 are not in the zoo yet")
    assert cost_report("clcnet_a").fcrf
    # plain GC instead of IGC: same cost, no FCRF (docs/design.md §1.2)
    ap = cost_report("clcnet_ap")
    assert not ap.fcrf
    assert (ap.madds, ap.params) == (cost_report("clcnet_a").madds, cost_report("clcnet_a").params)
    assert any(0 < r.crf_min_fraction < 1 for r in ap.blocks)
    head = cost_report("channelnet_v3").blocks[-1]
    # Logit j of the conv classifier reads channels j .. j + M - n (docs/design.md §1.4).
    assert head.crf_min_fraction == head.crf_mean_fraction == (head.cin - 1000 + 1) / head.cin
