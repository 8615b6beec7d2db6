"""Layers shared by several blocks: conv + BN + activation, the channel shuffle, the channel-wise
convolution of ChannelNets and the squeeze-and-excitation attention of ANTNets."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from search_space.block_types.base import cw_padding, se_hidden

# ReLU6 is out of place: under autograd the in-place hardtanh_ clones its input for the backward
# pass (an extra copy and allocation per activation, ~9% of a channels_last MobileNetV2 step on
# CPU), while out-of-place hardtanh saves its input as it is; same values, same gradients.
# In-place ReLU saves its output instead and copies nothing, so it stays in place
# (docs/hardware.md#activations).
_ACTS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(),
    "none": nn.Identity,
}


def get_act(name: str) -> nn.Module:
    """Activation by name, so configs stay plain JSON (timm `create_act.get_act_layer`)."""
    try:
        return _ACTS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTS)}") from None


class ConvBNAct(nn.Sequential):
    """kxk conv (`padding = k // 2` unless given) + BatchNorm + activation (`act="none"` for a
    linear layer).

    `bn=False` with `act="none"` is a bare conv (ChannelNets' depthwise convs, docs/design.md
    §1.4); the disabled parts are `nn.Identity` so the layout is always (conv, bn, act).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        kernel: int | tuple[int, int] = 1,
        stride: int | tuple[int, int] = 1,
        groups: int = 1,
        act: str = "relu",
        bias: bool = False,
        bn: bool = True,
        padding: tuple[int, int] | None = None,
    ):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        pad = padding if padding is not None else (kh // 2, kw // 2)
        super().__init__(
            nn.Conv2d(cin, cout, (kh, kw), stride, pad, groups=groups, bias=bias),
            nn.BatchNorm2d(cout) if bn else nn.Identity(),
            get_act(act),
        )


def bare_depthwise(channels: int, *, kernel: int, stride: int = 1) -> ConvBNAct:
    """ChannelNets' depthwise conv: no BN and no activation before the 1x1 (or channel-wise)
    conv that follows it (Gao et al. 2018 §4.2; docs/design.md §1.4)."""
    return ConvBNAct(
        channels, channels, kernel=kernel, stride=stride, groups=channels, bn=False, act="none"
    )


def is_nhwc(x: torch.Tensor) -> bool:
    """Whether `x` is an NHWC map in memory (channels_last, and not also plain contiguous, as a
    1x1 map or a single channel would be); docs/hardware.md#memory-format."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet shuffle (docs/design.md §1.1); with `groups = g1` it is clcNet's interlace
    `out[k*g1 + i] = in[i*(L/g1) + k]` (docs/design.md §1.2)."""
    b, c, h, w = x.shape
    if is_nhwc(x):
        # Shuffle the innermost axis and keep the layout; the NCHW formula's reshape would copy
        # the map back to contiguous.
        y = x.permute(0, 2, 3, 1).reshape(b, h, w, groups, c // groups).transpose(3, 4)
        return y.reshape(b, h, w, c).permute(0, 3, 1, 2)
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ChannelWiseConv(nn.Module):
    """ChannelNets channel-wise convolution (docs/design.md §1.4): a Conv3d with kernel `(dc, 1,
    1)` over
    the `(B, 1, C, H, W)` view, shared by every spatial position.

    `kernels` independent kernels each slide over all `C` channels with stride `cw_stride` and
    produce `C / cw_stride` channels; output group `j` is kernel `j`, so the output has
    `kernels * C / cw_stride` channels. The group channel-wise conv with `g` groups is
    `kernels = cw_stride = g`; DWSCW uses `kernels = N / M` (widening) or `cw_stride = M / N`.
    Weights `kernels * dc`; MAdds `dc * C_out * H * W`.
    """

    def __init__(self, channels: int, *, cw_kernel: int, kernels: int = 1, cw_stride: int = 1):
        super().__init__()
        if channels % cw_stride:
            raise ValueError(f"cw_stride {cw_stride} does not divide {channels} channels")
        self.channels, self.kernels, self.cw_stride = channels, kernels, cw_stride
        self.pad = cw_padding(cw_kernel, cw_stride)
        self.conv = nn.Conv3d(1, kernels, (cw_kernel, 1, 1), (cw_stride, 1, 1), bias=False)

    @property
    def out_channels(self) -> int:
        return self.kernels * self.channels // self.cw_stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        v = F.pad(x.unsqueeze(1), (0, 0, 0, 0, *self.pad))
        return self.conv(v).reshape(b, self.out_channels, h, w)


class SqueezeExcite(nn.Module):
    """Channel attention (ANTNets, after SENet): pool, FC `C -> C/r`, ReLU, FC back, sigmoid,
    channel-wise multiply. Hidden width `max(1, C // r)`; both FCs carry a bias."""

    def __init__(self, channels: int, *, se_ratio: int):
        super().__init__()
        hidden = se_hidden(channels, se_ratio)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))
