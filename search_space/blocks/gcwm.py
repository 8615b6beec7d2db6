"""ChannelNets' group channel-wise module GCWM (docs/design.md §1.4): a GM whose second 1x1 group
conv
(+ BN + ReLU6) is followed by a group channel-wise conv with `g` groups and kernel `dc`, which
fuses information across the groups; identity shortcut at stride 1 when M == N.

Each output group of the group channel-wise conv covers every input channel iff `dc >= g`; a
single output channel covers only `dc` consecutive channels (ChannelNets Sec. 3.3)."""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import GCWMStage
from search_space.blocks.gm import group_dws_pair
from search_space.blocks.layers import ChannelWiseConv


class GCWMBlock(nn.Module):
    def __init__(self, spec: GCWMStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        self.body = group_dws_pair(cin, cout, groups=spec.groups, kernel=spec.kernel, stride=stride)
        self.fuse = ChannelWiseConv(
            cout, cw_kernel=spec.cw_kernel, kernels=spec.groups, cw_stride=spec.groups
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fuse(self.body(x))
        return x + y if self.residual else y
