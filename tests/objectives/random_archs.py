"""The tests' one random-arch generator: seeded random `clnas.arch/1` documents (`random_arch`)
and single blocks (`random_plan`), small, valid by construction, and covering every block type,
both heads and the options that change a block's cost or CDG (kernel 3/5, stride 2, stage and
stem pools, HetConv `part = "in"`, dws without the depthwise BN, mbconv `expand = 1`, clc
`mid != in` and `interlace = false`, gcwm `cw_kernel < groups`, dwscw widening and narrowing,
shuffle `in_groups`, effnet custom bottleneck). `STAGES[block](rng, cin, top)` draws one stage
of that type after `cin` channels, with widths <= `top`: the type's `BlockSpec.random_stage`, so
a type registered later (tests/objectives/block_pwdw.py) is drawn too."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from search_space import Arch, ArchError, block_types, parse_arch
from search_space.arch import BLOCK_TYPES, BlockPlan

MAX_WIDTH = 128
Stage = dict[str, Any]


def _kernel(rng: random.Random) -> int:
    return rng.choice((3, 3, 5))


def _width(rng: random.Random, top: int, multiple: int = 1, low: int = 4) -> int:
    """A random width <= top that is a multiple of `multiple` (and at least `low`)."""
    start = -(-max(low, multiple) // multiple)
    return multiple * rng.randint(start, top // multiple)


# One stage of each registered type: its spec's `random_stage` (search_space/block_types/).
STAGES: Mapping[str, Callable[[random.Random, int, int], Stage]] = block_types.Table(
    lambda spec: spec.random_stage, "random stages"
)


def _document(rng: random.Random, num_classes: int, resolution: int) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": "clnas.arch/1",
        "name": "random",
        "num_classes": num_classes,
        "resolution": resolution,
    }
    size, cin = resolution, 3
    if rng.random() < 0.8:
        stem: Stage = {
            "out": rng.choice((8, 12, 16, 24, 32)),
            "kernel": _kernel(rng),
            "stride": rng.choice((1, 2)),
            "act": rng.choice(("relu", "relu6")),
        }
        size = (size - 1) // stem["stride"] + 1
        if rng.random() < 0.25:
            stem["pool"] = "max"
            size = (size - 1) // 2 + 1
        doc["stem"], cin = stem, stem["out"]
    stages = []
    for _ in range(rng.randint(1, 4)):
        block = rng.choice(BLOCK_TYPES)
        stage = {"block": block, **STAGES[block](rng, cin, MAX_WIDTH)}
        stride = stage.get("stride") or (2 if size >= 2 and rng.random() < 0.4 else 1)
        if stride == 2 and size < 2:  # only a shuffle unit insists on widening at stride 2
            continue
        size = (size - 1) // stride + 1
        stage["stride"] = stride
        stage["repeat"] = rng.choice((1, 1, 2))
        if size >= 2 and rng.random() < 0.2:
            stage["pool"] = "max"
            size //= 2
        stages.append(stage)
        cin = stage["out"]
    if not stages:
        stages.append({"block": "dws", "out": _width(rng, MAX_WIDTH)})
        cin = stages[-1]["out"]
    if rng.random() < 0.3:
        if cin < num_classes:  # the conv classifier needs at least num_classes channels
            out = rng.randint(num_classes, max(num_classes, MAX_WIDTH))
            stages.append({"block": rng.choice(("conv", "dws")), "out": out})
        doc["head"] = {"type": "conv_classifier"}
    else:
        head: dict[str, Any] = {"type": "fc"}
        if rng.random() < 0.4:
            head["conv_out"] = _width(rng, MAX_WIDTH)
        if rng.random() < 0.4:
            head["hidden"] = [_width(rng, MAX_WIDTH) for _ in range(rng.randint(1, 2))]
        if rng.random() < 0.2:
            head["dropout"] = 0.1
        doc["head"] = head
    doc["stages"] = stages
    return doc


def random_arch(rng: random.Random, *, num_classes: int = 100, resolution: int = 32) -> Arch:
    """A valid random arch (widths <= 128); a rare invalid draw is redrawn."""
    for _ in range(20):
        try:
            return parse_arch(_document(rng, num_classes, resolution))
        except ArchError:
            continue
    raise RuntimeError("random_arch: 20 invalid draws in a row; the generator is broken")


def random_plan(rng: random.Random, block: str, *, top: int = 32) -> BlockPlan:
    """One valid block of type `block` with at most `top` channels: the first or a later block
    of a 1-2 block stage at stride 1 or 2, on an 8x8 map."""
    while True:
        cin = rng.randint(1, top)
        stage = {"stride": rng.choice((1, 2)), "repeat": rng.choice((1, 2))}
        stage |= {"block": block, **STAGES[block](rng, cin, top)}
        doc = {
            "format": "clnas.arch/1",
            "num_classes": 2,
            "resolution": 8,
            "in_channels": cin,
            "stages": [stage],
            "head": {"type": "fc"},
        }
        try:
            return rng.choice(list(parse_arch(doc).blocks()))
        except ArchError:
            continue
