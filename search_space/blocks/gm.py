"""ChannelNets' group module GM (Gao et al., NeurIPS 2018; SPEC §1.4): two depthwise separable
layers whose 1x1 convs are group convs with `g` groups, BN + ReLU6 after every conv, identity
shortcut (at stride 1 when M == N). No channel fusion: not FCRF for `g > 1`."""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import GMStage
from search_space.blocks.layers import ConvBNAct


def group_dws_pair(
    cin: int, cout: int, *, groups: int, kernel: int, stride: int, last_act: str = "relu6"
) -> nn.Sequential:
    """dw kxk (stride) -> GConv 1x1 -> dw kxk -> GConv 1x1, each + BN (+ ReLU6)."""
    return nn.Sequential(
        ConvBNAct(cin, cin, kernel=kernel, stride=stride, groups=cin, act="relu6"),
        ConvBNAct(cin, cout, groups=groups, act="relu6"),
        ConvBNAct(cout, cout, kernel=kernel, groups=cout, act="relu6"),
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
