"""`fuse`: the inference form of a block or a whole network.

Every module of the reference tree is replaced by its fused form (BN folded, channels_last, the
per-shape implementations of `conv.py`, `clc.py`, `hetconv.py`, `layers.py`); a module without a
fused form is kept, in eval mode. Along a network's chain of stem, blocks and head, a layer that
wants its input in a particular channel order (the fast IGC's pairing) gets it from the layer
before whenever that layer can write any order for free (a dense convolution, a CLC block's
GEMMs, a depthwise separable block's pointwise convolution); otherwise one gather reorders.

The fused module is for `torch.inference_mode()` on CPU. It holds folded copies of the weights
(a few small parameters without a fused form, e.g. e-ANT's mixing logits, are read from the
reference module), so `FusedNetwork` rebuilds it when anything it was built from changes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from search_space.blocks.clc import ClcBlock
from search_space.blocks.dws import DwsBlock
from search_space.blocks.heads import ConvClassifier, FCClassifier
from search_space.blocks.hetconv import HetConvBlock
from search_space.blocks.layers import ChannelShuffle, ChannelWiseConv, ConvBNAct, SqueezeExcite
from search_space.builder import Network
from search_space.runtime.clc import FusedClc, wanted_order, z_crf
from search_space.runtime.conv import FusedConv
from search_space.runtime.folding import Order, Reorder
from search_space.runtime.hetconv import fuse_hetconv
from search_space.runtime.kernels import register_flop_formula_once
from search_space.runtime.layers import (
    ChannelsLastShuffle,
    FusedBatchNorm,
    FusedChannelWise,
    FusedConvClassifier,
    FusedFCHead,
    FusedSqueezeExcite,
)

# Modules whose fused form takes the order its input arrives in and can write any output order.
OrderedFuser = Callable[[nn.Module, Order, Order], tuple[nn.Module, Order]]


def _fuse_conv(seq: nn.Module, in_order: Order, out_order: Order) -> tuple[nn.Module, Order]:
    assert isinstance(seq, ConvBNAct)
    conv = seq[0]
    assert isinstance(conv, nn.Conv2d)
    if conv.groups > 1:
        return _natural(FusedConv.from_conv_bn_act(seq), in_order, _channels_in(seq))
    return FusedConv.from_conv_bn_act(seq, in_order=in_order, out_order=out_order), out_order


def _fuse_dws(block: nn.Module, in_order: Order, out_order: Order) -> tuple[nn.Module, Order]:
    assert isinstance(block, DwsBlock)
    # The depthwise conv keeps whatever order its input has; the pointwise conv absorbs it.
    dw = FusedConv.from_conv_bn_act(block.dw, in_order=in_order, out_order=in_order)
    pw = FusedConv.from_conv_bn_act(block.pw, in_order=in_order, out_order=out_order)
    return nn.Sequential(dw, pw), out_order


def _fuse_clc(block: nn.Module, in_order: Order, out_order: Order) -> tuple[nn.Module, Order]:
    assert isinstance(block, ClcBlock)
    return FusedClc(block, in_order=in_order, out_order=out_order), out_order


def _fuse_head(head: nn.Module, in_order: Order, out_order: Order) -> tuple[nn.Module, Order]:
    assert isinstance(head, FCClassifier)
    return FusedFCHead(head, in_order=in_order), None


ORDERED: dict[type[nn.Module], OrderedFuser] = {
    ConvBNAct: _fuse_conv,
    DwsBlock: _fuse_dws,
    ClcBlock: _fuse_clc,
    FCClassifier: _fuse_head,
}

# Modules replaced one for one (natural channel order in and out).
PLAIN: dict[type[nn.Module], Callable[[nn.Module], nn.Module]] = {
    HetConvBlock: fuse_hetconv,  # type: ignore[dict-item]
    SqueezeExcite: FusedSqueezeExcite,  # type: ignore[dict-item]
    ChannelWiseConv: FusedChannelWise,  # type: ignore[dict-item]
    ChannelShuffle: ChannelsLastShuffle,  # type: ignore[dict-item]
    ConvClassifier: FusedConvClassifier,  # type: ignore[dict-item]
    nn.BatchNorm2d: FusedBatchNorm,  # type: ignore[dict-item]
}

# Channel-wise modules: a permutation of the channels passes straight through them.
PASS_THROUGH = (nn.MaxPool2d, nn.AvgPool2d, nn.Identity)


def _channels_in(module: nn.Module) -> int:
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Conv3d | nn.Linear):
            return int(m.weight.shape[1] * getattr(m, "groups", 1))
    raise ValueError(f"cannot tell the input width of {type(module).__name__}")


def _natural(fused: nn.Module, in_order: Order, channels: int) -> tuple[nn.Module, Order]:
    if in_order is None:
        return fused, None
    return nn.Sequential(Reorder(in_order, None, channels), fused), None


def _fuse_plain(module: nn.Module) -> nn.Module:
    """Fused copy of `module` with natural channel order in and out, recursing into children."""
    for kind, fuser in PLAIN.items():
        if type(module) is kind:
            return fuser(module)
    if isinstance(module, ConvBNAct):
        return FusedConv.from_conv_bn_act(module)
    if type(module) in ORDERED:
        fused, _ = ORDERED[type(module)](module, None, None)
        return fused
    clone = copy.copy(module)
    clone._modules = {name: _fuse_plain(child) for name, child in module.named_children()}
    return clone.eval()


def _wanted(units: list[nn.Module], start: int) -> Order:
    """The input order the first order-sensitive unit at or after `start` would like."""
    for unit in units[start:]:
        if isinstance(unit, PASS_THROUGH):
            continue
        if isinstance(unit, ClcBlock):
            return wanted_order(unit)
        return None
    return None


def _handoff(successor: nn.Module) -> tuple[int, Order] | None:
    """`(next_crf, order)` when a CLC block followed by `successor` may hand its output over
    group-major: to a Z-path CLC block (its CRF size, its pairing), or to an FC head that pools
    first (natural order: `next_crf = 1`)."""
    crf = z_crf(successor)
    if crf is not None:
        return crf, wanted_order(successor)  # type: ignore[arg-type]
    if isinstance(successor, FCClassifier) and isinstance(successor.conv, nn.Identity):
        return 1, None
    return None


def fuse_chain(units: list[nn.Module]) -> nn.Sequential:
    """Fuse a sequence of modules applied one after the other, negotiating channel orders."""
    fused: list[nn.Module] = []
    order: Order = None
    for i, unit in enumerate(units):
        if isinstance(unit, PASS_THROUGH):
            fused.append(unit)
            continue
        fuser = ORDERED.get(type(unit))
        if fuser is None:
            module, order = _natural(_fuse_plain(unit), order, _channels_in(unit))
            fused.append(module)
            continue
        handoff = _handoff(units[i + 1]) if i + 1 < len(units) else None
        if isinstance(unit, ClcBlock) and handoff is not None:  # group-major (fused clc.py)
            next_crf, order_out = handoff
            fused.append(FusedClc(unit, in_order=order, out_order=order_out, next_crf=next_crf))
            order = order_out
            continue
        module, order = fuser(unit, order, _wanted(units, i + 1))
        fused.append(module)
    if order is not None:
        raise RuntimeError("a fused chain must end in the natural channel order")
    return nn.Sequential(*fused).eval()


def preferred_order(module: nn.Module) -> Order:
    """The channel order `module`'s fused form reads without a reorder (`None`: natural)."""
    return _wanted([module], 0)


def fuse_block(module: nn.Module, *, in_order: Order = None, out_order: Order = None) -> nn.Module:
    """Fused form of one block (or layer) that receives its input stored in `in_order` and
    writes `out_order` where it can (as it would inside a network); natural order otherwise."""
    register_flop_formula_once()
    with torch.no_grad():
        fuser = ORDERED.get(type(module))
        if fuser is None:
            return _natural(_fuse_plain(module), in_order, _channels_in(module))[0]
        return fuser(module, in_order, out_order)[0]


def fuse(module: nn.Module) -> nn.Module:
    """Inference-only fused copy of a block, head or `Network`: the same function as `module` in
    eval mode, with the same multiply-adds, for `torch.inference_mode()` on CPU. The copy does
    not follow later changes to `module` (a `FusedNetwork` rebuilds its own)."""
    register_flop_formula_once()
    with torch.no_grad():
        if isinstance(module, Network):
            units: list[nn.Module] = list(module.stem.children())
            for stage in module.stages.children():
                units.extend(stage.children())
            units.append(module.head)
            return fuse_chain(units)
        return _fuse_plain(module)
