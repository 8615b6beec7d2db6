"""EffNet block (Freeman et al., 2018; SPEC §1.6): spatially separable depthwise convolution.

1x1 conv to the bottleneck + BN + ReLU, depthwise 1xk + BN + ReLU, a 1x2 max pool along the
width when the block strides (the "separable pooling"), depthwise kx1 (stride 2 along the
height when striding) + BN + ReLU, 1x1 conv to `out` + BN + ReLU. The pool uses ceil mode so
both sides shrink to `ceil(size / 2)`, as a stride-2 3x3 conv would.
"""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import EffNetStage, effnet_bottleneck
from search_space.blocks.layers import ConvBNAct


class EffNetBlock(nn.Module):
    def __init__(self, spec: EffNetStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        mid = effnet_bottleneck(spec, cout)
        k = spec.kernel
        self.body = nn.Sequential(
            ConvBNAct(cin, mid),
            ConvBNAct(mid, mid, kernel=(1, k), groups=mid),
            nn.MaxPool2d((1, 2), (1, 2), ceil_mode=True) if stride == 2 else nn.Identity(),
            ConvBNAct(mid, mid, kernel=(k, 1), stride=(stride, 1), groups=mid),
            ConvBNAct(mid, cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
