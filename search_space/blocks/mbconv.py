"""MobileNetV2 inverted residual (docs/design.md §1.1): 1x1 expand + BN + ReLU6 (absent when t = 1),
depthwise kxk + BN + ReLU6, linear 1x1 projection + BN; identity shortcut at stride 1, M == N."""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import MBConvStage
from search_space.blocks.layers import ConvBNAct


class MBConvBlock(nn.Module):
    def __init__(self, spec: MBConvStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        hidden = cin * spec.expand
        self.expand = ConvBNAct(cin, hidden, act="relu6") if spec.expand > 1 else nn.Identity()
        self.dw = ConvBNAct(
            hidden, hidden, kernel=spec.kernel, stride=stride, groups=hidden, act="relu6"
        )
        self.project = ConvBNAct(hidden, cout, act="none")
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y
