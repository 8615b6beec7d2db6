"""EffNet block (Freeman et al., 2018; docs/design.md §1.6): spatially separable depthwise
convolution with separable pooling.

1x1 conv to the bottleneck + BN + ReLU, depthwise 1xk + BN + ReLU on the full map; when the
block strides, a 2x1 max pool halves the height *before* the depthwise kx1 + BN + ReLU, which so
runs on half the map (for k = 3 the depthwise part costs `3*Df^2*M + 3*(Df^2/2)*M`), and the
last conv, a 2x1 conv with stride 1x2 (the paper's block diagram and the authors' reference
code), halves the width while mapping to `out` + BN + ReLU. Its 2-tall kernel is padded below by
one row ('same' as TensorFlow pads an even kernel). Pool and stride round up, so both sides
shrink to `ceil(size / 2)`, as a stride-2 3x3 conv would. Without a stride (not in the paper,
whose blocks all downsample) there is no pool and the last conv is 1x1.
"""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import EffNetStage, effnet_bottleneck
from search_space.blocks.layers import ConvBNAct


def strided_pointwise(cin: int, cout: int) -> nn.Sequential:
    """EffNet's last layer at stride 2: 2x1 conv, stride 1x2, one zero row padded below."""
    return nn.Sequential(
        nn.ZeroPad2d((0, 0, 0, 1)),
        ConvBNAct(cin, cout, kernel=(2, 1), stride=(1, 2), padding=(0, 0)),
    )


class EffNetBlock(nn.Module):
    def __init__(self, spec: EffNetStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        mid = effnet_bottleneck(spec, cout)
        k = spec.kernel
        strided = stride == 2
        self.body = nn.Sequential(
            ConvBNAct(cin, mid),
            ConvBNAct(mid, mid, kernel=(1, k), groups=mid),
            nn.MaxPool2d((2, 1), (2, 1), ceil_mode=True) if strided else nn.Identity(),
            ConvBNAct(mid, mid, kernel=(k, 1), groups=mid),
            strided_pointwise(mid, cout) if strided else ConvBNAct(mid, cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
