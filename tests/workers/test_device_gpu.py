"""The accelerator path on a real GPU (skipped without CUDA; scripts/device-check.sh runs it):
the device defaults, the zoo's 5-D weights under channels_last, a proxy epoch with AMP, and a
trial's memory cap from a fractional GPU share (docs/hardware.md)."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from search_space import build_model, load_arch
from workers.data import write_cifar100_archive
from workers.device import cap_memory, configure_cuda, make_plan, train_step
from workers.proxy import ProxyRecipe, train_proxy

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def test_cuda_defaults_channels_last_and_amp() -> None:
    plan = make_plan(CUDA, memory_format="auto", amp=None)
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert (plan.channels_last, plan.amp_dtype) == (True, expected)
    assert plan.grad_scaler().is_enabled() == (expected == torch.float16)


@pytest.mark.parametrize("name", ["channelnet_v3_cifar100", "mobilenet_v2_cifar100",
                                  "hetconv_vgg16_p4", "clcnet_a_cifar100"])
def test_zoo_step_on_cuda(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(load_arch(name).with_changes(num_classes=100))
    plan = make_plan(CUDA, memory_format="channels_last", amp=True)
    model = plan.prepare(model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(64, 3, 32, 32, device=CUDA)
    y = torch.randint(100, (64,), device=CUDA)
    for _ in range(3):
        loss = train_step(model, x, y, nn.CrossEntropyLoss(), optimizer, plan.grad_scaler(), plan)
    assert math.isfinite(loss.item())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_proxy_epoch_on_cuda_with_amp(tmp_path: Path) -> None:
    write_cifar100_archive(tmp_path / "synthetic", n_train=600, n_test=10, num_classes=10, seed=4)
    recipe = ProxyRecipe(epochs=2, batch_size=64, val_size=100, latency_repeats=0, device="cuda")
    result = train_proxy("channelnet_v2_cifar100", recipe, tmp_path, dataset="synthetic")
    assert result.device.startswith("cuda") and not result.diverged
    assert all(math.isfinite(m["train_loss"]) for m in result.history)


def test_fractional_gpu_share_caps_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    context = types.SimpleNamespace(get_assigned_resources=lambda: {"CPU": 1.0, "GPU": 0.25})
    fake = types.SimpleNamespace(is_initialized=lambda: True, get_runtime_context=lambda: context)
    monkeypatch.setitem(sys.modules, "ray", fake)
    configure_cuda(CUDA)
    try:
        assert torch.backends.cudnn.benchmark
        total = torch.cuda.get_device_properties(CUDA).total_memory
        with pytest.raises(torch.OutOfMemoryError):
            torch.empty(int(total * 0.3), dtype=torch.uint8, device=CUDA)
    finally:
        cap_memory(1.0, CUDA)
        torch.cuda.empty_cache()
