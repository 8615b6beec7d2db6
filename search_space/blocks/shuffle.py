"""ShuffleNet (v1) unit (Zhang et al., CVPR 2018; docs/design.md §1.6).

1x1 group conv to the bottleneck `out/4` + BN + ReLU, channel shuffle (`g`), 3x3 depthwise
(stride) + BN, 1x1 group conv + BN. Stride 1: identity shortcut added; stride 2: 3x3 stride-2
average-pooled shortcut concatenated (the branch makes `out - in` channels). ReLU after the
merge. The first 1x1 conv of a stage's first block uses `in_groups` (1 for the network's first
stage, whose input is small).
"""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import ShuffleStage
from search_space.blocks.layers import ChannelShuffle, ConvBNAct


class ShuffleBlock(nn.Module):
    def __init__(self, spec: ShuffleStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        mid = cout // 4
        in_groups = (spec.in_groups or spec.groups) if first else spec.groups
        branch_out = cout - cin if stride == 2 else cout
        self.branch = nn.Sequential(
            ConvBNAct(cin, mid, groups=in_groups, act="relu"),
            ChannelShuffle(spec.groups),
            ConvBNAct(mid, mid, kernel=3, stride=stride, groups=mid, act="none"),
            ConvBNAct(mid, branch_out, groups=spec.groups, act="none"),
        )
        self.shortcut = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()
        self.concat = stride == 2
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, s = self.branch(x), self.shortcut(x)
        return self.act(torch.cat((s, y), 1) if self.concat else s + y)
