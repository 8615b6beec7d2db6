"""Inference-time algebra shared by the fused modules: BatchNorm folding, channel orders and
in-place activations.

A *channel order* is a permutation stored as a 1-D long tensor: position `p` of the stored tensor
holds channel `order[p]` of the reference module. `None` is the natural order. Fused modules accept
their input in one order and write their output in another, which lets a permutation between two
layers (clcNet's interlace, the pairing the fast IGC wants) cost nothing: it is folded into the
weights of the layer that produces or consumes it.
"""

from __future__ import annotations

import torch
from torch import nn

Order = torch.Tensor | None


def bn_affine(bn: nn.BatchNorm2d | nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as `x * scale + shift` (running statistics)."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale.detach(), shift.detach()


def fold_bn(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of `bn(conv(x))` as one conv (`bn` may be `nn.Identity`)."""
    weight = weight.detach()
    bias = torch.zeros(weight.shape[0], dtype=weight.dtype) if bias is None else bias.detach()
    if isinstance(bn, nn.Identity):
        return weight.clone(), bias.clone()
    if not isinstance(bn, nn.BatchNorm2d | nn.BatchNorm1d):
        raise TypeError(f"cannot fold {type(bn).__name__} into a convolution")
    scale, shift = bn_affine(bn)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    return weight * scale.view(shape), bias * scale + shift


def natural(order: Order) -> bool:
    return order is None


def inverse(order: torch.Tensor) -> torch.Tensor:
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel())
    return inv


def same_order(a: Order, b: Order) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(torch.equal(a, b))


# The helpers below are on the hot path of every fused layer: one ATen call each where the
# obvious permute/reshape chain takes two or three (eager PyTorch spends microseconds per call,
# which is a measurable share of a batch-1 forward of a mobile network).


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    return (
        x
        if x.is_contiguous(memory_format=torch.channels_last)
        else x.contiguous(memory_format=torch.channels_last)
    )


def rows(x: torch.Tensor) -> torch.Tensor:
    """A channels_last `(B, C, H, W)` tensor as the `(B*H*W, C)` matrix it is in memory."""
    b, c, h, w = x.shape
    if x.is_contiguous(memory_format=torch.channels_last):
        return x.as_strided((b * h * w, c), (c, 1), x.storage_offset())
    return x.permute(0, 2, 3, 1).reshape(b * h * w, c)


def from_rows(m: torch.Tensor, b: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `rows`: a `(B*H*W, C)` matrix as a channels_last `(B, C, H, W)` tensor (a
    view when `m` is contiguous)."""
    c = m.shape[1]
    if m.is_contiguous():
        return m.as_strided((b, c, h, w), (h * w * c, 1, w * c, c), m.storage_offset())
    return m.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def act_(x: torch.Tensor, act: str) -> torch.Tensor:
    """The block activations of `layers.get_act`, in place."""
    if act == "relu":
        return x.relu_()
    if act == "relu6":
        return x.clamp_(0.0, 6.0)
    if act == "none":
        return x
    raise ValueError(f"unknown activation {act!r}")


def act_name(module: nn.Module) -> str:
    """The registry name of an activation module built by `layers.get_act`."""
    if isinstance(module, nn.ReLU6):
        return "relu6"
    if isinstance(module, nn.ReLU):
        return "relu"
    if isinstance(module, nn.Identity):
        return "none"
    raise TypeError(f"no fused form for activation {type(module).__name__}")


class Reorder(nn.Module):
    """Bring a tensor stored in order `src` into order `dst` (one gather along channels)."""

    index: torch.Tensor

    def __init__(self, src: Order, dst: Order, channels: int):
        super().__init__()
        src_t = torch.arange(channels) if src is None else src
        dst_t = torch.arange(channels) if dst is None else dst
        # stored_dst[p] = x[dst[p]] = stored_src[inverse(src)[dst[p]]]
        self.register_buffer("index", inverse(src_t)[dst_t], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return from_rows(rows(to_channels_last(x)).index_select(1, self.index), b, h, w)
