"""Recipes: the papers' numbers, strict validation, linear lr scaling, schedules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from search_space import ArchError, build_model, load_arch
from workers.full.optim import lr_factor, make_optimizer, param_groups
from workers.full.recipe import load_recipe, parse_recipe, recipe_names


def test_builtin_recipes() -> None:
    assert recipe_names() == ["antnet", "clcnet", "mobilenet_v2"]
    c = load_recipe("clcnet")  # docs/design.md §1.2
    assert (c.optimizer, c.momentum, c.nesterov, c.lr, c.schedule) == (
        "sgd",
        0.9,
        True,
        0.1,
        "linear",
    )
    assert (c.epochs, c.batch_size, c.weight_decay, c.decay_norm_and_bias) == (
        100,
        256,
        1e-4,
        False,
    )
    assert (c.image_size, c.eval_resize, c.color_jitter) == (224, 256, 0.4)
    m = load_recipe("mobilenet_v2")
    assert (m.optimizer, m.lr, m.weight_decay, m.schedule, m.lr_gamma) == (
        "sgd",
        0.045,
        4e-5,
        "exponential",
        0.98,
    )
    a = load_recipe("antnet")
    assert (a.optimizer, a.rmsprop_alpha, a.momentum, a.lr, a.batch_size) == (
        "rmsprop",
        0.9,
        0.9,
        0.045,
        96,
    )
    assert all(load_recipe(n).source for n in recipe_names())


def test_linear_lr_scaling_and_overrides() -> None:
    c = load_recipe("clcnet")
    assert c.scaled_lr == pytest.approx(0.1)
    assert c.with_overrides(batch_size=512).scaled_lr == pytest.approx(0.2)
    assert c.with_overrides(batch_size=64, epochs=None).epochs == 100  # None: unchanged
    small = c.with_overrides(image_size=32)
    assert (small.image_size, small.eval_resize) == (32, 36)
    with pytest.raises(ArchError) as info:
        c.with_overrides(batch_size=0)
    assert info.value.paths == ["batch_size"]


@pytest.mark.parametrize(
    ("patch", "path", "message"),
    [
        ({"epochs": "3"}, "epochs", "valid integer"),
        ({"lr": -0.1}, "lr", "greater than 0"),
        ({"optimiser": "sgd"}, "optimiser", "unknown key"),
        ({"optimizer": "adam"}, "optimizer", "'sgd' or 'rmsprop'"),
        ({"format": "clnas.recipe/2"}, "format", "clnas.recipe/1"),
        ({"mean": [0.5, 0.5]}, "mean", "at least 3"),
        ({"ema_decay": 1.0}, "ema_decay", "less than 1"),
        ({"lr_gamma": 0.9}, "<root>", "only used by the exponential schedule"),
        ({"optimizer": "rmsprop"}, "<root>", "nesterov needs the sgd optimizer"),
        ({"warmup_epochs": 100}, "<root>", "warmup_epochs must be below epochs"),
        ({"resize_size": 200}, "<root>", "resize_size must be at least image_size"),
    ],
)
def test_bad_recipes_name_the_field(patch: dict[str, Any], path: str, message: str) -> None:
    doc = load_recipe("clcnet").model_dump() | patch
    with pytest.raises(ArchError) as info:
        parse_recipe(doc)
    assert info.value.paths == [path], info.value.problems
    assert message in str(info.value)


def test_recipe_files_and_unknown_names(tmp_path: Path) -> None:
    doc = load_recipe("clcnet").model_dump() | {"name": "mine", "label_smoothing": 0.1}
    (tmp_path / "mine.json").write_text(json.dumps(doc))
    assert load_recipe(tmp_path / "mine.json").label_smoothing == 0.1
    assert load_recipe(str(tmp_path / "mine.json")).name == "mine"
    with pytest.raises(ValueError, match="unknown recipe 'resnet'; built-in recipes: antnet"):
        load_recipe("resnet")


def test_schedules_per_step() -> None:
    c = load_recipe("clcnet").with_overrides(epochs=4)
    f = lr_factor(c, steps_per_epoch=10)
    assert [f(s) for s in (0, 10, 20, 40)] == pytest.approx([1.0, 0.75, 0.5, 0.0])
    m = lr_factor(load_recipe("mobilenet_v2"), steps_per_epoch=10)
    assert [m(s) for s in (0, 9, 10, 25)] == pytest.approx([1.0, 1.0, 0.98, 0.98**2])
    cos = lr_factor(c.with_overrides(schedule="cosine", warmup_epochs=1), steps_per_epoch=10)
    assert [cos(s) for s in (0, 5, 10, 25, 40)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])


def test_clcnet_decays_only_conv_and_linear_weights(tiny_arch: dict[str, Any]) -> None:
    model = build_model(load_arch(tiny_arch))
    decay, no_decay = param_groups(model, load_recipe("clcnet"))
    assert all(p.ndim > 1 for p in decay["params"])  # type: ignore[attr-defined]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) > 0  # type: ignore[arg-type]
    opt = make_optimizer(model, load_recipe("clcnet").with_overrides(batch_size=128))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05) and opt.param_groups[0]["nesterov"]
    assert len(param_groups(model, load_recipe("mobilenet_v2"))) == 1
