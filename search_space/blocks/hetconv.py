"""HetConv: heterogeneous kernels (Singh et al., CVPR 2019; docs/design.md §1.3).

Arrangement: **contiguous**. With part `P`, input and output channels split into `P` equal
groups; every filter of output group `j` has kxk kernels on input group `j` and 1x1 kernels on
all other input groups. (The paper's shifted arrangement, kxk on input `i` when
`i % P == n % P`, is the same layer up to a fixed relabelling of input and output channels.)

Exact and efficient: the kxk part is one grouped conv (`groups = P`); the 1x1 part gathers, for
each output group `j`, the `M - M/P` input channels outside group `j` and runs one grouped 1x1
conv (`groups = P`) over them. Weights `N*(M/P*k*k + M - M/P)`; executed MAdds
`Ho*Wo*N*(M/P*k*k + M - M/P)` (HetConv Eq. for FL_HC) -- nothing is masked, nothing is spent on
the structural zeros. `P = 1` is the plain conv.
"""

from __future__ import annotations

import torch
from torch import nn

from search_space.arch import HetConvStage
from search_space.blocks.layers import get_act, is_nhwc


def other_groups_index(channels: int, part: int) -> torch.Tensor:
    """For each group `j` in order, the indices of every channel outside group `j`."""
    size = channels // part
    return torch.tensor(
        [c for j in range(part) for c in range(channels) if c // size != j], dtype=torch.long
    )


class HetConv2d(nn.Module):
    gather: torch.Tensor

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        part: int,
        kernel: int = 3,
        stride: int = 1,
        bias: bool = False,
    ):
        super().__init__()
        if cin % part or cout % part:
            raise ValueError(f"part {part} must divide in ({cin}) and out ({cout}) channels")
        self.part = part
        self.spatial = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=part, bias=bias)
        self.pointwise: nn.Conv2d | None = None
        if part > 1:
            self.register_buffer("gather", other_groups_index(cin, part), persistent=False)
            self.pointwise = nn.Conv2d(
                part * (cin - cin // part), cout, 1, stride, groups=part, bias=False
            )

    @property
    def cpu_prefers_contiguous(self) -> bool:
        """For "auto" on CPU (docs/hardware.md#memory-format): with P > 1 the 1x1 part gathers
        P-1 copies of its input, and whether NHWC then wins depends on the machine's memory
        traffic: 0.91-0.93x of NCHW for P = 4-16 in the benchmark at load 10, 1.1-1.3x at load ~1,
        0.79x at P = 64 (2 threads, batch 128). NCHW is never slower than the plain loop."""
        return self.pointwise is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.spatial(x)
        if self.pointwise is None:
            return y
        if is_nhwc(x):
            # Gather along the innermost axis so the 1x1 conv gets an NHWC map;
            # `index_select(1, ...)` would return NCHW and make every layer convert both ways.
            others = x.permute(0, 2, 3, 1).index_select(3, self.gather).permute(0, 3, 1, 2)
        else:
            others = x.index_select(1, self.gather)
        return y + self.pointwise(others)

    def dense_weight(self) -> torch.Tensor:
        """The equivalent dense kxk weight (zeros off the HetConv pattern), for tests and export."""
        w = self.spatial.weight
        cout, per_in, k, _ = w.shape
        cin = per_in * self.part
        dense = w.new_zeros(cout, cin, k, k)
        out_size = cout // self.part
        for j in range(self.part):
            rows = slice(j * out_size, (j + 1) * out_size)
            dense[rows, j * per_in : (j + 1) * per_in] = w[rows]
            if self.pointwise is not None:
                others = [c for c in range(cin) if c // per_in != j]
                dense[rows, others, k // 2, k // 2] = self.pointwise.weight[rows, :, 0, 0]
        return dense


class HetConvBlock(nn.Module):
    """HetConv + BN + ReLU (VGG-16 with BN, as in the paper's CIFAR-10 setting)."""

    def __init__(self, spec: HetConvStage, *, cin: int, cout: int, stride: int, first: bool):
        super().__init__()
        part = cin if spec.part == "in" else spec.part
        self.conv = HetConv2d(
            cin, cout, part=part, kernel=spec.kernel, stride=stride, bias=spec.bias
        )
        self.bn = nn.BatchNorm2d(cout)
        self.act = get_act("relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))
