"""Every fused inference layer (`search_space/runtime/`) against the reference module it
replaces, with non-trivial BatchNorm statistics, for every implementation it can choose per shape
(each one forced in turn) and for permuted input/output channel orders. Each test runs twice: in
float64 (`F.conv2d` and MKL, exact to 1e-10) and in float32 with every convolution and GEMM
forced onto oneDNN's packed kernels (`kernels.Conv`/`kernels.Gemm`, to the 1e-5 contract)."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from search_space.arch import ClcStage, ConvClassifierHead, FCHead, HetConvStage
from search_space.blocks.clc import IGC, ClcBlock
from search_space.blocks.heads import ConvClassifier, FCClassifier
from search_space.blocks.hetconv import HetConvBlock
from search_space.blocks.layers import ChannelShuffle, ChannelWiseConv, ConvBNAct, SqueezeExcite
from search_space.runtime import clc as fused_clc
from search_space.runtime import conv as fused_conv
from search_space.runtime import hetconv as fused_het
from search_space.runtime import kernels
from search_space.runtime.clc import FusedClc, paired_order, wanted_order
from search_space.runtime.conv import FusedConv
from search_space.runtime.folding import Reorder
from search_space.runtime.hetconv import FusedHetConv, fuse_hetconv
from search_space.runtime.layers import (
    ChannelsLastShuffle,
    FusedBatchNorm,
    FusedChannelWise,
    FusedConvClassifier,
    FusedFCHead,
    FusedSqueezeExcite,
)
from search_space.runtime.network import fuse_chain
from search_space.runtime.onnx import DepthwiseIGC

TOL = 1e-10  # float64; the contract is 1e-5
DT = torch.float64
ONEDNN = False  # every convolution and GEMM forced onto oneDNN (float32 only)

PRECISIONS = {
    "float64": (torch.float64, 1e-10, False),
    "float32-onednn": (torch.float32, 1e-5, True),
}


@pytest.fixture(autouse=True, params=sorted(PRECISIONS))
def precision(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    dt, tol, onednn = PRECISIONS[request.param]
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "DT", dt)
    monkeypatch.setattr(this, "TOL", tol)
    monkeypatch.setattr(this, "ONEDNN", onednn)
    if onednn:
        monkeypatch.setattr(kernels, "ONEDNN_MIN_WEIGHTS", ((1, 0),))  # every GEMM
    return str(request.param)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def packed(module: nn.Module) -> int:
    """How many oneDNN kernels of `module` have run (packed their weights)."""
    return sum(
        len(m.packs) > 0 for m in module.modules() if isinstance(m, kernels.Conv | kernels.Gemm)
    )


def randomise_bn(module: nn.Module) -> nn.Module:
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d | nn.BatchNorm1d):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.normal_()
            bn.bias.data.normal_()
    return module.to(DT).eval()


def check(
    fused: nn.Module,
    reference: nn.Module,
    x: torch.Tensor,
    layout_checked: bool = True,
    onednn: bool = True,
    **perm: torch.Tensor,
) -> None:
    """`fused(x[:, in]) == reference(x)[:, out]`, output channels_last where it is a map."""
    x_in = x if perm.get("inp") is None else x[:, perm["inp"]]
    with torch.inference_mode():
        y = fused(x_in)
    with torch.no_grad():
        ref = reference(x)
    if perm.get("out") is not None:
        ref = ref[:, perm["out"]]
    assert y.shape == ref.shape
    assert (y - ref).abs().max().item() < TOL * max(1.0, ref.abs().max().item())
    if y.dim() == 4 and y.shape[1] > 1 and y.shape[2] * y.shape[3] > 1 and layout_checked:
        assert y.is_contiguous(memory_format=torch.channels_last)
    if (
        ONEDNN
        and onednn
        and any(isinstance(m, kernels.Conv | kernels.Gemm) for m in fused.modules())
    ):
        assert packed(fused) > 0, "no oneDNN kernel ran"


def force(monkeypatch: pytest.MonkeyPatch, module: object, **limits: int) -> None:
    for name, value in limits.items():
        monkeypatch.setattr(module, name, value)


HUGE = 10**9

CONV_IMPLS = {
    "conv": {"GEMM_MAX_PIXELS": 0, "GROUPED_GEMM_MAX_PIXELS": 0, "IM2COL_MAX_ROWS": 0},
    "gemm": {"GEMM_MAX_PIXELS": HUGE, "GROUPED_GEMM_MAX_PIXELS": HUGE, "IM2COL_MAX_ROWS": 0},
    "im2col": {"GEMM_MAX_PIXELS": 0, "GROUPED_GEMM_MAX_PIXELS": 0, "IM2COL_MAX_ROWS": HUGE},
}

CONV_CASES = [
    # cin, cout, kernel, stride, groups, act
    (8, 16, 1, 1, 1, "relu"),
    (8, 16, 1, 1, 2, "relu6"),
    (12, 6, 1, 1, 3, "none"),
    (8, 16, 3, 1, 1, "relu"),
    (8, 16, 3, 2, 1, "relu6"),
    (8, 16, 3, 2, 2, "none"),
    (8, 8, 3, 1, 8, "relu"),  # depthwise
    (8, 8, 5, 2, 8, "relu6"),
    (3, 8, 3, 2, 1, "relu"),  # a stem
    (8, 16, (1, 3), 1, 1, "relu"),  # EffNet's separable kernels
    (8, 8, (3, 1), (2, 1), 8, "relu"),
]


@pytest.mark.parametrize("impl", sorted(CONV_IMPLS))
@pytest.mark.parametrize(("cin", "cout", "kernel", "stride", "groups", "act"), CONV_CASES)
def test_fused_conv_equals_conv_bn_act(monkeypatch, impl, cin, cout, kernel, stride, groups, act):
    force(monkeypatch, fused_conv, **CONV_IMPLS[impl])
    ref = randomise_bn(ConvBNAct(cin, cout, kernel=kernel, stride=stride, groups=groups, act=act))
    x = torch.randn(2, cin, 9, 7, dtype=DT)
    fused = FusedConv.from_conv_bn_act(ref)
    check(fused, ref, x)
    if groups == 1:  # dense convolutions fold channel permutations into their weights
        pin, pout = torch.randperm(cin), torch.randperm(cout)
        check(
            FusedConv.from_conv_bn_act(ref, in_order=pin, out_order=pout), ref, x, inp=pin, out=pout
        )


def test_fused_conv_chooses_per_shape() -> None:
    dense_1x1 = FusedConv.from_conv_bn_act(ConvBNAct(8, 8).eval())
    assert dense_1x1.impl(1, 14, 14) == "gemm" and dense_1x1.impl(1, 56, 56) == "conv"
    grouped_1x1 = FusedConv.from_conv_bn_act(ConvBNAct(8, 8, groups=2).eval())
    assert grouped_1x1.impl(1, 14, 14) == "gemm" and grouped_1x1.impl(1, 28, 28) == "conv"
    dense_3x3 = FusedConv.from_conv_bn_act(ConvBNAct(8, 8, kernel=3).eval())
    assert dense_3x3.impl(1, 8, 8) == "conv"  # float32: the packed oneDNN convolution
    assert dense_3x3.impl(1, 8, 8, torch.float64) == "im2col"  # no oneDNN in float64
    assert dense_3x3.impl(1, 16, 16, torch.float64) == "conv"
    assert dense_3x3.impl(32, 8, 8, torch.float64) == "conv"  # many rows: not weight-bound
    depthwise = FusedConv.from_conv_bn_act(ConvBNAct(8, 8, kernel=3, groups=8).eval())
    assert depthwise.impl(1, 2, 2) == "conv"


def test_grouped_conv_refuses_a_channel_order() -> None:
    ref = ConvBNAct(8, 8, groups=2).eval()
    with pytest.raises(ValueError, match="natural channel order"):
        FusedConv.from_conv_bn_act(ref, out_order=torch.randperm(8))


# -- clcNet ---------------------------------------------------------------------------------

CLC_CASES = [
    # cin, cout, g1, g2, mid, stride, interlace
    (32, 64, 16, 2, None, 1, True),  # clcNet-A's first block: CRF 2
    (32, 32, 16, 2, None, 2, True),
    (16, 32, 4, 4, None, 2, True),  # CRF 4
    (12, 12, 3, 2, None, 1, True),  # CRF 4
    (24, 32, 8, 2, None, 1, True),  # CRF 3: GC groups straddle IGC output blocks
    (16, 32, 8, 1, None, 1, True),  # g2 = 1: one GEMM over both blocks (K split)
    (32, 32, 4, 8, None, 1, True),  # CRF 8: grouped-conv path
    (8, 16, 2, 2, 16, 1, True),  # mid != in, r = 8: grouped-conv path
    (16, 16, 8, 2, None, 2, False),  # clcNet-Ap: no interlace; GC reads every block
    (16, 16, 16, 2, None, 1, False),  # no interlace, r = 1
]

CLC_PATHS = {
    # the depthwise ("Z") path is exercised up to CRF 8, beyond where it is chosen by default
    "z-merged": {"MERGED_Z_MAX_ROWS": HUGE, "Z_MAX_CRF": 8, "Z_MAX_OUT": 8},
    "z-separate": {"MERGED_Z_MAX_ROWS": 0, "Z_MAX_CRF": 8, "Z_MAX_OUT": 8},
    "grouped": {"Z_MAX_CRF": 0},
}


def clc_block(cin, cout, g1, g2, mid, stride, interlace) -> ClcBlock:
    spec = ClcStage(block="clc", out=cout, g1=g1, g2=g2, mid=mid, interlace=interlace)
    return randomise_bn(ClcBlock(spec, cin=cin, cout=cout, stride=stride, first=True))


@pytest.mark.parametrize("path", sorted(CLC_PATHS))
@pytest.mark.parametrize(("cin", "cout", "g1", "g2", "mid", "stride", "interlace"), CLC_CASES)
def test_fused_clc_equals_clc_block(monkeypatch, path, cin, cout, g1, g2, mid, stride, interlace):
    force(monkeypatch, fused_clc, **CLC_PATHS[path])
    ref = clc_block(cin, cout, g1, g2, mid, stride, interlace)
    x = torch.randn(2, cin, 9, 8, dtype=DT)
    check(FusedClc(ref), ref, x)
    # Input in the order the fast IGC reads, output in the next block's pairing or any order.
    pin = wanted_order(ref)
    for pout in (paired_order(cout, 2), torch.randperm(cout)):
        check(FusedClc(ref, in_order=pin, out_order=pout), ref, x, inp=pin, out=pout)
    pin = torch.randperm(cin)  # anything else is reordered on the way in
    check(FusedClc(ref, in_order=pin), ref, x, inp=pin)


HANDOFF_CASES = [
    # (cin, cout, g1, g2, mid, stride, interlace) of the first block, then of the second
    ((16, 32, 8, 2, None, 1, True), (32, 32, 16, 2, None, 1, True)),  # clcNet-A's pattern
    ((16, 32, 8, 2, None, 2, True), (32, 64, 16, 2, None, 1, True)),  # stride 2 into CRF 2
    ((16, 32, 8, 4, None, 1, True), (32, 32, 16, 2, None, 1, True)),  # g2 = 4
    ((24, 32, 8, 2, None, 1, True), (32, 32, 16, 2, None, 1, True)),  # CRF 3: split pieces
    ((16, 32, 8, 1, None, 1, True), (32, 32, 16, 2, None, 1, True)),  # g2 = 1
    ((16, 16, 8, 2, None, 1, False), (16, 16, 8, 2, None, 1, False)),  # clcNet-Ap: K split
    ((8, 16, 2, 2, 16, 1, True), (16, 32, 8, 2, None, 1, True)),  # grouped-conv IGC first
    ((16, 32, 8, 2, None, 1, True), (32, 32, 8, 2, None, 1, True)),  # CRF 4: no hand-off
]

HANDOFF_LIMITS = {
    "handed-off": {"MERGED_Z_MAX_ROWS": HUGE},
    "rows": {"MERGED_Z_MAX_ROWS": 0},
    "rows-in-handed-off-out": {"MERGED_Z_MAX_ROWS": 2 * 5 * 4},  # only after stride 2
}


@pytest.mark.parametrize("limits", sorted(HANDOFF_LIMITS))
@pytest.mark.parametrize(("first", "second"), HANDOFF_CASES)
def test_clc_blocks_hand_over_group_major(monkeypatch, limits, first, second):
    """Two CLC blocks fused as a chain (the second on the Z path or not), then an FC head: the
    group-major hand-off between them and into the head computes the reference function for
    every GC layout, and is used when the successor takes its input on the merged Z path."""
    force(monkeypatch, fused_clc, **HANDOFF_LIMITS[limits])
    head = randomise_bn(FCClassifier(FCHead(type="fc"), channels=second[1], size=4, num_classes=5))
    units = [clc_block(*first), clc_block(*second), head]
    chain = fuse_chain(units)
    x = torch.randn(2, first[0], 9, 8, dtype=DT)
    check(chain, nn.Sequential(*units).eval(), x)
    stride = first[5]
    pixels = 2 * -(-9 // stride) * -(-8 // stride)  # B * Ho * Wo of the first block
    small = pixels <= fused_clc.MERGED_Z_MAX_ROWS
    to_z = fused_clc.z_crf(units[1]) is not None
    with torch.inference_mode():
        mid = chain[0](x)
        last = chain[1](mid)
    assert mid.dim() == (5 if to_z and small else 4)
    assert last.dim() == (5 if small else 4)  # the head pools: always a hand-off on small maps
    if mid.dim() == 5:  # (g2, B, H, W, N/g2): contiguous from MKL, pixel-major from oneDNN
        assert mid.shape[0] == first[3] and mid.stride(4) == 1
        pixel_major = mid.stride(0) == mid.shape[4] and mid.stride(3) == first[1]
        assert mid.is_contiguous() or pixel_major
        if ONEDNN and limits == "handed-off" and (first, second) == HANDOFF_CASES[0]:
            assert pixel_major  # one packed grouped 1x1 convolution wrote it


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_handoff_layout_is_what_a_z_path_block_reads(groups):
    """`handoff_layout` (used by the block benchmark) builds the hand-off a predecessor with
    `groups` GC groups writes: the block computes the reference function on it."""
    ref = clc_block(32, 32, 16, 2, None, 1, True)
    x = torch.randn(2, 32, 5, 4, dtype=DT)
    fused = FusedClc(ref, in_order=wanted_order(ref))
    with torch.inference_mode():
        y = fused(fused_clc.handoff_layout(x, groups, 2))
    with torch.no_grad():
        expected = ref(x)
    assert (y - expected).abs().max().item() < TOL * max(1.0, expected.abs().max().item())


def test_paired_order_formula() -> None:
    """Position `t*g1 + i` holds channel `i*c + t`."""
    order = paired_order(12, 3)
    g1 = 4
    for i in range(g1):
        for t in range(3):
            assert order[t * g1 + i] == i * 3 + t


@pytest.mark.parametrize(("cin", "mid", "g1", "stride", "interlace"), [
    (8, 8, 4, 1, True), (8, 8, 2, 2, True), (12, 12, 3, 1, True), (8, 16, 4, 1, True),
    (8, 8, 4, 2, False), (8, 8, 8, 1, True),
])  # fmt: skip
def test_depthwise_igc_equals_igc_with_gradients(cin, mid, g1, stride, interlace):
    """The ONNX form of the IGC: same function, and (trained through) the same input gradient."""
    igc = IGC(cin, mid, groups=g1, stride=stride, interlace=interlace).to(DT)
    dw = DepthwiseIGC(igc)
    x = torch.randn(2, cin, 9, 9, dtype=DT, requires_grad=True)
    y_ref, y = igc(x), dw(x)
    assert (y - y_ref).abs().max().item() < TOL
    (g_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    (g,) = torch.autograd.grad(y.square().sum(), x)
    assert (g - g_ref).abs().max().item() < TOL


# -- HetConv --------------------------------------------------------------------------------

HET_CASES = [
    # cin, cout, part, kernel, stride, bias
    (8, 16, 4, 3, 1, True),
    (8, 16, 2, 3, 2, False),
    (8, 8, 8, 3, 1, True),  # part = in
    (16, 8, 4, 5, 2, True),
    (12, 6, 3, 3, 1, False),
]


HET_IMPLS = {
    "conv+gemm": {"IM2COL_MAX_ROWS": 0, "GEMM_MIN_GROUP_OUT": 0},
    "im2col": {"IM2COL_MAX_ROWS": HUGE, "GEMM_MIN_GROUP_OUT": 0},
    "nchw": {"GEMM_MIN_GROUP_OUT": HUGE},
}


@pytest.mark.parametrize("impl", sorted(HET_IMPLS))
@pytest.mark.parametrize(("cin", "cout", "part", "kernel", "stride", "bias"), HET_CASES)
def test_fused_hetconv_equals_hetconv_block(
    monkeypatch, impl, cin, cout, part, kernel, stride, bias
):
    force(monkeypatch, fused_het, **HET_IMPLS[impl])
    spec = HetConvStage(block="hetconv", out=cout, part=part, kernel=kernel, bias=bias)
    ref = randomise_bn(HetConvBlock(spec, cin=cin, cout=cout, stride=stride, first=True))
    fused = FusedHetConv(ref)
    if impl == "nchw" and part == cin:
        assert fused.impl(2, 9, 7) == "conv+gemm"  # depthwise kxk part: never NCHW
        return
    assert fused.impl(2, 9, 7) == impl
    nchw = impl == "nchw"  # the reference structure on F.conv2d: no packed kernel
    check(fused, ref, torch.randn(2, cin, 9, 7, dtype=DT), layout_checked=not nchw, onednn=not nchw)


def test_hetconv_part_one_is_the_plain_fused_conv() -> None:
    spec = HetConvStage(block="hetconv", out=16, part=1, bias=True)
    ref = randomise_bn(HetConvBlock(spec, cin=8, cout=16, stride=1, first=True))
    fused = fuse_hetconv(ref)
    assert isinstance(fused, FusedConv)
    check(fused, ref, torch.randn(2, 8, 6, 6, dtype=DT))


# -- ChannelNets, ANTNets, ShuffleNet, heads ------------------------------------------------


@pytest.mark.parametrize(("channels", "dc", "kernels", "cw_stride"), [
    (16, 8, 2, 2), (16, 3, 1, 1), (16, 4, 4, 4), (8, 8, 4, 1), (32, 4, 1, 4), (32, 2, 1, 4),
])  # fmt: skip
def test_fused_channel_wise_conv(channels, dc, kernels, cw_stride):
    ref = ChannelWiseConv(channels, cw_kernel=dc, kernels=kernels, cw_stride=cw_stride).to(DT)
    check(FusedChannelWise(ref), ref, torch.randn(2, channels, 5, 4, dtype=DT))


@pytest.mark.parametrize(("channels", "ratio"), [(16, 4), (24, 8), (8, 16)])
def test_fused_squeeze_excite(channels, ratio):
    ref = SqueezeExcite(channels, se_ratio=ratio).to(DT).eval()
    check(FusedSqueezeExcite(ref), ref, torch.randn(2, channels, 5, 5, dtype=DT))


@pytest.mark.parametrize(("channels", "groups"), [(12, 3), (16, 4), (8, 1)])
def test_channels_last_shuffle(channels, groups):
    ref = ChannelShuffle(groups)
    check(ChannelsLastShuffle(ref), ref, torch.randn(2, channels, 3, 4, dtype=DT))


def test_fused_batch_norm():
    ref = randomise_bn(nn.BatchNorm2d(8))
    check(FusedBatchNorm(ref), ref, torch.randn(2, 8, 3, 3, dtype=DT))


@pytest.mark.parametrize("permuted", [False, True])
@pytest.mark.parametrize(
    ("conv_out", "hidden"), [(None, []), (32, []), (None, [12, 10]), (32, [6])]
)
def test_fused_fc_head(conv_out, hidden, permuted):
    spec = FCHead(type="fc", conv_out=conv_out, hidden=hidden)
    ref = randomise_bn(FCClassifier(spec, channels=16, size=3, num_classes=7))
    pin = torch.randperm(16) if permuted else None
    check(FusedFCHead(ref, in_order=pin), ref, torch.randn(2, 16, 3, 3, dtype=DT), inp=pin)


@pytest.mark.parametrize(("channels", "classes", "size"), [(16, 10, 1), (16, 10, 4), (7, 3, 5)])
def test_fused_conv_classifier(channels, classes, size):
    spec = ConvClassifierHead(type="conv_classifier")
    ref = ConvClassifier(spec, channels=channels, size=size, num_classes=classes).to(DT)
    check(FusedConvClassifier(ref), ref, torch.randn(2, channels, size, size, dtype=DT))


def test_reorder_between_orders():
    src, dst = torch.randperm(10), torch.randperm(10)
    x = torch.randn(2, 10, 3, 3, dtype=DT)
    with torch.inference_mode():
        assert torch.equal(Reorder(src, dst, 10)(x[:, src]), x[:, dst])
        assert torch.equal(Reorder(src, None, 10)(x[:, src]), x)
