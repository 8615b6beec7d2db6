"""Depthwise separable convolution (MobileNetV1): depthwise kxk + BN + ReLU, 1x1 + BN + ReLU.

With `dw_bn_act = false` (ChannelNets §4.2, docs/design.md §1.4) the depthwise conv is bare: no
BN or activation between it and the 1x1 conv.
"""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import DwsStage
from search_space.blocks.layers import ConvBNAct, bare_depthwise


class DwsBlock(nn.Module):
    def __init__(self, spec: DwsStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        self.dw = (
            ConvBNAct(cin, cin, kernel=spec.kernel, stride=stride, groups=cin)
            if spec.dw_bn_act
            else bare_depthwise(cin, kernel=spec.kernel, stride=stride)
        )
        self.pw = ConvBNAct(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))
