"""Each channel-local layer against an independent dense reference with the same weights.

The references are written from the docs/design.md §1 definitions (masks, index formulas, banded
matrices), never from the modules' own helpers, and are compared in float64.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis
from torch import nn

from search_space import build_model, load_arch
from search_space.arch import ClcStage, ConvClassifierHead, DwsCWStage
from search_space.blocks.clc import IGC, ClcBlock
from search_space.blocks.dwscw import DwsCWBlock
from search_space.blocks.heads import ConvClassifier
from search_space.blocks.hetconv import HetConv2d
from search_space.blocks.layers import ChannelShuffle, ChannelWiseConv, channel_shuffle, get_act

TOL = 1e-5
DT = torch.float64


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def randomise_bn(module: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters so eval-mode BN is not the identity."""
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.normal_()
            bn.bias.data.normal_()


def bn_ref(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Eval-mode batch norm written out: `(x - mean) / sqrt(var + eps) * gamma + beta`."""
    shape = (1, -1, 1, 1)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean.view(shape)) * scale.view(shape) + bn.bias.view(shape)


def grouped_to_dense(w: torch.Tensor, cin: int, groups: int) -> torch.Tensor:
    """Dense `(cout, cin, kh, kw)` weight of a grouped conv: output `o` of group `o // (cout/g)`
    reads input group `o // (cout/g)`; zeros elsewhere."""
    cout = w.shape[0]
    per_in, per_out = cin // groups, cout // groups
    dense = w.new_zeros(cout, cin, *w.shape[2:])
    for o in range(cout):
        g = o // per_out
        dense[o, g * per_in : (g + 1) * per_in] = w[o]
    return dense


# -- HetConv (contiguous arrangement) --------------------------------------------------------


def contiguous_mask(cin: int, cout: int, part: int, k: int) -> torch.Tensor:
    """docs/design.md §1.3, contiguous: filter `n` (group `n // (N/P)`) has kxk kernels on input
    group
    `n // (N/P)` and 1x1 (centre tap) kernels on every other input channel."""
    mask = torch.zeros(cout, cin, k, k, dtype=DT)
    for n in range(cout):
        for i in range(cin):
            if i // (cin // part) == n // (cout // part):
                mask[n, i] = 1
            else:
                mask[n, i, k // 2, k // 2] = 1
    return mask


def shifted_mask(cin: int, cout: int, part: int, k: int) -> torch.Tensor:
    """The paper's arrangement: filter `n` has kxk kernels on inputs `i` with `i % P == n % P`."""
    mask = torch.zeros(cout, cin, k, k, dtype=DT)
    for n in range(cout):
        for i in range(cin):
            if i % part == n % part:
                mask[n, i] = 1
            else:
                mask[n, i, k // 2, k // 2] = 1
    return mask


def load_hetconv(het: HetConv2d, dense: torch.Tensor) -> None:
    """Copy a contiguous-pattern dense weight into the HetConv parameters.

    Layout: `spatial` is a grouped kxk conv (groups = P); `pointwise` is a grouped 1x1 conv
    (groups = P) whose group `j` reads the channels outside input group `j` in increasing order.
    """
    cout, cin, k, _ = dense.shape
    part = het.part
    m, n_per = cin // part, cout // part
    with torch.no_grad():
        for n in range(cout):
            j = n // n_per
            het.spatial.weight[n] = dense[n, j * m : (j + 1) * m]
            if het.pointwise is not None:
                others = [i for i in range(cin) if i // m != j]
                het.pointwise.weight[n, :, 0, 0] = dense[n, others, k // 2, k // 2]


def hetconv_weights(cin: int, cout: int, part: int, k: int) -> int:
    return cout * (cin // part * k * k + cin - cin // part)  # HetConv Sec. 3, FL_HC / Ho*Wo


HETCONV_CASES = [
    (cin, cout, part, k, stride)
    for cin, cout in ((8, 16), (8, 8), (16, 8))
    for part in (1, 2, 4, cin)
    for k, stride in ((3, 1), (3, 2))
    if cout % part == 0
] + [(8, 16, 4, 5, 1), (8, 16, 8, 5, 2)]


@pytest.mark.parametrize(("cin", "cout", "part", "k", "stride"), HETCONV_CASES)
def test_hetconv_equals_masked_dense_conv(cin, cout, part, k, stride):
    het = HetConv2d(cin, cout, part=part, kernel=k, stride=stride, bias=True).to(DT)
    mask = contiguous_mask(cin, cout, part, k)
    dense = torch.randn(cout, cin, k, k, dtype=DT) * mask
    load_hetconv(het, dense)
    bias = torch.randn(cout, dtype=DT)
    with torch.no_grad():
        het.spatial.bias.copy_(bias)
    x = torch.randn(2, cin, 9, 9, dtype=DT)
    ref = F.conv2d(x, dense, bias, stride=stride, padding=k // 2)
    with torch.no_grad():
        assert max_diff(het(x), ref) < TOL
        # The module's own export helper agrees with the independent layout.
        assert max_diff(het.dense_weight(), dense) < TOL


@pytest.mark.parametrize(("cin", "cout", "part", "k", "stride"), HETCONV_CASES)
def test_hetconv_params_and_fvcore_madds(cin, cout, part, k, stride):
    het = HetConv2d(cin, cout, part=part, kernel=k, stride=stride, bias=True)
    weights = hetconv_weights(cin, cout, part, k)
    # Exactly the pattern's free entries: nothing masked, nothing extra (docs/design.md §1.3).
    assert sum(p.numel() for p in het.parameters()) == weights + cout
    assert int(contiguous_mask(cin, cout, part, k).sum()) == weights
    size = 9
    out = (size - 1) // stride + 1
    flops = FlopCountAnalysis(het, torch.randn(1, cin, size, size))
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    assert flops.by_operator()["conv"] == out * out * weights


@pytest.mark.parametrize(("cin", "cout", "part"), [(8, 16, 2), (8, 16, 4), (8, 8, 8), (12, 6, 3)])
def test_hetconv_shifted_arrangement_is_a_channel_relabelling(cin, cout, part):
    """The paper's shifted HetConv equals the contiguous module with inputs and outputs relabelled
    `c -> (c % P) * (C/P) + c // P` (docs/design.md §1.3)."""
    k = 3

    def relabel(c: int, channels: int) -> int:
        return (c % part) * (channels // part) + c // part

    pi_in = torch.tensor([relabel(i, cin) for i in range(cin)])
    pi_out = torch.tensor([relabel(n, cout) for n in range(cout)])
    shifted, contiguous = shifted_mask(cin, cout, part, k), contiguous_mask(cin, cout, part, k)
    assert torch.equal(shifted, contiguous[pi_out][:, pi_in])

    w_shifted = torch.randn(cout, cin, k, k, dtype=DT) * shifted
    w_contiguous = torch.zeros_like(w_shifted)
    w_contiguous[pi_out.unsqueeze(1), pi_in.unsqueeze(0)] = w_shifted
    het = HetConv2d(cin, cout, part=part, kernel=k).to(DT)
    load_hetconv(het, w_contiguous)

    x_shifted = torch.randn(2, cin, 7, 7, dtype=DT)
    x_contiguous = torch.empty_like(x_shifted)
    x_contiguous[:, pi_in] = x_shifted
    with torch.no_grad():
        y_shifted = het(x_contiguous)[:, pi_out]
    assert max_diff(y_shifted, F.conv2d(x_shifted, w_shifted, padding=k // 2)) < TOL


# -- clcNet: IGC and the CLC block ------------------------------------------------------------


def interlace_rows(w: torch.Tensor, g1: int) -> torch.Tensor:
    """Rows of the dense IGC weight: `out[k*g1 + i] = in[i*(L/g1) + k]` (docs/design.md §1.2)."""
    channels = w.shape[0]
    per = channels // g1
    out = torch.empty_like(w)
    for k in range(per):
        for i in range(g1):
            out[k * g1 + i] = w[i * per + k]
    return out


IGC_CASES = [(8, 8, 1), (8, 8, 2), (8, 8, 4), (8, 8, 8), (8, 16, 4), (16, 8, 8), (12, 12, 3)]


@pytest.mark.parametrize("interlace", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("cin", "mid", "g1"), IGC_CASES)
def test_igc_equals_dense_interlaced_conv(cin, mid, g1, stride, interlace):
    igc = IGC(cin, mid, groups=g1, stride=stride, interlace=interlace).to(DT)
    dense = grouped_to_dense(igc.conv.weight.detach(), cin, g1)
    if interlace:
        dense = interlace_rows(dense, g1)
    x = torch.randn(2, cin, 9, 9, dtype=DT)
    with torch.no_grad():
        assert max_diff(igc(x), F.conv2d(x, dense, stride=stride, padding=1)) < TOL


@pytest.mark.parametrize(
    ("cin", "cout", "g1", "g2", "mid", "stride"),
    [
        (32, 64, 16, 2, None, 1),
        (16, 32, 4, 4, None, 2),
        (8, 16, 2, 2, 16, 1),
        (12, 12, 3, 2, None, 1),
    ],
)
def test_clc_block_equals_dense_igc_bn_gc_bn_relu(cin, cout, g1, g2, mid, stride):
    spec = ClcStage(block="clc", out=cout, g1=g1, g2=g2, mid=mid)
    block = ClcBlock(spec, cin=cin, cout=cout, stride=stride, first=True).to(DT).eval()
    randomise_bn(block)
    w_igc = interlace_rows(grouped_to_dense(block.igc.conv.weight.detach(), cin, g1), g1)
    gc_conv, gc_bn = block.gc[0], block.gc[1]
    w_gc = grouped_to_dense(gc_conv.weight.detach(), mid or cin, g2)
    x = torch.randn(2, cin, 8, 8, dtype=DT)
    with torch.no_grad():
        y = bn_ref(F.conv2d(x, w_igc, stride=stride, padding=1), block.bn)  # no activation
        ref = torch.relu(bn_ref(F.conv2d(y, w_gc), gc_bn))
        assert max_diff(block(x), ref) < TOL


# -- ChannelNets: channel-wise convolutions ------------------------------------------------


def channel_band(weight: torch.Tensor, channels: int, stride: int) -> torch.Tensor:
    """Dense `(C_out, C_in)` matrix of a channel-wise conv (docs/design.md §1.4): kernel `j` slides
    over all
    `C` channels with stride `s` and front padding `floor((dc - s) / 2)`; output `j*C/s + o`
    is `sum_t w_j[t] * x[o*s - front + t]` (zero outside the channels)."""
    kernels, dc = weight.shape[0], weight.shape[2]
    front = (dc - stride) // 2
    per = channels // stride
    band = weight.new_zeros(kernels * per, channels)
    for j in range(kernels):
        for o in range(per):
            for t in range(dc):
                c = o * stride - front + t
                if 0 <= c < channels:
                    band[j * per + o, c] += weight[j, 0, t, 0, 0]
    return band


def apply_band(band: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("oc,bchw->bohw", band, x)


@pytest.mark.parametrize("dc", [1, 3, 4, 8])
@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("channels", [8, 16])
def test_group_channel_wise_conv_equals_banded_matrix(channels, groups, dc):
    cw = ChannelWiseConv(channels, cw_kernel=dc, kernels=groups, cw_stride=groups).to(DT)
    band = channel_band(cw.conv.weight.detach(), channels, groups)
    x = torch.randn(2, channels, 5, 5, dtype=DT)
    with torch.no_grad():
        y = cw(x)
    assert y.shape[1] == cw.out_channels == channels
    assert max_diff(y, apply_band(band, x)) < TOL
    # Every output group covers all C input channels iff dc >= g (ChannelNets Sec. 3.3).
    support = channel_band(torch.ones_like(cw.conv.weight), channels, groups) != 0
    per = channels // groups
    covers = all(bool(support[j * per : (j + 1) * per].any(0).all()) for j in range(groups))
    assert covers == (dc >= groups)


@pytest.mark.parametrize(
    ("cin", "cout", "dc"), [(8, 16, 3), (8, 32, 8), (4, 8, 1), (16, 8, 3), (32, 8, 4), (32, 8, 2)]
)
def test_dwscw_channel_wise_widening_and_narrowing(cin, cout, dc):
    """DWSCW: `N/M` kernels when widening, channel stride `M/N` when narrowing (docs/design.md
    §1.4)."""
    kernels, stride = (cout // cin, 1) if cout >= cin else (1, cin // cout)
    cw = ChannelWiseConv(cin, cw_kernel=dc, kernels=kernels, cw_stride=stride).to(DT)
    x = torch.randn(2, cin, 4, 4, dtype=DT)
    band = channel_band(cw.conv.weight.detach(), cin, stride)
    with torch.no_grad():
        assert max_diff(cw(x), apply_band(band, x)) < TOL

    spec = DwsCWStage(block="dwscw", out=cout, cw_kernel=dc)
    block = DwsCWBlock(spec, cin=cin, cout=cout, stride=2, first=True).to(DT).eval()
    randomise_bn(block)
    assert block.cw.conv.weight.shape == (kernels, 1, dc, 1, 1)
    dw_conv = block.dw[0]
    band = channel_band(block.cw.conv.weight.detach(), cin, stride)
    x = torch.randn(2, cin, 8, 8, dtype=DT)
    with torch.no_grad():
        # No BN or activation between the depthwise and the channel-wise conv (ChannelNets §4.2).
        y = F.conv2d(x, dw_conv.weight, stride=2, padding=1, groups=cin)
        ref = F.relu6(bn_ref(apply_band(band, y), block.bn))
        assert max_diff(block(x), ref) < TOL


# -- ChannelNets: convolutional classification layer -------------------------------------------


@pytest.mark.parametrize(
    ("channels", "classes", "size"), [(16, 10, 1), (16, 10, 4), (10, 10, 3), (32, 1, 2), (7, 3, 5)]
)
def test_conv_classifier_equals_sliding_channel_window(channels, classes, size):
    """`logit[c] = sum_{t,h,w} W[t,h,w] * x[c + t, h, w]`, `t < M - n + 1` (docs/design.md §1.4)."""
    head = ConvClassifier(
        ConvClassifierHead(type="conv_classifier"),
        channels=channels,
        size=size,
        num_classes=classes,
    ).to(DT)
    window = channels - classes + 1
    assert sum(p.numel() for p in head.parameters()) == window * size * size
    w = head.conv.weight.detach()[0, 0]
    x = torch.randn(3, channels, size, size, dtype=DT)
    ref = torch.einsum("bnhwt,thw->bn", x.unfold(1, window, 1), w)
    explicit = torch.stack(
        [(x[:, c : c + window] * w).sum((1, 2, 3)) for c in range(classes)], dim=1
    )
    with torch.no_grad():
        y = head(x)
    assert y.shape == (3, classes)
    assert max_diff(y, ref) < TOL
    assert max_diff(y, explicit) < TOL


# -- Channel shuffle ---------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "groups"), [(12, 3), (16, 4), (8, 1), (8, 8), (24, 2)])
def test_channel_shuffle_index_formula(channels, groups):
    """`out[k*g + i] = in[i*(C/g) + k]` (docs/design.md §1.1/§1.2)."""
    x = torch.randn(2, channels, 3, 3, dtype=DT)
    per = channels // groups
    ref = torch.empty_like(x)
    for k in range(per):
        for i in range(groups):
            ref[:, k * groups + i] = x[:, i * per + k]
    assert torch.equal(channel_shuffle(x, groups), ref)
    assert torch.equal(ChannelShuffle(groups)(x), ref)


@pytest.mark.parametrize(("channels", "groups"), [(12, 3), (16, 4), (24, 2)])
def test_channel_shuffle_keeps_channels_last(channels, groups):
    """On an NHWC map the shuffle gives the same values and gradients and stays NHWC (a copy
    back to NCHW in every interlace halved clcNet's channels_last training speed)."""
    x = torch.randn(2, channels, 3, 5, dtype=DT)
    weight = torch.arange(channels, dtype=DT).view(1, -1, 1, 1)
    grads = []
    for layout in (torch.contiguous_format, torch.channels_last):
        leaf = x.clone().requires_grad_()
        y = channel_shuffle(leaf.contiguous(memory_format=layout), groups)
        assert y.is_contiguous(memory_format=layout)
        assert torch.equal(y, channel_shuffle(x, groups))
        (y * weight).sum().backward()
        grads.append(leaf.grad)
    assert torch.equal(grads[0], grads[1])


@pytest.mark.parametrize(("cin", "cout", "part", "stride"), [(8, 12, 2, 1), (16, 16, 4, 2)])
def test_hetconv_keeps_channels_last(cin, cout, part, stride):
    """HetConv on an NHWC map gives the same output and gradients as on NCHW and stays NHWC (its
    channel gather returned NCHW and made every layer convert both ways)."""
    torch.manual_seed(0)
    het = HetConv2d(cin, cout, part=part, stride=stride).to(DT)
    x = torch.randn(2, cin, 5, 7, dtype=DT)
    seen: list[torch.Tensor] = []
    assert het.pointwise is not None
    het.pointwise.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    outs, grads = [], []
    for layout in (torch.contiguous_format, torch.channels_last):
        het.zero_grad()
        for p in het.parameters():
            p.data = p.data.contiguous(memory_format=layout)
        leaf = x.clone().requires_grad_()
        y = het(leaf.contiguous(memory_format=layout))
        assert y.is_contiguous(memory_format=layout)
        assert seen[-1].is_contiguous(memory_format=layout)  # the gathered map the 1x1 conv gets
        (y * torch.arange(cout, dtype=DT).view(1, -1, 1, 1)).sum().backward()
        outs.append(y.detach())
        grads.append((leaf.grad, *(p.grad.clone() for p in het.parameters())))
    assert max_diff(outs[0], outs[1]) < TOL
    for a, b in zip(*grads, strict=True):
        assert max_diff(a, b) < TOL


def test_relu6_is_out_of_place():
    """ReLU6 leaves its input as it is: in place, autograd would clone the input of every
    activation for the backward pass (docs/hardware.md#activations)."""
    x = torch.linspace(-3.0, 9.0, 13).view(1, 13, 1, 1)
    y = get_act("relu6")(x)
    assert torch.equal(y, x.clamp(0.0, 6.0))
    assert x.min() < 0 and x.max() > 6  # untouched


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_out_of_place_relu6_trains_identically(layout):
    """MobileNetV2 with the out-of-place ReLU6 gives bitwise the same loss, gradients and BN
    statistics as with in-place ReLU6, on either layout."""
    model = build_model(load_arch("mobilenet_v2_cifar100").with_changes(num_classes=10))
    in_place = copy.deepcopy(model)
    relu6 = [m for m in in_place.modules() if isinstance(m, nn.ReLU6)]
    assert relu6
    for m in relu6:
        assert not m.inplace
        m.inplace = True
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=layout)
    y = torch.arange(4)
    losses = []
    for m in (model, in_place):
        m.train().to(memory_format=layout)
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        losses.append(loss.detach())
    assert torch.equal(losses[0], losses[1])
    for (name, a), b in zip(model.named_parameters(), in_place.parameters(), strict=True):
        assert a.grad is not None and torch.equal(a.grad, b.grad), name
    for a, b in zip(model.buffers(), in_place.buffers(), strict=True):
        assert torch.equal(a, b)
