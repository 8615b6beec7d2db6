"""The oneDNN kernels of the fused modules: convolutions with their weights packed once per
input shape and the bias and activation fused, and GEMMs (`act(a @ W + bias)`, dense or grouped)
that run on MKL or on such a packed 1x1 convolution, chosen per shape.

**Packed convolutions.** `F.conv2d` hands oneDNN the weights in PyTorch's layout, and oneDNN
re-lays them out on every call; the activation is one more pass over the output. `Conv` lays the
weights out once per input shape (`mkldnn_reorder_conv2d_weight`, the call PyTorch's own CPU
fusion passes make) and runs `mkldnn::_convolution_pointwise` with the activation as a post-op.
Measured (2-core AMD EPYC, PyTorch 2.13, 2 threads, batch 1, µs, ReLU included):

| convolution                  | F.conv2d + relu_ | packed |
|------------------------------|------------------|--------|
| 3x3 depthwise, 128 @ 56x56    |               98 |     77 |
| 3x3 depthwise, 1024 @ 7x7     |               53 |     39 |
| 3x3 stem, 3 -> 32, 224, s2    |              158 |    143 |
| 3x3, 256 -> 256 @ 8x8         |              480 |    315 |
| 3x3, 4 groups, 128 @ 16x16    |              150 |    113 |
| 1x1, 64 -> 128 @ 112x112      |             1038 |    975 |
| 1x1, 3 groups, 240 @ 28x28    |              269 |    184 |

**GEMMs.** MKL's sgemm runs its generic code path on this CPU (`MKL_VERBOSE` reports "Intel(R)
Architecture processors") and oneDNN its AVX-512 kernels. A GEMM over the `(P, K)` rows is a 1x1
convolution of a `1 x P` image (no copy); packed, it costs about 30 µs more than MKL's fixed
cost and is up to 3.4x faster on large weights (µs, bias and ReLU included; `g` groups, `K x N`
weights in all):

| rows | g | K x N       | MKL  | oneDNN packed |
|------|---|-------------|------|---------------|
| 1    | 1 | 512 x 512   |   32 |            39 |
| 1    | 1 | 1024 x 1024 |   76 |            61 |
| 4    | 1 | 512 x 512   |   64 |            44 |
| 4    | 1 | 1024 x 1024 |  256 |            75 |
| 4    | 2 | 512 x 512   |   35 |            36 |
| 49   | 1 | 256 x 256   |   47 |            59 |
| 49   | 1 | 256 x 512   |   96 |            91 |
| 49   | 1 | 1024 x 1024 |  733 |           498 |
| 49   | 2 | 1024 x 1024 |  384 |           263 |
| 196  | 1 | 256 x 256   |  139 |           145 |
| 196  | 1 | 512 x 512   |  538 |           478 |
| 784  | 1 | 128 x 256   |  261 |           259 |
| 784  | 1 | 256 x 256   |  509 |           480 |
| 784  | 4 | 256 x 512   |  323 |           265 |

So a GEMM runs on oneDNN when its weights (`K*N/g` values) reach `ONEDNN_MIN_WEIGHTS` for its row
count: the fewer rows share the weights, the larger they must be to pay for the fixed cost.
Weight-bound layers gain most: a mobile network's last blocks and classifier, a VGG's 4x4 and
2x2 layers.

Anything but float32, or a build without oneDNN, runs `F.conv2d` and MKL. Every path executes
exactly the convolution's or GEMM's multiply-adds.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import flop_registry, register_flop_formula

from search_space import torch_compat
from search_space.runtime.folding import act_, to_channels_last

# (fewest rows, least K*N/g weights): the first row that applies decides
ONEDNN_MIN_WEIGHTS = ((196, 2**16), (49, 2**17), (2, 2**18), (1, 2**19))
PACKS_KEPT = 8  # packed weights are kept for this many input shapes per layer

_ONEDNN = torch_compat.ONEDNN
# oneDNN post-ops for the activations of `folding.act_`: (name, scalars)
_POST_OP: dict[str, tuple[str, list[float | None]]] = {
    "none": ("none", [None]),
    "relu": ("relu", [None]),
    "relu6": ("hardtanh", [0.0, 6.0]),
}


def onednn_runs(dtype: torch.dtype) -> bool:
    return _ONEDNN and dtype == torch.float32


def use_onednn(rows: int, weights: int, dtype: torch.dtype) -> bool:
    """Whether a GEMM of `rows` rows through `weights` values (`K*N/g`) runs on oneDNN."""
    if not onednn_runs(dtype) or rows < 1:
        return False
    return weights >= next(w for r, w in ONEDNN_MIN_WEIGHTS if rows >= r)


class _Packs(dict[Any, torch.Tensor]):
    """Packed weights by input shape (row count for a GEMM), at most `PACKS_KEPT`. oneDNN's
    opaque tensors cannot be copied or pickled, so a copy of the module starts empty and packs
    again."""

    def get_or_pack(self, key: Any, pack: Callable[[], torch.Tensor]) -> torch.Tensor:
        packed = self.get(key)
        if packed is None:
            if len(self) >= PACKS_KEPT:
                self.clear()
            packed = self[key] = pack()
        return packed

    def __deepcopy__(self, memo: dict[int, Any]) -> _Packs:
        return _Packs()

    def __reduce__(self) -> tuple[type[_Packs], tuple[()]]:
        return _Packs, ()


class _Packed(nn.Module):
    """A kernel with an activation post-op and weights packed per input shape."""

    def __init__(self, act: str):
        super().__init__()
        if act not in _POST_OP:
            raise ValueError(f"unknown activation {act!r}")
        self.act = act
        self.packs = _Packs()

    def _apply(self, fn: Any, recurse: bool = True) -> _Packed:
        self.packs = _Packs()  # `.to()`, `.double()`, ...: pack the new weights again
        return super()._apply(fn, recurse)


def _pack(
    weight: torch.Tensor, padding: list[int], stride: list[int], groups: int, shape: list[int]
) -> torch.Tensor:
    """`weight` laid out by oneDNN for an input of `shape`."""
    return torch_compat.reorder_conv2d_weight(weight, padding, stride, groups, shape)


class Conv(_Packed):
    """`act(conv2d(x) + bias)` for a channels_last `x`, channels_last out."""

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        stride: tuple[int, int],
        padding: tuple[int, int],
        groups: int,
        act: str = "none",
    ):
        super().__init__(act)
        weight = weight.detach().contiguous(memory_format=torch.channels_last)
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().contiguous(), False)
        self.stride, self.padding, self.groups = list(stride), list(padding), groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_channels_last(x)
        if not onednn_runs(x.dtype) or self.weight.dtype != x.dtype or x.numel() == 0:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)
            return act_(to_channels_last(y), self.act)
        shape = list(x.shape)
        packed = self.packs.get_or_pack(
            tuple(shape), lambda: _pack(self.weight, self.padding, self.stride, self.groups, shape)
        )
        attr, scalars = _POST_OP[self.act]
        y = torch_compat.convolution_pointwise(
            x, packed, self.bias, self.padding, self.stride, self.groups, attr, scalars
        )
        return to_channels_last(y)


class Gemm(_Packed):
    """`act(a @ W + bias)` for `a` `(P, K)`: with `g` groups, group `j` reads columns
    `[j*K/g, (j+1)*K/g)` of `a` and writes columns `[j*N/g, (j+1)*N/g)` of the contiguous
    `(P, N)` result."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, act: str):
        """`weight`: `(g, K/g, N/g)`, the MKL operand; oneDNN's is laid out from it per row
        count on first use."""
        super().__init__(act)
        self.register_buffer("weight", weight.detach().contiguous(), persistent=False)
        self.register_buffer("bias", bias.detach().contiguous(), persistent=False)
        self.groups, k_g, n_g = weight.shape
        self.k, self.n = k_g * self.groups, n_g * self.groups

    def onednn(self, rows: int) -> bool:
        return use_onednn(rows, self.weight.numel(), self.weight.dtype)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        p = a.shape[0]
        if self.onednn(p):
            return self._onednn(a)
        if self.groups == 1:
            return act_(torch.addmm(self.bias, a, self.weight[0]), self.act)
        out = torch.empty(p, self.n, dtype=a.dtype)
        g, n_g = self.groups, self.n // self.groups
        a_groups = a.reshape(p, g, self.k // g).transpose(0, 1)  # a view: splits the last dim
        torch.bmm(a_groups, self.weight, out=out.view(p, g, n_g).transpose(0, 1))
        return act_(out.add_(self.bias), self.act)

    def _onednn(self, a: torch.Tensor) -> torch.Tensor:
        p = a.shape[0]
        a = a.contiguous()
        image = a.as_strided((1, self.k, p, 1), (p * self.k, 1, self.k, self.k))
        packed = self.packs.get_or_pack(p, lambda: self._pack(p))
        attr, scalars = _POST_OP[self.act]
        y = torch_compat.convolution_pointwise(
            image, packed, self.bias, [0, 0], [1, 1], self.groups, attr, scalars
        )
        if y.is_contiguous(memory_format=torch.channels_last):  # (1, N, P, 1) as (P, N) rows
            return y.as_strided((p, self.n), (self.n, 1), y.storage_offset())
        return y.permute(0, 2, 3, 1).reshape(p, self.n)

    def _pack(self, rows: int) -> torch.Tensor:
        """The `(g, K/g, N/g)` weights as the `(N, K/g, 1, 1)` convolution weight, packed."""
        weight = self.weight.transpose(1, 2).reshape(self.n, self.k // self.groups, 1, 1)
        return _pack(weight, [0, 0], [1, 1], self.groups, [1, self.k, rows, 1])


def _convolution_pointwise_flops(
    x_shape: torch.Size, w_shape: torch.Size, *args: Any, out_shape: torch.Size, **kwargs: Any
) -> int:
    """`2 * outputs * (C/g) * kh * kw`, the convolution's multiply-adds counted twice."""
    return 2 * prod(out_shape) * prod(w_shape[1:])


def register_flop_formula_once() -> None:
    """Teach `torch.utils.flop_counter.FlopCounterMode` (the MAdds tests and benchmarks count at
    dispatch) the oneDNN convolution the kernels run. Called by `fuse` and the fused network on
    first use, never at import: importing clnas changes no global state of torch."""
    op = torch_compat.CONVOLUTION_POINTWISE
    if _ONEDNN and op not in flop_registry:
        register_flop_formula(op)(_convolution_pointwise_flops)
