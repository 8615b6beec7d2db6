"""Plain kxk convolution + BN + ReLU (the VGG layer, and the `P = 1` HetConv)."""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import ConvStage
from search_space.blocks.layers import ConvBNAct


class ConvBlock(nn.Module):
    def __init__(self, spec: ConvStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        self.conv = ConvBNAct(cin, cout, kernel=spec.kernel, stride=stride, bias=spec.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
