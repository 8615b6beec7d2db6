"""Parameter count of every block type and head equals its docs/design.md §1 formula, written out
here.

Conventions (docs/design.md §3): every trainable parameter counts; a BatchNorm adds 2 per channel;
convs
have no bias unless the spec asks; SE FCs carry biases with hidden width `max(1, C // r)`.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from search_space.arch import (
    AntStage,
    ClcStage,
    ConvClassifierHead,
    ConvStage,
    DwsCWStage,
    DwsStage,
    EAntStage,
    EffNetStage,
    FCHead,
    GCWMStage,
    GMStage,
    HetConvStage,
    MBConvStage,
    ShuffleStage,
    conv_out_size,
)
from search_space.blocks import BLOCKS, HEADS


def bn(c: int) -> int:
    return 2 * c


def conv(cin: int, cout: int, k: int = 1, groups: int = 1) -> int:
    return cout * (cin // groups) * k * k


def se(c: int, r: int) -> int:
    hidden = max(1, c // r)
    return c * hidden + hidden + hidden * c + c


def ant_branch(m: int, n: int, t: int, r: int, g: int, k: int) -> int:
    hidden = t * m
    expand = conv(m, hidden) + bn(hidden) if t > 1 else 0
    dw = k * k * hidden + bn(hidden)
    return expand + dw + se(hidden, r) + conv(hidden, n, groups=g) + bn(n)


def group_dws_pair(m: int, n: int, g: int, k: int) -> int:
    # ChannelNets §4.2: no BN (or activation) after either depthwise conv.
    return k * k * m + conv(m, n, groups=g) + bn(n) + k * k * n + conv(n, n, groups=g) + bn(n)


# (spec, cin, cout, stride, first, expected params)
CASES = [
    # conv: k*k*M*N (+ N bias) + BN
    (ConvStage(block="conv", out=16), 3, 16, 1, True, conv(3, 16, 3) + bn(16)),
    (
        ConvStage(block="conv", out=32, kernel=5, bias=True),
        16,
        32,
        2,
        True,
        conv(16, 32, 5) + 32 + bn(32),
    ),
    (ConvStage(block="conv", out=8, kernel=1), 8, 8, 1, False, conv(8, 8) + bn(8)),
    # hetconv: N*(M/P*k*k + M - M/P) (+ N bias) + BN
    (
        HetConvStage(block="hetconv", out=32, part=4),
        16,
        32,
        1,
        True,
        32 * (16 // 4 * 9 + 16 - 16 // 4) + bn(32),
    ),
    (
        HetConvStage(block="hetconv", out=64, part=8, kernel=5, bias=True),
        32,
        64,
        2,
        True,
        64 * (32 // 8 * 25 + 32 - 32 // 8) + 64 + bn(64),
    ),
    (
        HetConvStage(block="hetconv", out=16, part="in"),
        16,
        16,
        1,
        True,
        16 * (1 * 9 + 16 - 1) + bn(16),
    ),
    (HetConvStage(block="hetconv", out=16, part=1), 8, 16, 1, True, 16 * 8 * 9 + bn(16)),
    # dws: depthwise kxk + BN, pointwise + BN
    (DwsStage(block="dws", out=64), 32, 64, 2, True, 9 * 32 + bn(32) + conv(32, 64) + bn(64)),
    # dws as ChannelNets uses it: no BN after the depthwise conv
    (
        DwsStage(block="dws", out=64, dw_bn_act=False),
        32,
        64,
        2,
        True,
        9 * 32 + conv(32, 64) + bn(64),
    ),
    (
        DwsStage(block="dws", out=16, kernel=5),
        16,
        16,
        1,
        True,
        25 * 16 + bn(16) + conv(16, 16) + bn(16),
    ),
    # mbconv: expand (t > 1) + BN, depthwise + BN, projection + BN
    (
        MBConvStage(block="mbconv", out=16, expand=1),
        32,
        16,
        1,
        True,
        9 * 32 + bn(32) + conv(32, 16) + bn(16),
    ),
    (
        MBConvStage(block="mbconv", out=24, expand=6),
        16,
        24,
        2,
        True,
        conv(16, 96) + bn(96) + 9 * 96 + bn(96) + conv(96, 24) + bn(24),
    ),
    (
        MBConvStage(block="mbconv", out=24, expand=6, kernel=5),
        24,
        24,
        1,
        False,
        conv(24, 144) + bn(144) + 25 * 144 + bn(144) + conv(144, 24) + bn(24),
    ),
    # clc: IGC k*k*(M/g1)*L + BN(L), GC (L/g2)*N + BN(N)
    (
        ClcStage(block="clc", out=64, g1=16, g2=2),
        32,
        64,
        1,
        True,
        conv(32, 32, 3, 16) + bn(32) + conv(32, 64, groups=2) + bn(64),
    ),
    (
        ClcStage(block="clc", out=128, g1=32, g2=2),
        64,
        128,
        2,
        True,
        conv(64, 64, 3, 32) + bn(64) + conv(64, 128, groups=2) + bn(128),
    ),
    (
        ClcStage(block="clc", out=64, g1=4, g2=4, mid=64),
        32,
        64,
        1,
        True,
        conv(32, 64, 3, 4) + bn(64) + conv(64, 64, groups=4) + bn(64),
    ),
    (
        ClcStage(block="clc", out=64, g1=8, g2=2, interlace=False),
        64,
        64,
        1,
        False,
        conv(64, 64, 3, 8) + bn(64) + conv(64, 64, groups=2) + bn(64),
    ),
    # ant: expand + dw + SE (biases, hidden max(1, C // r)) + group projection + BN
    (
        AntStage(block="ant", out=24, expand=6, se_ratio=8),
        16,
        24,
        2,
        True,
        ant_branch(16, 24, 6, 8, 1, 3),
    ),
    (
        AntStage(block="ant", out=24, expand=6, se_ratio=12, groups=2),
        24,
        24,
        1,
        False,
        ant_branch(24, 24, 6, 12, 2, 3),
    ),
    (
        AntStage(block="ant", out=16, expand=1, se_ratio=4, groups=2, kernel=5),
        16,
        16,
        1,
        True,
        ant_branch(16, 16, 1, 4, 2, 5),
    ),
    (
        AntStage(block="ant", out=8, expand=1, se_ratio=16),
        8,
        8,
        1,
        True,
        ant_branch(8, 8, 1, 16, 1, 3),
    ),
    # eant: K ANT branches + K alpha logits
    (
        EAntStage(block="eant", out=32, expand=6, se_ratio=8, groups=[1, 2]),
        16,
        32,
        2,
        True,
        ant_branch(16, 32, 6, 8, 1, 3) + ant_branch(16, 32, 6, 8, 2, 3) + 2,
    ),
    (
        EAntStage(block="eant", out=24, expand=4, se_ratio=16, groups=[1, 2, 4]),
        24,
        24,
        1,
        True,
        sum(ant_branch(24, 24, 4, 16, g, 3) for g in (1, 2, 4)) + 3,
    ),
    # gm: two depthwise separable layers with group 1x1 convs, BN after each 1x1 conv only
    (GMStage(block="gm", out=32, groups=2), 32, 32, 1, True, group_dws_pair(32, 32, 2, 3)),
    (
        GMStage(block="gm", out=64, groups=4, kernel=5),
        32,
        64,
        2,
        True,
        group_dws_pair(32, 64, 4, 5),
    ),
    # gcwm: gm + group channel-wise conv with g kernels of dc weights
    (
        GCWMStage(block="gcwm", out=32, groups=2, cw_kernel=8),
        32,
        32,
        1,
        True,
        group_dws_pair(32, 32, 2, 3) + 2 * 8,
    ),
    (
        GCWMStage(block="gcwm", out=64, groups=4, cw_kernel=3),
        64,
        64,
        1,
        False,
        group_dws_pair(64, 64, 4, 3) + 4 * 3,
    ),
    # dwscw: k*k*M + dc * kernels (N/M widening, 1 narrowing) + BN(N); no BN after the dw conv
    (
        DwsCWStage(block="dwscw", out=1024, cw_kernel=64),
        512,
        1024,
        2,
        True,
        9 * 512 + 64 * 2 + bn(1024),
    ),
    (
        DwsCWStage(block="dwscw", out=32, cw_kernel=8),
        64,
        32,
        1,
        True,
        9 * 64 + 8 * 1 + bn(32),
    ),
    (
        DwsCWStage(block="dwscw", out=32, cw_kernel=3, kernel=5),
        32,
        32,
        1,
        True,
        25 * 32 + 3 + bn(32),
    ),
    # shuffle: group 1x1 to out/4 + BN, dw 3x3 + BN, group 1x1 to the branch + BN
    (
        ShuffleStage(block="shuffle", out=240, groups=3, in_groups=1),
        24,
        240,
        2,
        True,
        conv(24, 60) + bn(60) + 9 * 60 + bn(60) + conv(60, 216, groups=3) + bn(216),
    ),
    (
        ShuffleStage(block="shuffle", out=240, groups=3, in_groups=1),
        240,
        240,
        1,
        False,
        conv(240, 60, groups=3) + bn(60) + 9 * 60 + bn(60) + conv(60, 240, groups=3) + bn(240),
    ),
    (
        ShuffleStage(block="shuffle", out=480, groups=3),
        240,
        480,
        2,
        True,
        conv(240, 120, groups=3) + bn(120) + 9 * 120 + bn(120) + conv(120, 240, groups=3) + bn(240),
    ),
    # effnet: 1x1 to the bottleneck, dw 1xk, dw kx1, 1x1 to out (2x1 when striding); BN after each
    (
        EffNetStage(block="effnet", out=64),
        32,
        64,
        1,
        True,
        conv(32, 32) + bn(32) + 3 * 32 + bn(32) + 3 * 32 + bn(32) + conv(32, 64) + bn(64),
    ),
    (
        EffNetStage(block="effnet", out=64, kernel=5, bottleneck=16),
        32,
        64,
        2,
        True,
        conv(32, 16) + bn(16) + 5 * 16 + bn(16) + 5 * 16 + bn(16) + 2 * conv(16, 64) + bn(64),
    ),
]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_every_block_type_is_covered():
    assert {spec.block for spec, *_ in CASES} == set(BLOCKS)


@pytest.mark.parametrize(
    ("spec", "cin", "cout", "stride", "first", "expected"),
    CASES,
    ids=[f"{c[0].block}-{c[1]}-{c[2]}-s{c[3]}" for c in CASES],
)
def test_block_params_match_formula(spec, cin, cout, stride, first, expected):
    block = BLOCKS[spec.block](spec, cin=cin, cout=cout, stride=stride, first=first)
    assert n_params(block) == expected


@pytest.mark.parametrize(
    ("spec", "cin", "cout", "stride", "first", "expected"),
    CASES,
    ids=[f"{c[0].block}-{c[1]}-{c[2]}-s{c[3]}" for c in CASES],
)
def test_block_output_shape(spec, cin, cout, stride, first, expected):
    block = BLOCKS[spec.block](spec, cin=cin, cout=cout, stride=stride, first=first).eval()
    size = 7
    with torch.no_grad():
        y = block(torch.randn(1, cin, size, size))
    out = conv_out_size(size, 3, stride)
    assert y.shape == (1, cout, out, out)


HEAD_CASES = [
    # fc: optional 1x1 conv + BN, hidden FC (+ bias) + BN1d, final FC with bias
    (FCHead(type="fc"), 32, 4, 10, 32 * 10 + 10),
    (FCHead(type="fc", conv_out=64), 32, 4, 10, conv(32, 64) + bn(64) + 64 * 10 + 10),
    (
        FCHead(type="fc", hidden=[16, 8], dropout=0.2),
        32,
        1,
        10,
        32 * 16 + 16 + bn(16) + 16 * 8 + 8 + bn(8) + 8 * 10 + 10,
    ),
    (
        FCHead(type="fc", conv_out=1280),
        320,
        7,
        1000,
        conv(320, 1280) + bn(1280) + 1280 * 1000 + 1000,
    ),
    # conv classifier: (M - n + 1) * Hf * Wf
    (ConvClassifierHead(type="conv_classifier"), 1024, 7, 1000, (1024 - 1000 + 1) * 7 * 7),
    (ConvClassifierHead(type="conv_classifier"), 32, 4, 10, (32 - 10 + 1) * 4 * 4),
    (ConvClassifierHead(type="conv_classifier"), 10, 2, 10, 1 * 2 * 2),
]


@pytest.mark.parametrize(("spec", "channels", "size", "classes", "expected"), HEAD_CASES)
def test_head_params_match_formula(spec, channels, size, classes, expected):
    head = HEADS[spec.type](spec, channels=channels, size=size, num_classes=classes).eval()
    assert n_params(head) == expected
    with torch.no_grad():
        assert head(torch.randn(2, channels, size, size)).shape == (2, classes)
