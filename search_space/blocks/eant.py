"""ANTNets' ensemble block e-ANTBlock (docs/design.md §1.5): `sum_k softmax(alpha)_k *
ANTBlock_k(x)`
over `K` ANTBlocks that differ in their projection groups `g_1..g_K`, with `K` learnable logits.

The shortcut is added once: softmax weights sum to 1, so `sum_k w_k (x + f_k(x)) = x + sum_k
w_k f_k(x)`.
"""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import EAntStage
from search_space.blocks.ant import AntBranch


class EAntBlock(nn.Module):
    def __init__(self, spec: EAntStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        self.members = nn.ModuleList(
            AntBranch(
                cin,
                cout,
                expand=spec.expand,
                se_ratio=spec.se_ratio,
                groups=g,
                kernel=spec.kernel,
                stride=stride,
            )
            for g in spec.groups
        )
        self.alpha = nn.Parameter(torch.zeros(len(spec.groups)))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.alpha, 0)
        y = weights[0] * self.members[0](x)
        for w, member in zip(weights[1:], self.members[1:], strict=True):
            y = y + w * member(x)
        return x + y if self.residual else y
