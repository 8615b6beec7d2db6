"""ChannelNets' depthwise separable channel-wise convolution DWSCW (docs/design.md §1.4): depthwise
kxk (stride, no BN or activation: paper §4.2), then a channel-wise conv (kernel `dc`) in place of
the 1x1 conv + BN + ReLU6. `M -> N` uses `N/M` kernels when widening or channel stride `M/N` when
narrowing, so the weights are `k*k*M + dc*kernels`."""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import DwsCWStage
from search_space.block_types.dwscw import dwscw_kernels_and_stride
from search_space.blocks.layers import ChannelWiseConv, bare_depthwise, get_act


class DwsCWBlock(nn.Module):
    def __init__(self, spec: DwsCWStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        kernels, cw_stride = dwscw_kernels_and_stride(cin, cout)
        self.dw = bare_depthwise(cin, kernel=spec.kernel, stride=stride)
        self.cw = ChannelWiseConv(
            cin, cw_kernel=spec.cw_kernel, kernels=kernels, cw_stride=cw_stride
        )
        self.bn = nn.BatchNorm2d(cout)
        self.act = get_act("relu6")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.cw(self.dw(x))))
