"""The form of a network that is exported to ONNX (`search_space/export.py`).

ONNX runtimes fold BatchNorm and fuse activations themselves and run their own layouts, so the
exported graph keeps the reference structure except where a runtime has no fast kernel for an
op: the IGC's small-group convolution (2 input channels per group in clcNet). ONNX Runtime runs
it 4-5x slower per multiply-add than a depthwise convolution, so it is exported as depthwise
convolutions: with `c = M/g1` inputs per IGC group, interlaced output position `p` (IGC output
channel `o`, in group `o // r`) is `sum_t conv_t(x[(o // r)*c + t])`, i.e. `c` channel gathers
(the interlace folds into their indices) feeding `c` depthwise convolutions that are summed.
Same function, same multiply-adds (`c * L * k*k` per pixel).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from search_space.blocks.clc import IGC
from search_space.builder import Network
from search_space.runtime.fused_network import FusedNetwork

MAX_DEPTHWISE_CRF = 4  # beyond this many inputs per group the grouped convolution is kept


class DepthwiseIGC(nn.Module):
    """An `IGC` as `c` gathers + `c` depthwise convolutions + `c - 1` additions."""

    def __init__(self, igc: IGC):
        super().__init__()
        conv = igc.conv
        mid, g1 = conv.out_channels, conv.groups
        c, r, k = conv.in_channels // g1, mid // g1, conv.kernel_size[0]
        pos = torch.arange(mid)
        interlace = not isinstance(igc.interlace, nn.Identity)
        src = (pos % g1) * r + pos // g1 if interlace else pos  # conv channel at position p
        weight = conv.weight.detach()[src]  # (L, c, k, k), in output-position order
        self.stride, self.padding, self.channels = conv.stride, k // 2, mid
        self.weights = nn.ParameterList(
            nn.Parameter(weight[:, t : t + 1].clone(), requires_grad=False) for t in range(c)
        )
        for t in range(c):
            index = (src // r) * c + t
            identity = index.numel() == conv.in_channels and torch.equal(
                index, torch.arange(index.numel())
            )
            self.register_buffer(f"index{t}", None if identity else index, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor | None = None
        for t, weight in enumerate(self.weights):
            index = getattr(self, f"index{t}")
            xt = x if index is None else x.index_select(1, index)
            yt = F.conv2d(xt, weight, None, self.stride, self.padding, 1, self.channels)
            y = yt if y is None else y + yt
        assert y is not None
        return y


def onnx_form(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every small-CRF IGC as depthwise convolutions."""
    form = copy.deepcopy(model).eval()
    if isinstance(form, FusedNetwork):
        # a downcast (the same modules): export traces the reference modules, never the fused form
        form.__class__ = Network  # type: ignore[assignment]
    for parent in list(form.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, IGC):
                c = child.conv.in_channels // child.conv.groups
                if c <= MAX_DEPTHWISE_CRF:
                    setattr(parent, name, DepthwiseIGC(child))
    return form
