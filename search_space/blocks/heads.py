"""Classifier heads: `fc` (optional 1x1 conv + BN + act, global pool, optional hidden FC + BN1d +
ReLU layers, dropout, FC) and ChannelNets' convolutional classification layer (docs/design.md
§1.4)."""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import ConvClassifierHead, FCHead
from search_space.blocks.layers import ConvBNAct


class FCClassifier(nn.Module):
    def __init__(self, spec: FCHead, *, channels: int, size: int, num_classes: int):
        super().__init__()
        self.conv = (
            ConvBNAct(channels, spec.conv_out, act=spec.act) if spec.conv_out else nn.Identity()
        )
        width = spec.conv_out or channels
        hidden: list[nn.Module] = []
        for h in spec.hidden:
            hidden += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
            width = h
        self.hidden = nn.Sequential(*hidden)
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout else nn.Identity()
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).mean((2, 3))
        return self.fc(self.dropout(self.hidden(x)))


class ConvClassifier(nn.Module):
    """One Conv3d with kernel `(M - n + 1, Hf, Wf)`, no padding, no bias, over the
    `(B, 1, M, Hf, Wf)` features: `n` logits from `(M - n + 1) * Hf * Wf` weights."""

    def __init__(self, spec: ConvClassifierHead, *, channels: int, size: int, num_classes: int):
        super().__init__()
        if channels < num_classes:
            raise ValueError(f"conv_classifier needs >= {num_classes} channels, got {channels}")
        self.conv = nn.Conv3d(1, 1, (channels - num_classes + 1, size, size), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.unsqueeze(1)).flatten(1)
