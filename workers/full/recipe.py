"""Full-training recipes (`clnas.recipe/1`): the papers' ImageNet settings as named, validated
documents. Built-in recipes are the JSON files in `recipes/` (each cites its source); a user's
own recipe is a file or a dict in the same format."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from search_space.arch import load_document, validate_document

FORMAT = "clnas.recipe/1"
# ImageNet per-channel mean and std of images in [0, 1] (the values every reference uses).
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# Eval resize = crop / 0.875, i.e. 256 for 224 crops (the standard "resize 256, centre crop 224").
CROP_FRACTION = 0.875

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
UnitOpen = Annotated[float, Field(gt=0.0, lt=1.0)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
Channels = Annotated[list[float], Field(min_length=3, max_length=3)]


class Recipe(BaseModel):
    """One training recipe. `lr` is the rate at `base_batch_size`; the optimiser uses
    `scaled_lr` = lr * batch_size / base_batch_size (linear scaling, Goyal et al. 2017).
    `batch_size` is global: it is split evenly over the data-parallel workers."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    format: Literal["clnas.recipe/1"]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
    source: str = ""  # the paper or reference the numbers come from
    epochs: PosInt
    batch_size: PosInt
    lr: Annotated[float, Field(gt=0.0)]
    base_batch_size: PosInt = 256
    optimizer: Literal["sgd", "rmsprop"]
    momentum: Fraction = 0.9
    nesterov: bool = False
    rmsprop_alpha: UnitOpen = 0.9  # RMSProp's "decay" of the squared-gradient average
    # torch adds eps outside the square root, TensorFlow inside: TF's 1e-3 is about
    # sqrt(1e-3) = 0.0316 here (the translation torchvision's MobileNetV3 recipe makes).
    rmsprop_eps: Annotated[float, Field(gt=0.0)] = 0.0316
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    # False: decay only conv and linear weights (tensors with more than one dimension).
    decay_norm_and_bias: bool = True
    schedule: Literal["linear", "cosine", "exponential"]
    lr_gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0  # per epoch, `exponential` only
    warmup_epochs: NonNegInt = 0  # linear warm-up from 0, per step
    label_smoothing: Fraction = 0.0
    ema_decay: UnitOpen | None = None  # exponential moving average of the weights, per step
    image_size: PosInt = 224  # training and evaluation crop
    resize_size: PosInt | None = None  # evaluation resize of the shorter side; None: crop / 0.875
    crop_scale_min: Annotated[float, Field(gt=0.0, le=1.0)] = 0.08  # random-resized-crop area
    color_jitter: Fraction = 0.0  # brightness, contrast and saturation strength
    mean: Channels = Field(default_factory=lambda: list(IMAGENET_MEAN))
    std: Channels = Field(default_factory=lambda: list(IMAGENET_STD))
    # docs/hardware.md#memory-format: "auto" is channels_last unless measured slower
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    # None: on for CUDA (bf16 where supported, else fp16 with GradScaler), off on CPU;
    # True on CPU is bf16 autocast
    amp: bool | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs the sgd optimizer with momentum > 0")
        if self.lr_gamma != 1.0 and self.schedule != "exponential":
            raise ValueError("lr_gamma is only used by the exponential schedule")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs must be below epochs ({self.epochs})")
        if self.eval_resize < self.image_size:
            raise ValueError(f"resize_size must be at least image_size ({self.image_size})")
        if any(s <= 0 for s in self.std):
            raise ValueError("std must be positive")
        return self

    @property
    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / self.base_batch_size

    @property
    def eval_resize(self) -> int:
        if self.resize_size is not None:
            return self.resize_size
        return int(self.image_size / CROP_FRACTION)

    def with_overrides(self, **changes: Any) -> Recipe:
        """A copy with `changes` applied (None values ignored), validated again. Changing
        `image_size` alone also resets `resize_size` to its default."""
        updates = {k: v for k, v in changes.items() if v is not None}
        if "image_size" in updates and "resize_size" not in updates:
            updates["resize_size"] = None
        return parse_recipe({**self.model_dump(), **updates})


def recipe_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".json") for p in _builtin().iterdir() if p.name.endswith(".json")
    )


def parse_recipe(data: Any) -> Recipe:
    """Validate a recipe document; `ArchError` names every offending field (`lr_gamma`)."""
    return validate_document(Recipe, data, "a recipe")


def load_recipe(x: Recipe | dict[str, Any] | str | Path) -> Recipe:
    """A recipe from a `Recipe`, a dict, a .json/.yaml path, or a built-in name."""
    if isinstance(x, Recipe):
        return x
    if isinstance(x, dict):
        return parse_recipe(x)
    p = Path(x)
    if p.suffix.lower() in (".json", ".yaml", ".yml"):
        return parse_recipe(load_document(p))
    name = str(x)
    if name not in recipe_names():
        raise ValueError(f"unknown recipe {name!r}; built-in recipes: {', '.join(recipe_names())}")
    return parse_recipe(json.loads(_builtin().joinpath(f"{name}.json").read_text()))


def _builtin() -> Any:
    return resources.files("workers.full").joinpath("recipes")
