"""The accelerator code path run on CPU (docs/hardware.md): channels_last + bf16 autocast
forced, one proxy step and one full-training step for every zoo model (which together hold
every block type and head) and for random candidates of the `default` space; one real proxy
epoch; the "auto" layout choice; threads and GPU share from Ray's assignment."""

from __future__ import annotations

import logging
import math
import random
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from search_space import Arch, ArchError, build_model, load_arch, zoo_names
from search_space.blocks import BLOCKS, HEADS
from search_space.blocks.hetconv import HetConv2d
from search_space.sampling import RandomSuggester, sample_arch
from search_space.spaces import load_space
from workers import device as device_mod
from workers.data import write_cifar100_archive
from workers.device import DevicePlan, make_plan, train_step, trial_threads
from workers.full.loop import batch_loss, device_plan
from workers.full.optim import make_optimizer as full_optimizer
from workers.full.recipe import load_recipe, parse_recipe
from workers.proxy import ProxyRecipe, train_proxy
from workers.proxy import make_optimizer as proxy_optimizer

CPU = torch.device("cpu")
# Batch 2: the smallest batch BatchNorm trains on. bf16 convolutions on a CPU without AVX-512
# take PyTorch's slow path (seconds per step for the wider zoo models), so every image counts.
BATCH, SIDE, CLASSES = 2, 32, 100
FORCED_PROXY = ProxyRecipe(memory_format="channels_last", amp=True, device="cpu")
FORCED_FULL = load_recipe("clcnet").with_overrides(
    memory_format="channels_last", amp=True, image_size=SIDE
)


def _cifar(arch: Arch) -> Arch:
    """The arch as the proxy trains it: 32x32 images, 100 classes (`workers.proxy._fit_arch`)."""
    return arch.with_changes(resolution=SIDE, num_classes=CLASSES)


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, 3, SIDE, SIDE, generator=g)
    return x, torch.randint(CLASSES, (BATCH,), generator=g)


def _assert_sound_step(model: nn.Module, loss: torch.Tensor, plan: DevicePlan) -> None:
    assert math.isfinite(loss.item()), loss
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} has no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert torch.isfinite(p).all(), f"{name} is non-finite after the step"
        if p.dim() == 4 and plan.channels_last:
            assert p.is_contiguous(memory_format=torch.channels_last), name
        if p.dim() != 4:
            assert p.is_contiguous(), name


def proxy_step(arch: Arch, seed: int = 0) -> None:
    """One step of the proxy trainer's own pieces (plan, optimiser, loss, `train_step`)."""
    torch.manual_seed(seed)
    model = build_model(_cifar(arch))
    plan = make_plan(CPU, memory_format=FORCED_PROXY.memory_format, amp=FORCED_PROXY.amp)
    assert (plan.channels_last, plan.amp_dtype) == (True, torch.bfloat16)
    model = plan.prepare(model).train()
    criterion = nn.CrossEntropyLoss(label_smoothing=FORCED_PROXY.label_smoothing)
    x, y = _batch(seed)
    loss = train_step(
        model, x, y, criterion, proxy_optimizer(model, FORCED_PROXY), plan.grad_scaler(), plan
    )
    _assert_sound_step(model, loss, plan)


def full_step(arch: Arch, seed: int = 0) -> None:
    """One step of the full trainer's own pieces (`device_plan`, optimiser, `batch_loss`)."""
    torch.manual_seed(seed)
    model = build_model(_cifar(arch))
    plan = device_plan(FORCED_FULL, CPU, model)
    assert (plan.channels_last, plan.amp_dtype) == (True, torch.bfloat16)
    model = plan.prepare(model).train()
    loss_fn = batch_loss(nn.CrossEntropyLoss(label_smoothing=0.1))
    x, y = _batch(seed)
    optimizer = full_optimizer(model, FORCED_FULL)
    loss = train_step(model, x, y, loss_fn, optimizer, plan.grad_scaler(), plan)
    _assert_sound_step(model, loss, plan)


# The default tier trains one CIFAR zoo model per family, which together hold every block type
# and head (checked below); the other zoo models (the same blocks at other widths, groups or
# parts, and the ImageNet models at ImageNet widths) run in the slow tier.
FAMILY_ZOO = [
    "antnet_g1_cifar100",  # ant
    "e_antnet_cifar100",  # eant
    "channelnet_v3_cifar100",  # dws, gm, gcwm, dwscw, conv_classifier head
    "clcnet_a_cifar100",  # clc
    "effnet_cifar100",  # effnet
    "hetconv_vgg16_p4",  # conv, hetconv
    "mobilenet_v2_cifar100",  # mbconv
    "shufflenet_v1_g3_cifar100",  # shuffle
]
OTHER_ZOO = [n for n in zoo_names() if n not in FAMILY_ZOO]


def test_the_default_tier_holds_every_block_type_and_head() -> None:
    archs = [load_arch(n) for n in FAMILY_ZOO]
    assert {s.block for a in archs for s in a.stages} == set(BLOCKS)
    assert {a.head.type for a in archs} == set(HEADS)


def test_channels_last_leaves_5d_weights_contiguous() -> None:
    model = build_model(_cifar(load_arch("channelnet_v3_cifar100")))  # gcwm, dwscw, conv head
    with pytest.raises(RuntimeError, match="rank 4"):  # what the trainers used to do on CUDA
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    DevicePlan(CPU, True, None).prepare(model)
    dims = {p.dim() for p in model.parameters()}
    assert 5 in dims and 4 in dims
    for p in model.parameters():
        if p.dim() == 4:
            assert p.is_contiguous(memory_format=torch.channels_last)
        else:
            assert p.is_contiguous()


@pytest.mark.parametrize(
    "name", [*FAMILY_ZOO, *(pytest.param(n, marks=pytest.mark.slow) for n in OTHER_ZOO)]
)
def test_zoo_model_trains_one_step_channels_last_bf16(name: str) -> None:
    proxy_step(load_arch(name))
    full_step(load_arch(name))


def _default_space_draw(n: int, seed: int) -> list[Arch]:
    space = load_space("default")
    rng = random.Random(seed)
    return [sample_arch(space, RandomSuggester(rng), name=f"d{i}") for i in range(n)]


def _train_draw(archs: list[Arch]) -> None:
    failures = []
    for i, arch in enumerate(archs):
        try:
            proxy_step(arch, seed=i)
            full_step(arch, seed=i)
        except (AssertionError, RuntimeError) as exc:
            failures.append(f"{arch.to_json()}: {exc}")
    assert not failures, "\n".join(failures)


def test_default_space_draw_trains_one_step_channels_last_bf16() -> None:
    archs = _default_space_draw(10, seed=16)
    assert any(p.dim() == 5 for a in archs for p in build_model(a).parameters())
    _train_draw(archs)


@pytest.mark.slow
def test_default_space_300_draws_train_one_step_channels_last_bf16() -> None:
    _train_draw(_default_space_draw(300, seed=300))


def test_one_proxy_epoch_through_the_trainer_forced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_cifar100_archive(tmp_path / "synthetic", n_train=96, n_test=10, num_classes=10, seed=2)
    arch = {
        "format": "clnas.arch/1",
        "name": "cw",
        "num_classes": 10,
        "resolution": 32,
        "stem": {"out": 16, "kernel": 3, "stride": 1},
        "stages": [
            {"block": "gcwm", "out": 32, "stride": 2, "groups": 2, "cw_kernel": 4},
            {"block": "dwscw", "out": 64, "stride": 2, "cw_kernel": 8},
        ],
        "head": {"type": "conv_classifier"},
    }
    recipe = FORCED_PROXY.model_copy(
        update={"epochs": 1, "batch_size": 32, "val_size": 32, "latency_repeats": 0}
    )
    with caplog.at_level(logging.INFO, logger="workers.proxy"):
        result = train_proxy(arch, recipe, tmp_path, dataset="synthetic")
    assert "training on cpu channels_last bfloat16" in caplog.text
    assert result.epochs == 1 and not result.diverged
    m = result.history[0]
    assert all(math.isfinite(m[k]) for k in ("train_loss", "val_loss", "val_top1"))


def test_recipe_fields_validate_and_name_the_field() -> None:
    assert (ProxyRecipe().memory_format, ProxyRecipe().amp) == ("auto", None)
    with pytest.raises(ValidationError, match="memory_format"):
        ProxyRecipe(memory_format="nhwc")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="amp"):
        ProxyRecipe(amp="yes")  # type: ignore[arg-type]
    doc = load_recipe("clcnet").model_dump()
    assert (doc["memory_format"], doc["amp"]) == ("auto", None)
    with pytest.raises(ArchError, match="memory_format"):
        parse_recipe(doc | {"memory_format": "nhwc"})
    with pytest.raises(ArchError, match="amp"):
        parse_recipe(doc | {"amp": 1})


def test_amp_defaults_off_on_cpu_and_bf16_when_asked() -> None:
    assert make_plan(CPU, memory_format="contiguous", amp=None) == DevicePlan(CPU, False, None)
    assert make_plan(CPU, memory_format="contiguous", amp=True).amp_dtype == torch.bfloat16
    assert not DevicePlan(CPU, False, torch.bfloat16).grad_scaler().is_enabled()


@pytest.mark.parametrize("device", [CPU, torch.device("cuda")])
def test_auto_is_channels_last_but_where_measured_slower(device: torch.device) -> None:
    """The measured rule (docs/hardware.md#memory-format): NHWC on CUDA, and on CPU except for
    HetConv with part > 1 (its channel gather); the same plan on every call (every DDP rank
    agrees); "contiguous" and "channels_last" override it."""
    dense, het = (nn.Sequential(HetConv2d(64, 64, part=part), nn.ReLU()) for part in (1, 4))
    on_cuda = device.type == "cuda"
    assert make_plan(device, memory_format="auto", amp=False) == DevicePlan(device, True, None)
    assert make_plan(device, memory_format="auto", amp=False, model=dense).channels_last
    assert make_plan(device, memory_format="auto", amp=False, model=het).channels_last is on_cuda
    assert not make_plan(device, memory_format="contiguous", amp=False, model=dense).channels_last
    assert make_plan(device, memory_format="channels_last", amp=False, model=het).channels_last
    for name, cl_on_cpu in [("hetconv_vgg16_p4", False), ("hetconv_vgg16_p1", True),
                            ("mobilenet_v2_cifar100", True), ("channelnet_v1_cifar100", True)]:
        model = build_model(load_arch(name))
        plan = make_plan(device, memory_format="auto", amp=False, model=model)
        assert plan.channels_last is (cl_on_cpu or on_cuda), name


def _fake_ray(assigned: dict[str, float]) -> Any:
    context = types.SimpleNamespace(get_assigned_resources=lambda: assigned)
    return types.SimpleNamespace(is_initialized=lambda: True, get_runtime_context=lambda: context)


def test_trial_threads_follow_the_recipe_then_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    assert trial_threads(3) == 3
    monkeypatch.delitem(__import__("sys").modules, "ray", raising=False)
    assert trial_threads(None) is None
    monkeypatch.setitem(__import__("sys").modules, "ray", _fake_ray({"CPU": 2.0, "GPU": 0.25}))
    assert trial_threads(None) == 2
    assert trial_threads(4) == 4
    monkeypatch.setitem(__import__("sys").modules, "ray", _fake_ray({"CPU": 0.5}))
    assert trial_threads(None) == 1
    assert device_mod._ray_assigned() == {"CPU": 0.5}
