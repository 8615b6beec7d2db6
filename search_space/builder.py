"""Arch document -> `torch.nn.Module`. Stage logic (stride on the first block, widths, spatial
sizes) comes from `Arch.blocks()`; the blocks only know their own in/out/stride.

A network built with `fast=True` (the default) has the reference modules, parameters and
state_dict, and runs them as they are for training and under `torch.no_grad()`; under
`torch.inference_mode()` on CPU, in eval mode, it runs their fused inference form instead
(`blocks/inference/`: BN folded, channels_last, per-shape fast paths), built on first use and
rebuilt whenever a parameter, buffer, dtype or train/eval flag changes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from search_space.arch import Arch
from search_space.blocks import BLOCKS, HEADS
from search_space.blocks.layers import ConvBNAct


class Network(nn.Module):
    """stem -> stages (blocks, optional 2x2 max pool) -> head."""

    def __init__(self, arch: Arch, *, fast: bool = True):
        super().__init__()
        self.arch = arch
        self.fast = fast
        self._plan_key: tuple[Any, ...] | None = None
        self._plan: nn.Module | None = None
        self._plan_state: tuple[list[torch.Tensor], list[nn.Module], int] | None = None
        stem: list[nn.Module] = []
        if arch.stem is not None:
            s = arch.stem
            stem.append(
                ConvBNAct(arch.in_channels, s.out, kernel=s.kernel, stride=s.stride, act=s.act)
            )
            if s.pool == "max":
                stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        stages: list[nn.Sequential] = [nn.Sequential() for _ in arch.stages]
        for plan in arch.blocks():
            block = BLOCKS[plan.block](
                plan.spec, cin=plan.cin, cout=plan.cout, stride=plan.stride, first=plan.first
            )
            stages[plan.stage].append(block)
        for stage, spec in zip(stages, arch.stages, strict=True):
            if spec.pool == "max":
                stage.append(nn.MaxPool2d(2, 2))
        self.stages = nn.Sequential(*stages)
        channels, size = arch.final_features()
        self.head = HEADS[arch.head.type](
            arch.head, channels=channels, size=size, num_classes=arch.num_classes
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_inference_mode_enabled() and self.uses_inference_plan_for(x):
            return self.inference_plan()(x)
        return self.head(self.forward_features(x))

    def uses_inference_plan_for(self, x: torch.Tensor) -> bool:
        """Whether `forward(x)` under `torch.inference_mode()` runs the fused inference form."""
        return (
            self.fast
            and not self.training
            and x.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu")
        )

    def inference_plan(self) -> nn.Module:
        """The fused inference form of this network, rebuilt when its state has changed."""
        from search_space.blocks.inference import fuse_for_inference

        key = self._state_key()
        if self._plan is None or key != self._plan_key:
            # Kept out of `_modules`: not part of the parameters or the state_dict.
            self.__dict__["_plan"] = fuse_for_inference(self)
            self._plan_key = key
        assert self._plan is not None
        return self._plan

    def _state_key(self) -> tuple[Any, ...]:
        """What the fused form depends on: every parameter and buffer (storage, version, so
        in-place updates, loads, `.to()` are seen) and every train/eval flag. The tensor and
        module lists are cached while no module anywhere registers a parameter, buffer or
        submodule (walking the tree costs ~0.3 ms a call on clcNet-A); after one has, the tree
        is walked again, and only a different tensor, version or flag means a rebuild."""
        if self._plan_state is None or self._plan_state[2] != _registrations:
            tensors = [*self.parameters(), *self.buffers()]
            self._plan_state = (tensors, list(self.modules()), _registrations)
        tensors, modules, _ = self._plan_state
        return (
            tuple(t._version for t in tensors),
            tuple(t.data_ptr() for t in tensors),
            tuple(m.training for m in modules),
        )


# Bumped whenever any module registers a parameter, buffer or submodule (assignment included):
# a cached parameter list may then be stale.
_registrations = 0


def _count_registration(*_: Any) -> None:
    global _registrations
    _registrations += 1


nn.modules.module.register_module_parameter_registration_hook(_count_registration)
nn.modules.module.register_module_buffer_registration_hook(_count_registration)
nn.modules.module.register_module_module_registration_hook(_count_registration)


def build_model(arch: Arch, *, fast: bool = True) -> Network:
    """Build the PyTorch module for a validated arch (see `search_space.load_arch`).

    `fast=False` gives the reference modules only (never the fused inference form); both have
    the same parameters and state_dict.
    """
    if not isinstance(arch, Arch):
        raise TypeError(
            f"build_model expects an Arch (use load_arch first), got {type(arch).__name__}"
        )
    return Network(arch, fast=fast)
