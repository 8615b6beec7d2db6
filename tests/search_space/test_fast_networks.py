"""The fused runtime (`build_model(arch, runtime="fused")`) against the reference modules:
same parameters and state_dict, same function in eval mode (every block type, every zoo
model), exactly the docs/design.md §3 multiply-adds, and a fused inference form that follows the
parameters (rebuilt after training steps, loads, dtype changes)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from objectives import cost_report
from search_space import Network, build_model, load_arch, parse_arch, zoo_names
from search_space.blocks import BLOCKS
from search_space.runtime import FusedNetwork, fused_network

DT = torch.float64
TOL = 1e-9  # float64; the contract is 1e-5


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def calibrate(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Non-trivial BN affine parameters and running statistics from one batch, so the signal
    neither dies nor explodes through a deep network (random init alone makes most zoo logits
    equal to the classifier bias, which would hide differences)."""
    for bn in model.modules():
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            bn.reset_running_stats()
            bn.momentum = None
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.2, 0.2)
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def fast_and_reference(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        ref = model(x)  # no_grad: the reference modules
    with torch.inference_mode():
        fast = model(x)  # inference_mode on CPU: the fused form
    return fast, ref


def assert_close(fast: torch.Tensor, ref: torch.Tensor) -> None:
    assert fast.shape == ref.shape
    assert ref.std() > 1e-3, "degenerate reference output"
    assert (fast - ref).abs().max().item() < TOL * max(1.0, ref.abs().max().item())


BLOCK_STAGES = [
    {"block": "conv", "out": 24, "bias": True},
    {"block": "hetconv", "out": 24, "part": 4},
    {"block": "hetconv", "out": 24, "part": "in", "stride": 2},
    {"block": "dws", "out": 32, "stride": 2},
    {"block": "mbconv", "out": 16, "expand": 3, "repeat": 2},
    {"block": "clc", "out": 32, "g1": 8, "g2": 2, "repeat": 2},
    {"block": "clc", "out": 32, "g1": 4, "g2": 4, "stride": 2},
    {"block": "clc", "out": 16, "g1": 8, "g2": 2, "interlace": False},
    {"block": "ant", "out": 16, "expand": 3, "se_ratio": 4, "groups": 2, "repeat": 2},
    {"block": "eant", "out": 24, "expand": 2, "se_ratio": 4, "groups": [1, 2, 4], "stride": 2},
    {"block": "gm", "out": 16, "groups": 2, "repeat": 2},
    {"block": "gcwm", "out": 16, "groups": 2, "cw_kernel": 3, "repeat": 2},
    {"block": "dwscw", "out": 48, "cw_kernel": 4},
    {"block": "dwscw", "out": 12, "cw_kernel": 3},
    {"block": "shuffle", "out": 48, "groups": 3, "stride": 2},
    {"block": "shuffle", "out": 24, "groups": 3, "repeat": 2},
    {"block": "effnet", "out": 32, "stride": 2},
]


def one_stage_arch(stage: dict, head: dict | None = None) -> dict:
    return {
        "format": "clnas.arch/1",
        "num_classes": 10,
        "resolution": 16,
        "stem": {"out": 24, "stride": 1},
        "stages": [{"stride": 1, "repeat": 1, **stage}],
        "head": head or {"type": "fc"},
    }


def test_block_cases_cover_every_block_type() -> None:
    assert {s["block"] for s in BLOCK_STAGES} == set(BLOCKS)


@pytest.mark.parametrize("stage", BLOCK_STAGES, ids=lambda s: s["block"])
def test_every_block_type_fused_equals_reference(stage):
    arch = parse_arch(one_stage_arch(stage))
    model = build_model(arch, runtime="fused").to(DT)
    calibrate(model, torch.randn(8, 3, 16, 16, dtype=DT))
    assert_close(*fast_and_reference(model, torch.randn(3, 3, 16, 16, dtype=DT)))


@pytest.mark.parametrize(
    "head",
    [{"type": "fc", "conv_out": 40, "hidden": [20]}, {"type": "conv_classifier"}],
    ids=["fc-conv-hidden", "conv_classifier"],
)
def test_heads_fused_equal_reference(head):
    stage = {"block": "clc", "out": 32, "g1": 8, "g2": 2}
    model = build_model(parse_arch(one_stage_arch(stage, head)), runtime="fused").to(DT)
    calibrate(model, torch.randn(8, 3, 16, 16, dtype=DT))
    assert_close(*fast_and_reference(model, torch.randn(3, 3, 16, 16, dtype=DT)))


@pytest.mark.parametrize("name", zoo_names())
def test_every_zoo_model_fused_equals_reference(name):
    """Float64 at a reduced resolution (64 for ImageNet models, 32 on CIFAR: float64 runs on
    PyTorch's slow native kernels); the full-resolution shapes are covered by the float32 test
    below, the MAdds test and the benchmarks. The convolutional classifier's kernel is the
    final map, so it keeps its native resolution."""
    arch = load_arch(name)
    res = arch.resolution if arch.head.type == "conv_classifier" else min(arch.resolution, 64)
    model = build_model(arch, runtime="fused").to(DT)
    calibrate(model, torch.randn(4, arch.in_channels, res, res, dtype=DT))
    assert_close(*fast_and_reference(model, torch.randn(2, arch.in_channels, res, res, dtype=DT)))


@pytest.mark.parametrize("name", ["clcnet_a", "mobilenet_v1", "hetconv_vgg16_p4", "channelnet_v2"])
def test_fused_float32_is_as_accurate_as_the_reference(name):
    """At native resolution in float32 both forms round differently (BN folded into the
    weights): measured against the float64 result, the fused form's error stays at the
    reference's own float32 level (about 1e-6 to 1e-5 of the output scale here)."""
    arch = load_arch(name)
    r = arch.resolution
    model = calibrate(build_model(arch, runtime="fused"), torch.randn(16, 3, r, r))
    x = torch.randn(1, 3, r, r)
    fast, ref = fast_and_reference(model, x)
    with torch.no_grad():
        truth = copy.deepcopy(model).double()(x.double()).float()
    scale = truth.abs().max().item()
    err_fast = (fast - truth).abs().max().item() / scale
    err_ref = (ref - truth).abs().max().item() / scale
    assert err_fast < 2e-5 and err_fast < 4 * err_ref + 1e-6


@pytest.mark.parametrize("name", zoo_names())
def test_fused_form_executes_exactly_the_spec_madds(name):
    """Counted at dispatch (every conv, mm, addmm, bmm, baddbmm call, `out=` variants
    included) on the fused form at batch 1: equal to the analytic docs/design.md §3 count."""
    arch = load_arch(name)
    model = build_model(arch, runtime="fused").eval()
    x = torch.randn(1, arch.in_channels, arch.resolution, arch.resolution)
    with torch.inference_mode():
        model(x)
        assert model._plan is not None
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    assert counter.get_total_flops() == 2 * cost_report(arch).madds


def test_fast_and_reference_builds_share_parameters_and_state_dict() -> None:
    arch = load_arch("clcnet_a")
    fast, ref = build_model(arch, runtime="fused"), build_model(arch)
    assert isinstance(fast, FusedNetwork) and type(ref) is Network
    assert list(fast.state_dict()) == list(ref.state_dict())
    assert sum(p.numel() for p in fast.parameters()) == 3_253_640  # docs/design.md §3
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(1, 3, 64, 64)
    fast.eval(), ref.eval()
    with torch.inference_mode():
        y_fast, y_ref = fast(x), ref(x)
    assert fast._plan is not None
    assert (y_fast - y_ref).abs().max().item() < 1e-5
    # the fused form is not a submodule: not in parameters, buffers or the state_dict
    assert list(fast.state_dict()) == list(ref.state_dict())
    assert sum(1 for _ in fast.parameters()) == sum(1 for _ in ref.parameters())


def small_model() -> nn.Module:
    arch = parse_arch(one_stage_arch({"block": "clc", "out": 32, "g1": 8, "g2": 2, "repeat": 2}))
    return calibrate(build_model(arch, runtime="fused"), torch.randn(8, 3, 16, 16))


def run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def test_fused_form_is_reused_while_nothing_changes() -> None:
    model, x = small_model(), torch.randn(2, 3, 16, 16)
    run(model, x)
    plan = model._plan
    run(model, x)
    assert model._plan is plan


def test_fused_form_follows_training_steps_and_loads() -> None:
    model, x = small_model(), torch.randn(2, 3, 16, 16)
    run(model, x)
    plan = model._plan
    # an optimizer step updates parameters in place
    model.train()
    loss = model(torch.randn(4, 3, 16, 16)).square().mean()
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    model.eval()
    y = run(model, x)
    assert model._plan is not plan
    with torch.no_grad():
        assert (y - model(x)).abs().max().item() < 1e-5
    # load_state_dict copies into the parameters in place
    other = small_model()
    model.load_state_dict(other.state_dict())
    y = run(model, x)
    with torch.no_grad():
        assert (y - other(x)).abs().max().item() < 1e-5


def test_fused_form_follows_dtype_and_train_flags() -> None:
    model, x = small_model(), torch.randn(2, 3, 16, 16)
    run(model, x)
    model.double()
    y = run(model, x.double())
    assert y.dtype == torch.float64
    # a submodule left in train mode: the reference runs (BN batch statistics), not the plan
    model.stages[0][0].train()
    with torch.inference_mode():
        assert not model.training
        model(x.double())
    model.eval()


def test_reference_paths_never_use_the_fused_form(monkeypatch) -> None:
    x = torch.randn(2, 3, 16, 16)
    model = small_model()
    with torch.no_grad():
        model(x)
    assert model._plan is None  # no_grad (fvcore, reference evaluation): reference modules
    model.train()
    with torch.inference_mode():
        model(x)
    assert model._plan is None  # training mode
    # the reference runtime (the default): never the fused form, even under inference_mode
    ref = build_model(model.arch)
    ref.load_state_dict(model.state_dict())
    monkeypatch.setattr(fused_network, "fuse", None)  # would fail if called
    with torch.no_grad():
        expected = ref.eval()(x)
    assert torch.equal(run(ref, x), expected)
    assert type(ref) is Network and not hasattr(ref, "_plan")


def test_gradients_are_those_of_the_reference_modules() -> None:
    """Training runs the reference modules: a fast build and a reference build with the same
    weights give the same gradients."""
    arch = parse_arch(one_stage_arch({"block": "clc", "out": 32, "g1": 8, "g2": 2}))
    fast, ref = build_model(arch, runtime="fused"), build_model(arch)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(4, 3, 16, 16)
    for m in (fast, ref):
        m.train()
        m(x).logsumexp(1).sum().backward()
    for (name, p), q in zip(fast.named_parameters(), ref.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None, name
        assert torch.equal(p.grad, q.grad), name


def test_fused_form_follows_replaced_submodules() -> None:
    model, x = small_model(), torch.randn(2, 3, 16, 16)
    run(model, x)
    plan = model._plan
    model.head.fc = nn.Linear(model.head.fc.in_features, 3)
    y = run(model, x)
    assert model._plan is not plan and y.shape == (2, 3)
    with torch.no_grad():
        assert (y - model(x)).abs().max().item() < 1e-5


def test_interleaved_models_keep_their_fused_forms() -> None:
    """Building one model's fused form registers modules; another model's is not rebuilt."""
    a, b, x = small_model(), small_model(), torch.randn(2, 3, 16, 16)
    run(a, x), run(b, x)
    plans = a._plan, b._plan
    for _ in range(3):
        run(a, x), run(b, x)
    assert (a._plan, b._plan) == plans
