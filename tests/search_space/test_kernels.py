"""`search_space/runtime/kernels.py`: the packed oneDNN convolution and the GEMM that
runs on MKL or oneDNN by shape. Each against float64 `F.conv2d` / matmul (the 1e-5 contract),
the per-shape rule, the pack cache and what copies, pickling and dtype changes do to it, and the
multiply-adds `FlopCounterMode` counts."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from search_space.runtime import kernels
from search_space.runtime.kernels import Conv, Gemm, use_onednn

pytestmark = pytest.mark.skipif(not kernels._ONEDNN, reason="PyTorch built without oneDNN")

ACTS = {"none": lambda y: y, "relu": F.relu, "relu6": lambda y: y.clamp(0.0, 6.0)}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def rel_err(y: torch.Tensor, truth: torch.Tensor) -> float:
    return (y.double() - truth).abs().max().item() / max(1.0, truth.abs().max().item())


CONV_CASES = [
    # cin, cout, kernel, stride, padding, groups, input (H, W)
    (3, 16, (3, 3), (2, 2), (1, 1), 1, (15, 14)),  # a stem
    (16, 16, (3, 3), (1, 1), (1, 1), 16, (9, 7)),  # depthwise
    (8, 8, (3, 6), (1, 2), (1, 2), 8, (6, 10)),  # the CLC Z map's depthwise kernel
    (8, 8, (3, 6), (2, 4), (1, 2), 8, (7, 12)),  # ... with stride 2
    (16, 24, (3, 3), (1, 1), (1, 1), 4, (5, 5)),  # grouped (HetConv's kxk part)
    (32, 48, (1, 1), (1, 1), (0, 0), 1, (6, 6)),
]


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize(("cin", "cout", "kernel", "stride", "padding", "groups", "hw"), CONV_CASES)
def test_packed_conv_equals_conv2d(cin, cout, kernel, stride, padding, groups, hw, act):
    w = torch.randn(cout, cin // groups, *kernel)
    b = torch.randn(cout)
    x = torch.randn(2, cin, *hw).contiguous(memory_format=torch.channels_last)
    conv = Conv(w, b, stride=stride, padding=padding, groups=groups, act=act)
    with torch.inference_mode():
        y = conv(x)
    truth = ACTS[act](F.conv2d(x.double(), w.double(), b.double(), stride, padding, 1, groups))
    assert y.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
    assert len(conv.packs) == 1  # it ran on oneDNN
    assert rel_err(y, truth) < 1e-5


GEMM_CASES = [
    # groups, rows, K, N
    (1, 4, 1024, 1024),  # oneDNN by the rule
    (2, 49, 1024, 1024),
    (4, 4, 2048, 512),
    (1, 1, 1024, 1000),  # a classifier at batch 1
    (1, 3, 64, 32),  # MKL by the rule
    (2, 7, 64, 32),
]


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize(("groups", "rows", "k", "n"), GEMM_CASES)
def test_gemm_equals_matmul_on_either_library(groups, rows, k, n, act):
    w = torch.randn(groups, k // groups, n // groups) / k**0.5
    b = torch.randn(n)
    gemm = Gemm(w, b, act)
    a = torch.randn(rows, k)
    with torch.inference_mode():
        y = gemm(a)
    blocks = [
        a[:, j * k // groups : (j + 1) * k // groups].double() @ w[j].double()
        for j in range(groups)
    ]
    truth = ACTS[act](torch.cat(blocks, 1) + b.double())
    assert y.shape == (rows, n) and y.is_contiguous()
    assert len(gemm.packs) == (1 if gemm.onednn(rows) else 0)
    assert gemm.onednn(rows) == (w.numel() >= 2**17)  # these cases sit on either side
    assert rel_err(y, truth) < 1e-5


def test_gemm_reads_strided_rows() -> None:
    w, b = torch.randn(2, 512, 512) / 32, torch.randn(1024)
    gemm = Gemm(w, b, "none")
    a = torch.randn(49, 2048)[:, 512:1536]  # a column slice: rows with a leading dimension
    with torch.inference_mode():
        y = gemm(a)
    truth = torch.cat([a[:, :512].double() @ w[0].double(), a[:, 512:].double() @ w[1].double()], 1)
    assert gemm.onednn(49) and rel_err(y, truth + b.double()) < 1e-5


@pytest.mark.parametrize(
    ("rows", "weights", "expected"),
    [
        (1, 2**19 - 1, False),
        (1, 2**19, True),
        (2, 2**18 - 1, False),
        (48, 2**18, True),
        (49, 2**17 - 1, False),
        (49, 2**17, True),
        (195, 2**17 - 1, False),
        (196, 2**16, True),
        (10**6, 2**16 - 1, False),
    ],
)
def test_onednn_rule_by_rows_and_weights(rows, weights, expected):
    assert use_onednn(rows, weights, torch.float32) == expected
    assert not use_onednn(rows, weights, torch.float64)  # oneDNN has no float64 kernels


def test_packs_are_kept_per_shape_and_bounded() -> None:
    conv = Conv(torch.randn(8, 8, 3, 3), None, stride=(1, 1), padding=(1, 1), groups=1)
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        conv(x)
        first = conv.packs[(1, 8, 6, 6)]
        conv(x)
        assert conv.packs[(1, 8, 6, 6)] is first  # laid out once per shape
        for size in range(7, 7 + kernels.PACKS_KEPT):
            conv(torch.randn(1, 8, size, size))
    assert len(conv.packs) <= kernels.PACKS_KEPT


def test_copies_pickles_and_dtype_changes_pack_again() -> None:
    conv = Conv(torch.randn(16, 1, 3, 3), torch.randn(16), stride=(1, 1), padding=(1, 1), groups=16)
    gemm = Gemm(torch.randn(1, 1024, 1024) / 32, torch.randn(1024), "relu")
    x, a = torch.randn(1, 16, 5, 5), torch.randn(4, 1024)
    with torch.inference_mode():
        y, z = conv(x), gemm(a)
        for module, inp, out in ((conv, x, y), (gemm, a, z)):
            assert len(module.packs) == 1
            for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
                assert len(clone.packs) == 0  # oneDNN's opaque tensors are not copied
                assert torch.equal(clone(inp), out)
            module.double()
            assert len(module.packs) == 0
            y64 = module(inp.double())  # float64: F.conv2d / MKL
            assert y64.dtype == torch.float64 and len(module.packs) == 0
            assert (y64 - out.double()).abs().max().item() < 1e-4


def test_flop_counter_counts_the_onednn_kernels() -> None:
    kernels.register_flop_formula_once()  # what `fuse` does on first use; twice is harmless
    kernels.register_flop_formula_once()
    conv = Conv(torch.randn(24, 4, 3, 3), None, stride=(2, 2), padding=(1, 1), groups=4)
    gemm = Gemm(torch.randn(2, 512, 512), torch.randn(1024), "relu")
    x, a = torch.randn(1, 16, 10, 10), torch.randn(49, 1024)
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            conv(x)
            gemm(a)
    assert len(conv.packs) == 1 and len(gemm.packs) == 1
    assert counter.get_total_flops() == 2 * (24 * 5 * 5 * 4 * 9 + 49 * 1024 * 512)


def test_unknown_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="gelu"):
        Gemm(torch.randn(1, 4, 4), torch.randn(4), "gelu")
    with pytest.raises(ValueError, match="gelu"):
        Conv(torch.randn(4, 4, 1, 1), None, stride=(1, 1), padding=(0, 0), groups=1, act="gelu")


def test_an_empty_batch_gives_an_empty_result() -> None:
    conv = Conv(torch.randn(8, 4, 3, 3), torch.randn(8), stride=(1, 1), padding=(1, 1), groups=1)
    gemm = Gemm(torch.randn(1, 1024, 1024), torch.randn(1024), "relu")
    with torch.inference_mode():
        assert conv(torch.randn(0, 4, 5, 5)).shape == (0, 8, 5, 5)
        assert gemm(torch.randn(0, 1024)).shape == (0, 1024)
