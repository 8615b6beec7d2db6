from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from objectives import cost_report
from search_space import load_arch
from workers.data import write_cifar100_archive
from workers.proxy import EpochMetrics, ProxyRecipe, train_proxy

CLASSES = 10
TINY: dict[str, Any] = {
    "format": "clnas.arch/1",
    "name": "tiny",
    "num_classes": CLASSES,
    "resolution": 32,
    "stem": {"out": 16, "kernel": 3, "stride": 1},
    "stages": [{"block": "dws", "out": 32, "stride": 2}, {"block": "dws", "out": 64, "stride": 2}],
    "head": {"type": "fc"},
}
TIMING_KEYS = {"images_per_s", "wall_s"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A learnable 10-class synthetic dataset where `dataset="synthetic"` looks for it."""
    root = tmp_path_factory.mktemp("data")
    write_cifar100_archive(root / "synthetic", n_train=1500, n_test=10, num_classes=CLASSES, seed=1)
    return root


def test_recipe_defaults_and_validation() -> None:
    r = ProxyRecipe()
    assert (r.epochs, r.batch_size, r.lr, r.momentum, r.nesterov) == (12, 256, 0.1, 0.9, True)
    assert (r.weight_decay, r.label_smoothing, r.val_size) == (5e-4, 0.1, 5000)
    assert ProxyRecipe(batch_size=128).scaled_lr == pytest.approx(0.05)
    with pytest.raises(ValidationError, match="extra"):
        ProxyRecipe(epoch=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="epochs"):
        ProxyRecipe(epochs="3")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="nesterov needs momentum"):
        ProxyRecipe(momentum=0.0)


def test_proxy_training_learns_the_synthetic_task(data_dir: Path) -> None:
    reports: list[EpochMetrics] = []
    recipe = ProxyRecipe(epochs=4, batch_size=64, val_size=300, latency_repeats=3)
    result = train_proxy(TINY, recipe, data_dir, dataset="synthetic", report=reports.append)

    chance = 1 / CLASSES
    assert result.val_top1 >= 4 * chance, result.history  # seen: 0.94 after 4 epochs (synthetic)
    assert result.val_top5 >= result.val_top1
    assert [m["epoch"] for m in reports] == [1, 2, 3, 4]
    assert all(set(m) == set(EpochMetrics.__annotations__) for m in reports)
    assert all(m["images_per_s"] > 0 and math.isfinite(m["val_loss"]) for m in reports)
    assert all(m["synthetic"] for m in reports)
    assert list(result.history) == reports
    assert result.synthetic and result.dataset == "synthetic"
    assert (result.train_images, result.val_images, result.epochs) == (1200, 300, 4)
    cost = cost_report(load_arch(TINY))
    assert (result.madds, result.params, result.fcrf) == (cost.madds, cost.params, cost.fcrf)
    assert result.latency_ms is not None and result.latency_ms > 0
    assert not result.diverged
    json.dumps(result.to_dict())


def test_same_seed_same_metrics_and_caller_rng_untouched(data_dir: Path) -> None:
    # A 100-class, 64x64 arch is adapted to the dataset's 10 classes at 32x32.
    arch = load_arch(TINY).with_changes(num_classes=100, resolution=64)
    recipe = ProxyRecipe(
        epochs=2, batch_size=32, val_size=100, max_train_images=160, latency_repeats=0, seed=7
    )

    def run(r: ProxyRecipe) -> list[dict[str, float]]:
        result = train_proxy(arch, r, data_dir, dataset="synthetic")
        assert (result.num_classes, result.resolution, result.train_images) == (10, 32, 160)
        assert result.madds == cost_report(arch, resolution=32, num_classes=10).madds
        return [{k: v for k, v in m.items() if k not in TIMING_KEYS} for m in result.history]

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = run(recipe)
    assert torch.equal(torch.rand(3), expected_next), "the caller's RNG state is restored"
    assert run(recipe) == first
    assert run(recipe.model_copy(update={"seed": 8})) != first


def test_divergence_stops_early(data_dir: Path) -> None:
    recipe = ProxyRecipe(
        epochs=3, batch_size=32, lr=1e12, val_size=100, max_train_images=160, latency_repeats=0
    )
    result = train_proxy(TINY, recipe, data_dir, dataset="synthetic")
    assert result.diverged and result.epochs < 3
