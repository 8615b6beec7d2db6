"""ANTNets' attention-nested block (Xiong et al., 2019; docs/design.md §1.5).

1x1 expansion to `t*M` + BN + ReLU6 (absent when t = 1), depthwise kxk (stride) + BN + ReLU6,
channel attention (reduction `r`) on the depthwise output, linear 1x1 *group* projection (`g`
groups) + BN; identity shortcut at stride 1 when M == N. The attention between expansion and
projection gives every depthwise channel a full CRF, so any `g` keeps the block FCRF.
"""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import AntStage
from search_space.blocks.layers import ConvBNAct, SqueezeExcite


class AntBranch(nn.Module):
    """The residual-free body of an ANTBlock (shared with the e-ANTBlock ensemble)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        expand: int,
        se_ratio: int,
        groups: int,
        kernel: int,
        stride: int,
    ):
        super().__init__()
        hidden = cin * expand
        self.expand = ConvBNAct(cin, hidden, act="relu6") if expand > 1 else nn.Identity()
        self.dw = ConvBNAct(
            hidden, hidden, kernel=kernel, stride=stride, groups=hidden, act="relu6"
        )
        self.attention = SqueezeExcite(hidden, se_ratio=se_ratio)
        self.project = ConvBNAct(hidden, cout, groups=groups, act="none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.attention(self.dw(self.expand(x))))


class AntBlock(nn.Module):
    def __init__(self, spec: AntStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        self.body = AntBranch(
            cin,
            cout,
            expand=spec.expand,
            se_ratio=spec.se_ratio,
            groups=spec.groups,
            kernel=spec.kernel,
            stride=stride,
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y
