"""The analytic cost model's layer rules (docs/design.md §3), torch-free: what a block type's
cost rule (`BlockSpec.cost`) sums. A conv with `groups = g` from `cin` to `cout` costs
`cout * (cin / g) * kh * kw` per output pixel (docs/design.md §1.1). `objectives/cost.py` re-exports
them; conventions (what counts as a MAdd or a parameter) are in its docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_space.block_types.base import BlockPlan, se_hidden


@dataclass(frozen=True, slots=True)
class Cost:
    madds: int
    params: int
    conv_bias_adds: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.madds + other.madds,
            self.params + other.params,
            self.conv_bias_adds + other.conv_bias_adds,
        )


ZERO = Cost(0, 0)


def total(*parts: Cost) -> Cost:
    return sum(parts, ZERO)


def pixels(plan: BlockPlan) -> tuple[int, int]:
    """(input, output) pixels of a block: `size_in^2`, `size_out^2`."""
    return plan.size_in * plan.size_in, plan.size_out * plan.size_out


# -- layers -------------------------------------------------------------------------------


def conv(
    cin: int, cout: int, *, area: int = 1, pixels: int, groups: int = 1, bias: bool = False
) -> Cost:
    """Grouped conv, kernel area `kh*kw`, `pixels = Ho*Wo` output positions (docs/design.md
    §1.1)."""
    weights = cout * (cin // groups) * area
    return Cost(
        weights * pixels,
        weights + (cout if bias else 0),
        cout * pixels if bias else 0,
    )


def bn(channels: int) -> Cost:
    """BatchNorm: affine weight and bias, no MAdds (docs/design.md §3)."""
    return Cost(0, 2 * channels)


def conv_bn(
    cin: int, cout: int, *, area: int = 1, pixels: int, groups: int = 1, bias: bool = False
) -> Cost:
    """`ConvBNAct` (the activation is free)."""
    return conv(cin, cout, area=area, pixels=pixels, groups=groups, bias=bias) + bn(cout)


def linear(cin: int, cout: int) -> Cost:
    return Cost(cin * cout, cin * cout + cout)


def channel_wise(cw_kernel: int, *, kernels: int, out_channels: int, pixels: int) -> Cost:
    """ChannelNets channel-wise conv (docs/design.md §1.4): weights `kernels*dc`, MAdds
    `dc*C_out*H*W`."""
    return Cost(cw_kernel * out_channels * pixels, cw_kernel * kernels)


def squeeze_excite(channels: int, se_ratio: int) -> Cost:
    """ANTNets channel attention: two 1x1 convs with bias on the pooled `1x1` map."""
    hidden = se_hidden(channels, se_ratio)
    return conv(channels, hidden, pixels=1, bias=True) + conv(hidden, channels, pixels=1, bias=True)
