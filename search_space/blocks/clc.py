"""clcNet's channel-local convolution block (Zhang, CVPR 2018; docs/design.md §1.2).

IGC = grouped kxk conv `M -> L` with `g1` groups (carries the stride) followed by the channel
interlace (the ShuffleNet shuffle with `g1` groups); then BN, *no activation*; then GC = grouped
1x1 conv `L -> N` with `g2` groups, BN, ReLU. FCRF iff `g1 * g2 <= L` (clcNet Sec. 3.3).
`interlace = False` drops the interlace (clcNet-Ap's plain GC: same cost, no FCRF).
"""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import ClcStage
from search_space.blocks.layers import ChannelShuffle, ConvBNAct


class IGC(nn.Module):
    """Interlaced grouped convolution: grouped kxk conv, then `out[k*g1 + i] = in[i*(L/g1) + k]`."""

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        groups: int,
        kernel: int = 3,
        stride: int = 1,
        interlace: bool = True,
    ):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.interlace = ChannelShuffle(groups) if interlace else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.interlace(self.conv(x))


class ClcBlock(nn.Module):
    def __init__(self, spec: ClcStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        mid = spec.mid or cin
        self.igc = IGC(
            cin, mid, groups=spec.g1, kernel=spec.kernel, stride=stride, interlace=spec.interlace
        )
        self.bn = nn.BatchNorm2d(mid)
        self.gc = ConvBNAct(mid, cout, groups=spec.g2, act="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gc(self.bn(self.igc(x)))
