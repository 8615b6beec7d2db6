"""Arch document -> `torch.nn.Module`. Stage logic (stride on the first block, widths, spatial
sizes) comes from `Arch.blocks()`; the blocks only know their own in/out/stride.

`build_model` gives the reference modules (`runtime="reference"`, the default), which run as
they are everywhere. `runtime="fused"` asks for the fused inference runtime
(`search_space/runtime/`): the same modules, parameters and state_dict, run as they are for
training and under `torch.no_grad()`, and in their fused form (BN folded, channels_last, oneDNN
kernels) under `torch.inference_mode()` on CPU in eval mode.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from search_space.arch import Arch
from search_space.blocks import BLOCKS, HEADS
from search_space.blocks.layers import ConvBNAct

Runtime = Literal["reference", "fused"]
RUNTIMES: tuple[str, ...] = ("reference", "fused")


class Network(nn.Module):
    """stem -> stages (blocks, optional 2x2 max pool) -> head."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
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
        return self.head(self.forward_features(x))


def build_model(arch: Arch, *, runtime: Runtime = "reference") -> Network:
    """Build the PyTorch module for a validated arch (see `search_space.load_arch`).

    `runtime="reference"` (the default): the reference modules only, everywhere.
    `runtime="fused"`: a `search_space.runtime.FusedNetwork`, which runs the fused inference
    form under `torch.inference_mode()` on CPU; same parameters and state_dict.
    """
    if not isinstance(arch, Arch):
        raise TypeError(
            f"build_model expects an Arch (use load_arch first), got {type(arch).__name__}"
        )
    if runtime == "reference":
        return Network(arch)
    if runtime == "fused":
        # The runtime imports this module, not the reverse: imported only when asked for.
        from search_space.runtime import FusedNetwork

        return FusedNetwork(arch)
    raise ValueError(f"unknown runtime {runtime!r}; expected one of {list(RUNTIMES)}")
