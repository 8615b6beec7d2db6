"""The tests' one random-arch generator: seeded random `clnas.arch/1` documents (`random_arch`)
and single blocks (`random_plan`), small, valid by construction, and covering every block type,
both heads and the options that change a block's cost or CDG (kernel 3/5, stride 2, stage and
stem pools, HetConv `part = "in"`, dws without the depthwise BN, mbconv `expand = 1`, clc
`mid != in` and `interlace = false`, gcwm `cw_kernel < groups`, dwscw widening and narrowing,
shuffle `in_groups`, effnet custom bottleneck). `STAGES[block](rng, cin, top)` draws one stage
of that type after `cin` channels, with widths <= `top`."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from search_space import Arch, ArchError, parse_arch
from search_space.arch import BLOCK_TYPES, BlockPlan

MAX_WIDTH = 128
Stage = dict[str, Any]


def _divisors(n: int, limit: int = 16) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def _width(rng: random.Random, top: int, multiple: int = 1, low: int = 4) -> int:
    """A random width <= top that is a multiple of `multiple` (and at least `low`)."""
    start = -(-max(low, multiple) // multiple)
    return multiple * rng.randint(start, top // multiple)


def _kernel(rng: random.Random) -> int:
    return rng.choice((3, 3, 5))


def _conv(rng: random.Random, cin: int, top: int) -> Stage:
    return {"out": _width(rng, top), "kernel": _kernel(rng), "bias": rng.random() < 0.5}


def _hetconv(rng: random.Random, cin: int, top: int) -> Stage:
    if cin <= top // 2 and rng.random() < 0.25:
        return {"out": cin * rng.randint(1, top // cin), "part": "in"}
    part = rng.choice(_divisors(cin))
    bias = rng.random() < 0.5
    return {"out": _width(rng, top, part), "part": part, "kernel": _kernel(rng), "bias": bias}


def _dws(rng: random.Random, cin: int, top: int) -> Stage:
    return {"out": _width(rng, top), "kernel": _kernel(rng), "dw_bn_act": rng.random() < 0.5}


def _expand(rng: random.Random, cin: int, top: int) -> int:
    return rng.choice([t for t in (1, 2, 3, 6) if cin * t <= 4 * top])


def _mbconv(rng: random.Random, cin: int, top: int) -> Stage:
    return {"out": _width(rng, top), "expand": _expand(rng, cin, top), "kernel": _kernel(rng)}


def _clc(rng: random.Random, cin: int, top: int) -> Stage:
    g1 = rng.choice(_divisors(cin))
    mid = cin if rng.random() < 0.6 else _width(rng, top, g1)
    # Repeated blocks map `out -> out` (with `mid = out` unless given), so `g1 | out` too.
    g2 = rng.choice([g for g in _divisors(mid) if math.lcm(g1, g) <= top])
    out = _width(rng, top, math.lcm(g1, g2))
    stage = {"out": out, "g1": g1, "g2": g2, "interlace": rng.random() < 0.7}
    if mid != cin:
        stage["mid"] = mid
    return stage


def _ant(rng: random.Random, cin: int, top: int) -> Stage:
    expand = _expand(rng, cin, top)
    groups = rng.choice(_divisors(cin * expand, 8))
    return {
        "out": _width(rng, top, groups),
        "expand": expand,
        "se_ratio": rng.choice((2, 4, 8)),
        "groups": groups,
        "kernel": _kernel(rng),
    }


def _eant(rng: random.Random, cin: int, top: int) -> Stage:
    expand = _expand(rng, cin, top)
    out = _width(rng, top)
    common = [g for g in _divisors(cin * expand, 8) if out % g == 0]
    groups = [rng.choice(common) for _ in range(rng.randint(1, 3))]
    return {"out": out, "expand": expand, "se_ratio": rng.choice((4, 8)), "groups": groups}


def _gm(rng: random.Random, cin: int, top: int) -> Stage:
    groups = rng.choice(_divisors(cin, 8))
    return {"out": _width(rng, top, groups), "groups": groups, "kernel": _kernel(rng)}


def _gcwm(rng: random.Random, cin: int, top: int) -> Stage:
    stage = _gm(rng, cin, top)
    return {**stage, "cw_kernel": rng.randint(1, 2 * stage["groups"] + 2)}


def _dwscw(rng: random.Random, cin: int, top: int) -> Stage:
    if rng.random() < 0.5 and cin * 2 <= top:
        out = cin * rng.randint(1, top // cin)  # widening: out/in kernels
    else:
        out = cin // rng.choice(_divisors(cin))  # narrowing: channel stride in/out
    return {"out": out, "cw_kernel": rng.randint(1, 16), "kernel": _kernel(rng)}


def _shuffle(rng: random.Random, cin: int, top: int) -> Stage:
    # Stride 2 widens `in -> out` and concatenates; stride 1 keeps `in == out`. `g` divides the
    # bottleneck `out/4` and the branch `out - in` (so `in` too); `in_groups` divides `in`, `out/4`.
    groups = rng.choice(_divisors(cin, 4))
    if cin % (4 * groups) == 0 and rng.random() < 0.3:
        stride, out = 1, cin
    else:
        low = cin // (4 * groups) + 1
        stride, out = 2, 4 * groups * rng.randint(low, max(low, top // (4 * groups)))
    in_groups = rng.choice([g for g in _divisors(cin, 4) if (out // 4) % g == 0])
    return {"out": out, "stride": stride, "groups": groups, "in_groups": in_groups}


def _effnet(rng: random.Random, cin: int, top: int) -> Stage:
    stage: Stage = {"out": _width(rng, top, low=2), "kernel": _kernel(rng)}
    if rng.random() < 0.4:
        stage["bottleneck"] = _width(rng, top)
    return stage


STAGES: dict[str, Callable[[random.Random, int, int], Stage]] = {
    "conv": _conv,
    "hetconv": _hetconv,
    "dws": _dws,
    "mbconv": _mbconv,
    "clc": _clc,
    "ant": _ant,
    "eant": _eant,
    "gm": _gm,
    "gcwm": _gcwm,
    "dwscw": _dwscw,
    "shuffle": _shuffle,
    "effnet": _effnet,
}


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
