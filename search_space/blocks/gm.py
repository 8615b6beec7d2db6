"""ChannelNets' group module GM (Gao et al., NeurIPS 2018; docs/design.md §1.4): two depthwise
separable layers whose 1x1 convs are group convs with `g` groups, identity shortcut (at stride 1
when M == N). No channel fusion: not FCRF for `g > 1`.

As in every ChannelNets depthwise separable layer (paper §4.2), there is no BN or activation
between a depthwise conv and the 1x1 conv after it; BN + ReLU6 follow each 1x1 group conv."""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import GMStage
from search_space.blocks.layers import ConvBNAct, bare_depthwise


def group_dws_pair(
    cin: int, cout: int, *, groups: int, kernel: int, stride: int, last_act: str = "relu6"
) -> nn.Sequential:
    """dw kxk (stride) -> GConv 1x1 + BN + ReLU6 -> dw kxk -> GConv 1x1 + BN (+ ReLU6)."""
    return nn.Sequential(
        bare_depthwise(cin, kernel=kernel, stride=stride),
        ConvBNAct(cin, cout, groups=groups, act="relu6"),
        bare_depthwise(cout, kernel=kernel),
        ConvBNAct(cout, cout, groups=groups, act=last_act),
    )


class GMBlock(nn.Module):
    def __init__(self, spec: GMStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        self.body = group_dws_pair(cin, cout, groups=spec.groups, kernel=spec.kernel, stride=stride)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y
