"""HetConv + BN + ReLU for inference (docs/design.md §1.3), contiguous arrangement, BN folded into
both
kernel parts, channels_last, exactly `Ho*Wo*N*(M/P*k*k + M - M/P)` multiply-adds.

The 1x1 part of output group `j` reads every input group but `j`. Taken in *cyclic* order
(`j+1, ..., P-1, 0, ..., j-1`) those are the `(P-1)*M/P` consecutive columns starting at
`(j+1)*M/P` of the doubled rows `[X | X]` (`X` = the `(pixels, M)` channels_last rows). So one
copy of the input makes the 1x1 operands of all groups overlapping windows of one matrix (a
strided view, no gather), and one batched GEMM over the `P` groups does the whole 1x1 part on
pointwise weights reordered to the cyclic order at fuse time.

Three implementations, by shape:
- `conv+gemm`: the kxk part is the grouped convolution (`groups = P`), then the 1x1 part is
  accumulated in place into its output by one batched GEMM.
- `nchw` (fewer than 16 outputs per group, e.g. P >= 32 on VGG widths, unless the kxk part is
  depthwise): a batched GEMM with so narrow an output is slow, and so is gathering single
  values from channels_last rows; the reference structure (grouped kxk conv + a channel gather,
  which copies whole planes in NCHW, + grouped 1x1 conv) with BN folded and the add/ReLU in
  place is fastest there. With one input channel per group ("part = in") the kxk part is a
  depthwise convolution, which oneDNN runs several times slower in NCHW: `conv+gemm` again.
- `im2col` (up to 16 pixels in the batch, e.g. VGG's 4x4 and 2x2 maps at batch 1, where the
  layer is bound by reading its weights): group `j`'s rows
  are `[kxk patch of input group j | its 1x1 window]`, so the whole layer is one grouped GEMM
  (`kernels.Gemm`: oneDNN with packed weights on large layers) with contraction
  `M/P*k*k + (M - M/P)` on weights laid out once at fuse time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from search_space.blocks.hetconv import HetConvBlock
from search_space.runtime.conv import FusedConv, im2col
from search_space.runtime.folding import (
    act_,
    act_name,
    bn_affine,
    from_rows,
    rows,
    to_channels_last,
)
from search_space.runtime.kernels import Conv, Gemm

IM2COL_MAX_ROWS = 4 * 4  # one batched GEMM over the patch rows up to 16 pixels in the batch
GEMM_MIN_GROUP_OUT = 16  # below this many outputs per group the NCHW form wins


def cyclic_others(cin: int, part: int) -> torch.Tensor:
    """For each group `j`, the channels outside it in the order `j+1, ..., P-1, 0, ..., j-1`."""
    m = cin // part
    return torch.stack([(torch.arange((j + 1) * m, (j + part) * m)) % cin for j in range(part)])


class FusedHetConv(nn.Module):
    spatial_bias: torch.Tensor
    pointwise_weight: torch.Tensor
    pointwise_conv_weight: torch.Tensor
    gather: torch.Tensor
    spatial_weight_nchw: torch.Tensor

    def __init__(self, block: HetConvBlock):
        super().__init__()
        het = block.conv
        spatial = het.spatial
        assert het.pointwise is not None, "part 1 is a plain convolution (use FusedConv)"
        part = het.part
        cout, m, k, _ = spatial.weight.shape
        cin, n = m * part, cout // part
        scale, shift = bn_affine(block.bn)
        ws = spatial.weight.detach() * scale.view(-1, 1, 1, 1)
        bias = shift if spatial.bias is None else spatial.bias.detach() * scale + shift
        # The module's pointwise group j reads the other channels in increasing order; reorder
        # its columns to the cyclic order of the doubled-rows window.
        wp = het.pointwise.weight.detach()[:, :, 0, 0] * scale.view(-1, 1)  # (N, M - m)
        increasing = het.gather.view(part, cin - m)
        cyclic = cyclic_others(cin, part)
        wp_g = torch.empty(part, cin - m, n, dtype=wp.dtype)
        for j in range(part):
            col = {int(c): i for i, c in enumerate(increasing[j])}
            perm = torch.tensor([col[int(c)] for c in cyclic[j]])
            wp_g[j] = wp[j * n : (j + 1) * n][:, perm].t()
        self.register_buffer("pointwise_weight", wp_g.contiguous(), persistent=False)
        # the same, as a grouped 1x1 convolution over the windows laid out as channels
        # NCHW form: the module's own layout (increasing order), as a grouped 1x1 convolution.
        self.register_buffer("pointwise_conv_weight", wp.view(cout, cin - m, 1, 1), False)
        self.register_buffer("gather", het.gather.clone(), persistent=False)
        self.register_buffer("spatial_weight_nchw", ws.contiguous(), persistent=False)
        pad = (k // 2, k // 2)
        st = (int(spatial.stride[0]), int(spatial.stride[1]))
        self.spatial = Conv(ws, bias, stride=st, padding=pad, groups=part)
        self.register_buffer("spatial_bias", bias.contiguous(), persistent=False)
        # (P, k*k*m + M - m, n): [kxk rows in (kh, kw, c) order ; cyclic 1x1 rows], per group.
        ws_g = ws.view(part, n, m, k, k).permute(0, 3, 4, 2, 1).reshape(part, k * k * m, n)
        self.im2col = Gemm(torch.cat([ws_g, wp_g], 1), bias, act_name(block.act))
        self.part, self.kernel, self.stride = part, k, int(spatial.stride[0])
        self.group_in, self.group_out = m, n
        self.act = act_name(block.act)

    def impl(self, b: int, h: int, w: int) -> str:
        if self.group_out < GEMM_MIN_GROUP_OUT and self.group_in > 1:
            return "nchw"
        return "im2col" if b * h * w <= IM2COL_MAX_ROWS else "conv+gemm"

    def _windows(self, x: torch.Tensor) -> torch.Tensor:
        """`(P, pixels, M - M/P)`: group j's 1x1 operand, a window of the doubled rows."""
        taps = x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]
        r = rows(to_channels_last(taps))
        p, cin = r.shape
        m = cin // self.part
        doubled = torch.cat([r, r], 1)
        return doubled.as_strided((self.part, p, cin - m), (m, 2 * cin, 1), m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, cin, h, w = x.shape
        s, k, part = self.stride, self.kernel, self.part
        impl = self.impl(b, h, w)
        if impl == "nchw":  # the reference layer's structure with BN folded
            x = x.contiguous()
            y = F.conv2d(x, self.spatial_weight_nchw, self.spatial_bias, s, k // 2, 1, part)
            g = x.index_select(1, self.gather)  # whole planes: cheap in NCHW
            y.add_(F.conv2d(g, self.pointwise_conv_weight, None, s, 0, 1, part))
            return act_(y, self.act)
        x = to_channels_last(x)
        if impl == "conv+gemm":
            y = self.spatial(x)
            cout = y.shape[1]
            yv = rows(y).view(-1, part, cout // part).transpose(0, 1)
            torch.baddbmm(yv, self._windows(x), self.pointwise_weight, out=yv)
            return act_(y, self.act)
        patches = im2col(x, (k, k), (s, s))
        _, ho, wo = patches.shape[:3]
        p, kk, m = b * ho * wo, k * k, cin // part
        a = torch.empty(p, part, self.im2col.k // part, dtype=x.dtype)
        a[:, :, : kk * m].view(p, part, kk, m).copy_(
            patches.reshape(p, kk, part, m).transpose(1, 2)
        )
        a[:, :, kk * m :].copy_(self._windows(x).transpose(0, 1))
        return from_rows(self.im2col(a.view(p, -1)), b, ho, wo)


def fuse_hetconv(block: HetConvBlock) -> nn.Module:
    """Part 1 is the plain convolution: the generic fused convolution handles it."""
    het = block.conv
    if het.pointwise is not None:
        return FusedHetConv(block)
    seq = nn.Sequential(het.spatial, block.bn, block.act)
    return FusedConv.from_conv_bn_act(seq)
