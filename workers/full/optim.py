"""Optimiser and per-step learning-rate schedule of a recipe."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from workers.full.recipe import Recipe


def param_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, object]]:
    """One group, or two when weight decay skips BN parameters and biases (clcNet decays only
    the conv weights: every tensor with more than one dimension)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.decay_norm_and_bias:
        return [{"params": params, "weight_decay": recipe.weight_decay}]
    return [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": recipe.weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    groups = param_groups(model, recipe)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=recipe.scaled_lr, momentum=recipe.momentum, nesterov=recipe.nesterov
        )
    return torch.optim.RMSprop(
        groups,
        lr=recipe.scaled_lr,
        alpha=recipe.rmsprop_alpha,
        eps=recipe.rmsprop_eps,
        momentum=recipe.momentum,
    )


def lr_factor(recipe: Recipe, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the scaled lr after `step` optimiser steps: linear warm-up from 0 over
    `warmup_epochs`, then linear decay to 0 (clcNet), cosine to 0, or `lr_gamma` per epoch
    (MobileNetV2: 0.98, a staircase per epoch)."""
    total = recipe.epochs * steps_per_epoch
    warmup = recipe.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        t = min(step - warmup, total - warmup) / (total - warmup)
        if recipe.schedule == "linear":
            return 1.0 - t
        if recipe.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return recipe.lr_gamma ** ((step - warmup) // steps_per_epoch)

    return factor


def make_scheduler(
    optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(recipe, steps_per_epoch))
