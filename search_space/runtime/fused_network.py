"""`FusedNetwork`: a `Network` that runs its fused inference form under `torch.inference_mode()`.

It has the reference modules, parameters and state_dict, and runs them as they are for training
and under `torch.no_grad()`; under `torch.inference_mode()` on CPU, in eval mode, it runs
`fuse(self)` instead, built on first use and rebuilt whenever a parameter, buffer, dtype or
train/eval flag changes. `build_model(arch, runtime="fused")` builds one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from search_space.arch import Arch
from search_space.builder import Network
from search_space.runtime.kernels import register_flop_formula_once
from search_space.runtime.network import fuse


class FusedNetwork(Network):
    """The reference `Network`, with the fused form under `torch.inference_mode()`."""

    def __init__(self, arch: Arch):
        super().__init__(arch)
        self._plan_key: tuple[Any, ...] | None = None
        self._plan: nn.Module | None = None
        self._plan_state: tuple[list[torch.Tensor], list[nn.Module], int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_inference_mode_enabled() and self.uses_inference_plan_for(x):
            return self.inference_plan()(x)
        return super().forward(x)

    def uses_inference_plan_for(self, x: torch.Tensor) -> bool:
        """Whether `forward(x)` under `torch.inference_mode()` runs the fused inference form."""
        return not self.training and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")

    def inference_plan(self) -> nn.Module:
        """The fused inference form of this network, rebuilt when its state has changed."""
        key = self._state_key()
        if self._plan is None or key != self._plan_key:
            # Kept out of `_modules`: not part of the parameters or the state_dict.
            self.__dict__["_plan"] = fuse(self)
            self._plan_key = key
        assert self._plan is not None
        return self._plan

    def _state_key(self) -> tuple[Any, ...]:
        """What the fused form depends on: every parameter and buffer (storage, version, so
        in-place updates, loads, `.to()` are seen) and every train/eval flag. The tensor and
        module lists are cached while no module anywhere registers a parameter, buffer or
        submodule (walking the tree costs ~0.3 ms a call on clcNet-A); after one has, the tree
        is walked again, and only a different tensor, version or flag means a rebuild."""
        _watch_registrations()
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
# a cached parameter list may then be stale. The hooks are global, so they are installed on the
# first use of a fused network, never at import.
_registrations = 0
_watching = False


def _count_registration(*_: Any) -> None:
    global _registrations
    _registrations += 1


def _watch_registrations() -> None:
    global _watching
    if _watching:
        return
    register_flop_formula_once()
    nn.modules.module.register_module_parameter_registration_hook(_count_registration)
    nn.modules.module.register_module_buffer_registration_hook(_count_registration)
    nn.modules.module.register_module_module_registration_hook(_count_registration)
    _watching = True
