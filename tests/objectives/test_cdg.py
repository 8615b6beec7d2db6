"""The CDG against its two independent oracles (docs/design.md §2): closed-form rules and the
autograd
Jacobian of the built block, on 200 random small blocks of every type."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from objectives.cdg import (
    arch_cdg,
    block_cdg,
    channel_wise,
    compose,
    concat,
    crf_fractions,
    gather,
    grouped,
    hetconv,
    interlace,
    is_fcrf,
    union,
)
from search_space import BlockPlan, parse_arch, zoo_names
from search_space.arch import BLOCK_TYPES
from search_space.blocks import BLOCKS
from search_space.blocks.layers import ChannelWiseConv, channel_shuffle
from search_space.zoo import zoo_arch
from tests.objectives.random_archs import random_plan

CASES_PER_TYPE = 200


def random_plans(block: str, n: int = CASES_PER_TYPE) -> list[BlockPlan]:
    """`n` valid blocks of one type with <= 32 channels (the tests' one generator), seeded."""
    r = random.Random(f"cdg-{block}")
    return [random_plan(r, block, top=32) for _ in range(n)]


PLANS = {block: random_plans(block) for block in BLOCK_TYPES}


def test_plans_cover_every_block_type() -> None:
    for block, plans in PLANS.items():
        assert len(plans) == CASES_PER_TYPE
        assert {p.stride for p in plans} == {1, 2}, block
        assert {p.first for p in plans} == {True, False}, block


# -- oracle (b): the autograd Jacobian of the built block --------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The blocks are tiny: extra intra-op threads only contend (3x slower on 2 busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _positive_and_linear(block: nn.Module, gen: torch.Generator) -> nn.Module:
    """Random positive weights, BN statistics and inputs make every Jacobian entry a sum of
    non-negative terms: it is zero exactly when no path joins the two channels, never by
    cancellation, so float32 is exact about which entries are zero (and CPU float64 convs are
    ten times slower). Weights are scaled by 1/fan-in to keep activations O(1), so the SE
    sigmoid does not saturate to a zero derivative. ReLU/ReLU6 are channel-diagonal (they can
    only hide a dependency by clipping), so they become identities."""
    for parent in list(block.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU | nn.ReLU6):
                setattr(parent, name, nn.Identity())
    block.eval()
    with torch.no_grad():
        for p in block.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_((torch.rand(p.shape, generator=gen) + 0.5) / fan_in)
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.zero_()
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return block


def jacobian_cdg(module: nn.Module, cin: int, cout: int, size: int, seed: int) -> np.ndarray:
    """`D[c, c'] = sum over pixels of d out[c] / d in[c'] > 0`: batch element `c` of one
    backward pass carries output channel `c` (eval mode keeps the batch elements independent)."""
    gen = torch.Generator().manual_seed(seed)
    module = _positive_and_linear(module, gen)
    x = torch.rand(1, cin, size, size, generator=gen) + 0.5
    x = x.repeat(cout, 1, 1, 1).requires_grad_()
    y = module(x)
    assert y.shape[1] == cout
    y[torch.arange(cout), torch.arange(cout)].sum().backward()
    assert x.grad is not None
    return (x.grad.sum((2, 3)) > 0).numpy()


def built_block_cdg(plan: BlockPlan, seed: int) -> np.ndarray:
    block = BLOCKS[plan.block](
        plan.spec, cin=plan.cin, cout=plan.cout, stride=plan.stride, first=plan.first
    )
    return jacobian_cdg(block, plan.cin, plan.cout, size=5 + seed % 2, seed=seed)


@pytest.mark.parametrize("block", BLOCK_TYPES)
def test_block_cdg_equals_autograd_jacobian(block: str) -> None:
    for seed, plan in enumerate(PLANS[block]):
        expected = built_block_cdg(plan, seed)
        got = block_cdg(plan)
        assert got.dtype == bool and got.shape == (plan.cout, plan.cin)
        assert np.array_equal(got, expected), (plan, got.astype(int), expected.astype(int))


@pytest.mark.parametrize("seed", range(60))
def test_channel_wise_equals_autograd_jacobian(seed: int) -> None:
    """Windows clipped at both ends, and negative padding (`dc < stride`) that crops."""
    r = random.Random(seed)
    cw_stride = r.choice([1, 2, 3, 4])
    channels = cw_stride * r.randint(1, 8)
    cw_kernel, kernels = r.randint(1, 2 * channels), r.randint(1, 3)
    layer = ChannelWiseConv(channels, cw_kernel=cw_kernel, kernels=kernels, cw_stride=cw_stride)
    expected = jacobian_cdg(layer, channels, layer.out_channels, size=3, seed=seed)
    assert np.array_equal(channel_wise(channels, cw_kernel, kernels, cw_stride), expected)


# -- oracle (a): closed-form rules --------------------------------------------------------------


@pytest.mark.parametrize("block", ["conv", "dws", "mbconv", "effnet", "hetconv", "ant", "eant"])
def test_always_fcrf(block: str) -> None:
    """A dense 1x1 conv fuses every channel; HetConv's 1x1 part reads every other group
    (HetConv Sec. 3); the attention before the projection gives every channel a full CRF
    whatever the projection groups (ANTNets Sec. 3, docs/design.md §1.5)."""
    assert all(is_fcrf(block_cdg(p)) for p in PLANS[block])


def test_clc_crf_size_and_fcrf_rule() -> None:
    """clcNet Sec. 3: with the interlace the CRF is `min(M, M*L/(g1*g2))` channels, so the block
    is FCRF iff `g1*g2 <= L`. Without it the GC reads a contiguous run of IGC outputs, which
    spans every IGC group only if the GC is dense: FCRF iff `g1 == 1` or `g2 == 1`."""
    seen = set()
    for p in PLANS["clc"]:
        s = p.spec
        mid = s.mid or p.cin
        d = block_cdg(p)
        if s.interlace:
            expected_fraction = min(1.0, mid / (s.g1 * s.g2))
            assert np.allclose(crf_fractions(d), expected_fraction), p
            assert is_fcrf(d) == (s.g1 * s.g2 <= mid), p
        else:
            assert is_fcrf(d) == (min(s.g1, s.g2) == 1), p
        seen.add((s.interlace, is_fcrf(d)))
    assert seen == {(True, True), (True, False), (False, True), (False, False)}


def test_gm_sees_only_its_group() -> None:
    """ChannelNets GM: group convs and an identity shortcut never cross groups, so every output
    channel sees exactly `1/g` of the inputs: never FCRF for `g > 1`."""
    for p in PLANS["gm"]:
        d = block_cdg(p)
        assert np.allclose(crf_fractions(d), 1 / p.spec.groups), p
        assert is_fcrf(d) == (p.spec.groups == 1), p


def _group_coverage(d: np.ndarray, groups: int) -> np.ndarray:
    """Per output group, whether the union of its rows covers every input channel."""
    covered = np.logical_or.reduce(d.reshape(groups, -1, d.shape[1]), axis=1)
    return np.logical_and.reduce(covered, axis=1)


def test_gcwm_group_covers_all_inputs_iff_dc_at_least_g() -> None:
    """ChannelNets Sec. 3.3: each output group of the group channel-wise conv covers every
    input channel iff `dc >= g`, while one output channel covers at most `dc` channels. The
    block inherits the group statement; `g = 1` makes it plainly FCRF."""
    for p in PLANS["gcwm"]:
        g, dc = p.spec.groups, p.spec.cw_kernel
        gcwc = channel_wise(p.cout, dc, kernels=g, cw_stride=g)
        assert _group_coverage(gcwc, g).all() == (dc >= g), p
        assert (np.count_nonzero(gcwc, axis=1) <= dc).all(), p
        d = block_cdg(p)
        if dc >= g:
            assert _group_coverage(d, g).all(), p
        if g == 1:
            assert is_fcrf(d), p


def test_dwscw_fcrf_needs_a_window_twice_the_width() -> None:
    """A stride-1 channel-wise conv centres a `dc` window on each channel: the end channels see
    all `M` inputs only when `dc >= 2M - 1`; a row never sees more than `dc` channels."""
    for p in PLANS["dwscw"]:
        d, dc = block_cdg(p), p.spec.cw_kernel
        assert (np.count_nonzero(d, axis=1) <= dc).all(), p
        if p.cout >= p.cin:
            assert is_fcrf(d) == (dc >= 2 * p.cin - 1), p


def test_shuffle_unit_rule() -> None:
    """ShuffleNet unit: at stride 2 each concatenated shortcut channel sees one input channel;
    at stride 1 with `g` groups in both 1x1 convs the unit is the clc pattern with
    `g1 = g2 = g`, `L = out/4`: FCRF iff `g*g <= out/4`."""
    for p in PLANS["shuffle"]:
        d, g, mid = block_cdg(p), p.spec.groups, p.cout // 4
        if p.stride == 2:
            assert np.array_equal(d[: p.cin], np.eye(p.cin, dtype=bool)), p
        elif not p.first or p.spec.in_groups in (None, g):
            assert is_fcrf(d) == (g * g <= mid), p


# -- clcNet reference settings and the zoo ------------------------------------------------------


def _clcnet(interlace: bool) -> list[tuple[BlockPlan, np.ndarray]]:
    """clcNet-A from docs/design.md §1.2: every block `g2 = 2`, `g1 = M/2`, so `g1*g2 = M = L`."""
    layout = [
        (64, 1, 1, 16),
        (128, 2, 1, 32),
        (128, 1, 1, 64),
        (256, 2, 1, 64),
        (256, 1, 1, 128),
        (512, 2, 1, 128),
        (512, 1, 5, 256),
        (1024, 2, 1, 256),
        (1024, 1, 2, 512),
    ]
    stages = [
        {
            "block": "clc",
            "out": out,
            "stride": s,
            "repeat": n,
            "g1": g1,
            "g2": 2,
            "interlace": interlace,
        }
        for out, s, n, g1 in layout
    ]
    arch = parse_arch(
        {
            "format": "clnas.arch/1",
            "num_classes": 1000,
            "resolution": 224,
            "stem": {"out": 32},
            "stages": stages,
            "head": {"type": "fc"},
        }
    )
    return arch_cdg(arch)


def test_clcnet_reference_settings_are_fcrf_and_plain_gc_is_not() -> None:
    blocks = _clcnet(interlace=True)
    assert len(blocks) == 14
    for plan, d in blocks:
        assert plan.spec.g1 * plan.spec.g2 == plan.cin
        assert is_fcrf(d)
    assert not any(is_fcrf(d) for _, d in _clcnet(interlace=False))


@pytest.mark.skipif("clcnet_a" not in zoo_names(), reason="zoo has no clcnet_a")
def test_zoo_clcnet_a_is_fcrf() -> None:
    assert all(is_fcrf(d) for _, d in arch_cdg(zoo_arch("clcnet_a")))


@pytest.mark.skipif("clcnet_ap" not in zoo_names(), reason="zoo has no clcnet_ap")
def test_zoo_clcnet_ap_is_not_fcrf() -> None:
    assert not any(is_fcrf(d) for _, d in arch_cdg(zoo_arch("clcnet_ap")))


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_block_cdgs_have_block_shapes(name: str) -> None:
    for plan, d in arch_cdg(zoo_arch(name)):
        assert d.dtype == bool and d.shape == (plan.cout, plan.cin)
        assert not d.flags.writeable


# -- primitives ---------------------------------------------------------------------------------


def test_grouped_special_cases() -> None:
    assert grouped(6, 4).all()
    assert np.array_equal(grouped(5, 5, 5), np.eye(5, dtype=bool))
    assert np.array_equal(grouped(4, 2, 2), [[1, 1, 0, 0], [0, 0, 1, 1]])
    with pytest.raises(ValueError, match="do not divide"):
        grouped(6, 4, 4)


@pytest.mark.parametrize(("channels", "groups"), [(6, 2), (6, 3), (12, 4), (8, 8), (5, 1)])
def test_interlace_is_the_channel_shuffle(channels: int, groups: int) -> None:
    x = torch.arange(channels, dtype=torch.float64).view(1, channels, 1, 1)
    source = channel_shuffle(x, groups).flatten().long().numpy()
    assert np.array_equal(interlace(channels, groups), gather(channels, source))
    k, i = 1, groups - 1  # out[k*g + i] = in[i*(C/g) + k]
    if channels // groups > 1:
        assert interlace(channels, groups)[k * groups + i, i * (channels // groups) + k]


def test_hetconv_is_full_and_part_one_is_dense() -> None:
    assert hetconv(8, 4, 4).all() and hetconv(8, 4, 1).all()


def test_compose_is_the_boolean_product_in_data_flow_order() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        m, n, p = rng.integers(1, 12, size=3)
        a = rng.random((m, n)) < rng.random()
        b = rng.random((p, m)) < rng.random()
        if rng.random() < 0.3:  # exercise the selection shortcuts
            b = gather(m, rng.integers(0, m, size=p))
        if rng.random() < 0.3 and m == n:
            a = gather(n, rng.permutation(n))
        expected = (b.astype(int) @ a.astype(int)) > 0
        assert np.array_equal(compose(a, b), expected)
    with pytest.raises(ValueError, match="cannot compose"):
        compose(grouped(4, 3), grouped(4, 4))


def test_concat_and_union() -> None:
    eye = np.eye(3, dtype=bool)
    assert concat(eye, grouped(3, 2)).shape == (5, 3)
    assert union(eye, grouped(3, 3)).all()
    with pytest.raises(ValueError):
        union(eye, grouped(3, 2))
    with pytest.raises(ValueError):
        concat(eye, grouped(2, 2))


def test_crf_fractions_and_fcrf() -> None:
    d = grouped(4, 4, 2)
    assert np.allclose(crf_fractions(d), 0.5)
    assert not is_fcrf(d) and is_fcrf(grouped(4, 4))


def test_repeated_blocks_share_one_cached_cdg() -> None:
    blocks = _clcnet(interlace=True)
    repeats = [d for plan, d in blocks if plan.stage == 6]
    assert len(repeats) == 5 and all(d is repeats[1] for d in repeats[1:])


def test_cdg_cache_is_bounded_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The block-CDG cache evicts by size: the service costs untrusted documents whose CDGs can
    reach 16 MiB each (docs/limits.md), so a count bound alone could hold gigabytes."""
    from objectives import cdg
    from search_space.zoo import zoo_arch

    blocks = list(zoo_arch("mobilenet_v2").blocks())
    sizes = sorted(cdg.BLOCK_CDGS[p.block](p).nbytes for p in blocks)
    limit = sizes[-1] + sizes[-2]  # room for about two of the largest
    cache = cdg._CDGCache(limit)
    monkeypatch.setattr(cdg, "_CDG_CACHE", cache)
    for plan in blocks:
        got = cdg.block_cdg(plan)
        assert np.array_equal(got, cdg.BLOCK_CDGS[plan.block](plan))
        assert 0 < cache.nbytes <= limit
    assert len(cache._items) < len({cdg.block_signature(p) for p in blocks})
    plan = blocks[-1]
    assert cdg.block_cdg(plan) is cdg.block_cdg(plan)  # a hit returns the cached array
