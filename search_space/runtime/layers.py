"""Inference forms of the shared layers (`blocks/layers.py`) and of the heads, channels_last.

- Channel-wise convolution (ChannelNets): on channels_last memory the `(B, C, H, W)` map is
  `B*H*W` rows of `C` channels, so the Conv3d with kernel `(dc, 1, 1)` is a `conv1d` over those
  rows with one input channel: same weights, same `dc * C_out * H * W` multiply-adds, no 5-D
  view and no layout change (the output rows are channels_last already).
- Channel attention (ANTNets): the two 1x1 convolutions on a `1x1` map become two `linear`
  calls on the pooled vector (a 1x1 conv call costs tens of microseconds of oneDNN set-up for a
  few thousand multiply-adds).
- Channel shuffle on channels_last rows, so the map stays channels_last.
- Convolutional classification layer (ChannelNets): a `conv1d` whose input channels are the
  `Hf*Wf` pixels and whose length is the channel axis: `n * (M-n+1) * Hf*Wf` multiply-adds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from search_space.blocks.heads import ConvClassifier, FCClassifier
from search_space.blocks.layers import ChannelShuffle, ChannelWiseConv, SqueezeExcite
from search_space.runtime.conv import FusedConv
from search_space.runtime.folding import (
    Order,
    bn_affine,
    fold_bn,
    from_rows,
    rows,
    to_channels_last,
)
from search_space.runtime.kernels import Gemm


class FusedChannelWise(nn.Module):
    weight: torch.Tensor

    def __init__(self, cw: ChannelWiseConv):
        super().__init__()
        kernels, _, dc = cw.conv.weight.shape[:3]
        self.register_buffer("weight", cw.conv.weight.detach().view(kernels, 1, dc), False)
        self.front, self.back = cw.pad
        self.cw_stride, self.out_channels = cw.cw_stride, cw.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_channels_last(x)
        b, _, h, w = x.shape
        v = rows(x).unsqueeze(1)  # (B*H*W, 1, C)
        if self.front == self.back and self.front >= 0:
            y = F.conv1d(v, self.weight, None, self.cw_stride, self.front)
        else:
            y = F.conv1d(F.pad(v, (self.front, self.back)), self.weight, None, self.cw_stride)
        return from_rows(y.reshape(y.shape[0], self.out_channels), b, h, w)


class FusedSqueezeExcite(nn.Module):
    def __init__(self, se: SqueezeExcite):
        super().__init__()
        assert se.reduce.bias is not None and se.expand.bias is not None
        self.reduce_w = se.reduce.weight.detach().flatten(1)
        self.reduce_b = se.reduce.bias.detach()
        self.expand_w = se.expand.weight.detach().flatten(1)
        self.expand_b = se.expand.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_channels_last(x)
        s = F.linear(x.mean((2, 3)), self.reduce_w, self.reduce_b).relu_()
        s = torch.sigmoid(F.linear(s, self.expand_w, self.expand_b))
        return x * s[:, :, None, None]


class ChannelsLastShuffle(nn.Module):
    def __init__(self, shuffle: ChannelShuffle):
        super().__init__()
        self.groups = shuffle.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_channels_last(x)
        b, c, h, w = x.shape
        r = rows(x).view(-1, self.groups, c // self.groups).transpose(1, 2).reshape(-1, c)
        return from_rows(r, b, h, w)


class FusedBatchNorm(nn.Module):
    """A BatchNorm that follows no convolution it could fold into: one `x * scale + shift`."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        scale, shift = bn_affine(bn)
        self.scale, self.shift = scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, to_channels_last(x), self.scale)


class FusedFCHead(nn.Module):
    """Optional 1x1 conv + BN + act, global pool, hidden linear + BN1d + ReLU layers (BN
    folded), classifier. The input may arrive in any channel order (folded into the first
    weights that read it)."""

    def __init__(self, head: FCClassifier, *, in_order: Order = None):
        super().__init__()
        self.conv: nn.Module = nn.Identity()
        if isinstance(head.conv, nn.Sequential):
            self.conv = FusedConv.from_conv_bn_act(head.conv, in_order=in_order)
            in_order = None
        layers = list(head.hidden)
        self.hidden = nn.ModuleList()
        for linear, bn in zip(layers[0::3], layers[1::3], strict=True):
            assert isinstance(linear, nn.Linear)
            weight, bias = fold_bn(linear.weight, linear.bias, bn)
            if in_order is not None:
                weight, in_order = weight[:, in_order], None
            self.hidden.append(Gemm(weight.t()[None], bias, "relu"))
        fc_w = head.fc.weight.detach()
        fc_w = fc_w if in_order is None else fc_w[:, in_order]
        self.fc = Gemm(fc_w.t()[None], head.fc.bias.detach(), "none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:  # a CLC block's group-major hand-off (g2, B, H, W, N/g2), natural order
            if not isinstance(self.conv, nn.Identity):
                raise RuntimeError("a group-major hand-off reaches only a head that pools first")
            x = x.mean((2, 3)).transpose(0, 1).reshape(x.shape[1], -1)
        else:
            x = self.conv(x).mean((2, 3))
        for layer in self.hidden:
            x = layer(x)
        return self.fc(x)


class FusedConvClassifier(nn.Module):
    def __init__(self, head: ConvClassifier):
        super().__init__()
        w = head.conv.weight.detach()[0, 0]  # (T, Hf, Wf)
        self.weight = w.permute(1, 2, 0).reshape(1, -1, w.shape[0]).contiguous()  # (1, HW, T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_channels_last(x)
        b, c, h, w = x.shape
        v = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # conv1d input: pixels x channels
        return F.conv1d(v, self.weight).flatten(1)
