"""Convolution + folded BatchNorm + activation in channels_last, with the implementation chosen
per shape (measured on a 2-core AVX-512 CPU, PyTorch 2.13; see benchmarks/block_latency.py):

- `conv`: oneDNN on channels_last input, weights packed once per input shape, activation fused
  (`kernels.Conv`). Best for kxk convolutions on maps larger than 8x8 and for 1x1 convolutions
  on large maps. (On NCHW input the same oneDNN call is 2-10x slower at 2 threads, which is why
  everything fused here stays channels_last.)
- `gemm`: a 1x1 convolution is a matrix product of the `(B*H*W, C)` rows that a channels_last
  tensor already is (<= 28x28 dense, <= 14x14 grouped), on MKL or on oneDNN by shape
  (`kernels.Gemm`).
- `im2col`: with few pixels in the batch (<= 64: VGG on CIFAR after three pools, at batch 1) a
  kxk convolution is bound by reading its weights; where oneDNN does not run (float64), one
  patch copy plus one GEMM on pre-transposed weights reads them once, where `F.conv2d` would
  re-lay them out per call. The packed oneDNN convolution reads them once too and needs no
  patch copy: measured inside a VGG-16 forward at batch 1 on CIFAR size (two interleaved
  runs), the whole network takes 4.7-5.1 ms with it against 6.0-6.2 ms with im2col + packed
  GEMM at 8x8-2x2.

Every implementation executes exactly the convolution's multiply-adds (no masking, no padding
of the contraction): `B*Ho*Wo*N*(C/g)*k*k`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from search_space.runtime.folding import (
    Order,
    act_name,
    fold_bn,
    from_rows,
    rows,
    to_channels_last,
)
from search_space.runtime.kernels import Conv, Gemm, onednn_runs

GEMM_MAX_PIXELS = 28 * 28  # dense 1x1: `kernels.Gemm` on maps up to 28x28
GROUPED_GEMM_MAX_PIXELS = 14 * 14  # grouped 1x1: grouped `kernels.Gemm` up to 14x14
IM2COL_MAX_ROWS = 8 * 8  # kxk, no oneDNN: patch matrix + GEMM up to 64 pixels in the batch


def im2col(
    x: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Patch view `(B, Ho, Wo, kh, kw, C)` of a channels_last map (`padding = k // 2` unless
    given)."""
    kh, kw = kernel
    ph, pw = padding if padding is not None else (kh // 2, kw // 2)
    xp = F.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1)  # (B, Hp, Wp, C)
    return xp.unfold(1, kh, stride[0]).unfold(2, kw, stride[1]).permute(0, 1, 2, 4, 5, 3)


class FusedConv(nn.Module):
    """`act(bn(conv(x)))` with BN folded, input and output channels_last.

    `in_order`/`out_order` (dense convolutions only; a depthwise convolution keeps its input's
    order) fold channel permutations into the weights.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        *,
        stride: tuple[int, int],
        groups: int,
        act: str,
        in_order: Order = None,
        out_order: Order = None,
        padding: tuple[int, int] | None = None,
    ):
        super().__init__()
        cout, per_group, kh, kw = weight.shape
        depthwise = groups > 1 and per_group == 1 and cout == groups
        if groups > 1 and not depthwise and (in_order is not None or out_order is not None):
            raise ValueError("a grouped convolution only runs in the natural channel order")
        if depthwise:
            if (in_order is None) != (out_order is None) or (
                in_order is not None and not torch.equal(in_order, out_order)  # type: ignore[arg-type]
            ):
                raise ValueError("a depthwise convolution keeps its input's channel order")
            if out_order is not None:
                weight, bias = weight[out_order], bias[out_order]
        else:
            if out_order is not None:
                weight, bias = weight[out_order], bias[out_order]
            if in_order is not None:
                weight = weight[:, in_order]
        self.stride, self.groups, self.act = stride, groups, act
        self.kernel = (kh, kw)
        self.padding = padding if padding is not None else (kh // 2, kw // 2)
        g, n = groups, cout // groups
        if depthwise:
            gemm = torch.empty(0)
        else:
            # (g, kh*kw*C/g, N/g): rows ordered (kh, kw, c) like the patch view's last dims.
            gemm = weight.view(g, n, per_group, kh, kw).permute(0, 3, 4, 2, 1)
            gemm = gemm.reshape(g, kh * kw * per_group, n).contiguous()
        # (g, kh*kw*C/g, N/g), rows in (kh, kw, c) order: the pointwise and im2col GEMMs
        self.gemm = None if depthwise else Gemm(gemm, bias, act)
        self.conv = Conv(weight, bias, stride=stride, padding=self.padding, groups=groups, act=act)
        self.pointwise = kh == kw == 1 and stride == (1, 1)
        self.depthwise = depthwise

    @classmethod
    def from_conv_bn_act(
        cls, seq: nn.Sequential, *, in_order: Order = None, out_order: Order = None
    ) -> FusedConv:
        conv, bn, act = seq[0], seq[1], seq[2]
        assert isinstance(conv, nn.Conv2d)
        weight, bias = fold_bn(conv.weight, conv.bias, bn)
        return cls(
            weight,
            bias,
            stride=(int(conv.stride[0]), int(conv.stride[1])),
            groups=conv.groups,
            act=act_name(act),
            in_order=in_order,
            out_order=out_order,
            padding=(int(conv.padding[0]), int(conv.padding[1])),
        )

    def impl(self, b: int, h: int, w: int, dtype: torch.dtype = torch.float32) -> str:
        """The implementation used for a `(b, C, h, w)` input (module docstring)."""
        if self.depthwise:
            return "conv"
        if self.pointwise:
            limit = GEMM_MAX_PIXELS if self.groups == 1 else GROUPED_GEMM_MAX_PIXELS
            return "gemm" if h * w <= limit else "conv"
        if onednn_runs(dtype) or b * h * w > IM2COL_MAX_ROWS:
            return "conv"
        return "im2col"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_channels_last(x)
        b, _, h, w = x.shape
        impl = self.impl(b, h, w, x.dtype)
        if impl == "conv":
            return self.conv(x)
        if impl == "gemm":
            a, ho, wo = rows(x), h, w
        else:
            patches = im2col(x, self.kernel, self.stride, self.padding)
            _, ho, wo = patches.shape[:3]
            a = patches.reshape(b * ho * wo, -1)
        assert self.gemm is not None
        if self.groups > 1 and not self.pointwise:
            # patches (kh, kw, C) -> (g, kh, kw, C/g): each group's patch a contiguous block
            g, kk = self.groups, self.kernel[0] * self.kernel[1]
            a = a.view(a.shape[0], kk, g, -1).transpose(1, 2).reshape(a.shape[0], -1)
        return from_rows(self.gemm(a), b, ho, wo)
