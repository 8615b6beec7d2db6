"""ChannelNets as the paper builds them (Gao et al. 2018 §4.2; docs/design.md §1.4): no BN and no
activation between a depthwise conv and the 1x1 (or channel-wise) conv that follows it, in GM,
GCWM, DWSCW and the depthwise separable layers of the ChannelNet zoo models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from search_space import build_model, load_arch, zoo_names
from search_space.arch import DwsCWStage, DwsStage, GCWMStage, GMStage
from search_space.blocks import BLOCKS


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels


def _after_depthwise(model: nn.Module, x: torch.Tensor) -> list[list[str]]:
    """For each depthwise conv, the leaf modules that run between it and the next conv, in the
    order the forward pass calls them (forward hooks, so data flow, not declaration order)."""
    calls: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda mod, *_: calls.append(mod))
        for m in model.modules()
        if not list(m.children())
    ]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    gaps: list[list[str]] = []
    for i, m in enumerate(calls):
        if _is_depthwise(m):
            gap = []
            for nxt in calls[i + 1 :]:
                if isinstance(nxt, nn.Conv2d | nn.Conv3d | nn.Linear):
                    break
                gap.append(type(nxt).__name__)
            gaps.append(gap)
    return gaps


def _bare(gaps: list[list[str]]) -> bool:
    return bool(gaps) and all(set(g) <= {"Identity"} for g in gaps)


@pytest.mark.parametrize(
    ("spec", "cin", "cout", "stride"),
    [
        (GMStage(block="gm", out=16, groups=2), 16, 16, 1),
        (GMStage(block="gm", out=32, groups=4, kernel=5), 16, 32, 2),
        (GCWMStage(block="gcwm", out=16, groups=2, cw_kernel=8), 16, 16, 1),
        (DwsCWStage(block="dwscw", out=32, cw_kernel=8), 16, 32, 2),
        (DwsCWStage(block="dwscw", out=8, cw_kernel=3), 16, 8, 1),
        (DwsStage(block="dws", out=32, dw_bn_act=False), 16, 32, 1),
    ],
    ids=["gm", "gm-s2", "gcwm", "dwscw-widen", "dwscw-narrow", "dws-bare"],
)
def test_channelnets_blocks_have_nothing_after_the_depthwise_conv(spec, cin, cout, stride):
    block = BLOCKS[spec.block](spec, cin=cin, cout=cout, stride=stride, first=True)
    assert _bare(_after_depthwise(block, torch.randn(1, cin, 8, 8)))


@pytest.mark.parametrize("name", [n for n in zoo_names() if n.startswith("channelnet")])
def test_channelnet_zoo_models_have_nothing_after_any_depthwise_conv(name):
    arch = load_arch(name)
    model = build_model(arch)
    gaps = _after_depthwise(model, torch.randn(1, 3, arch.resolution, arch.resolution))
    assert len(gaps) == sum(
        s.repeat * (2 if s.block in ("gm", "gcwm") else 1) for s in arch.stages
    )
    assert _bare(gaps), gaps


def test_mobilenet_keeps_bn_and_relu_after_the_depthwise_conv():
    """The default `dw_bn_act = true` is MobileNetV1's layer (docs/design.md §1.1)."""
    spec = DwsStage(block="dws", out=32)
    block = BLOCKS["dws"](spec, cin=16, cout=32, stride=1, first=True)
    assert _after_depthwise(block, torch.randn(1, 16, 8, 8)) == [["BatchNorm2d", "ReLU"]]
