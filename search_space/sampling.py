"""Define-by-run sampling of an arch from a space (docs/design.md §5).

Dimensions are suggested in order over anything with Optuna's `suggest_categorical` /
`suggest_int` (an `optuna.Trial`, or `RandomSuggester` for plain random draws). Choices that
would break a divisibility rule for the channels already sampled are filtered out *before* the
suggestion, so every sample validates by construction. Optuna needs one fixed choice list per
parameter name, so when filtering changes the list the name carries the context
(`s2.clc.g1@in=64,out=128`); a dimension with a single valid choice is not suggested at all.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from search_space import block_types
from search_space.arch import Arch, conv_out_size, parse_arch
from search_space.block_types.context import Choice, Suggester
from search_space.block_types.context import Context as _Context
from search_space.spaces.format import BlockDims, Space

__all__ = ["Choice", "RandomSuggester", "Suggester", "sample_arch"]


class RandomSuggester:
    """Uniform random draws from a seeded `random.Random` (no Optuna study needed)."""

    def __init__(self, rng: random.Random | int | None = None):
        self.rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        self.params: dict[str, Choice] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Choice]) -> Choice:
        value = self.rng.choice(list(choices))
        self.params[name] = value
        return value

    def suggest_int(self, name: str, low: int, high: int) -> int:
        value = self.rng.randint(low, high)
        self.params[name] = value
        return value


# Per block type, which choices are valid and the sampled keys are its spec's rules
# (`BlockSpec.fits`, `BlockSpec.sample`, in `search_space/block_types/<name>.py`).


def sample_arch(space: Space, trial: Suggester, *, name: str | None = None) -> Arch:
    """One candidate from `space`, define-by-run over `trial`; always a valid `Arch`."""
    size = space.resolution
    cin = space.in_channels
    doc: dict[str, Any] = {
        "format": "clnas.arch/1",
        "name": name or f"{space.name}-sample",
        "num_classes": space.num_classes,
        "resolution": space.resolution,
        "in_channels": space.in_channels,
    }
    if space.stem is not None:
        ss = space.stem
        stem = {
            "out": _pick_simple(trial, "stem.out", ss.out),
            "kernel": _pick_simple(trial, "stem.kernel", ss.kernel),
            "stride": _pick_simple(trial, "stem.stride", ss.stride),
            "act": ss.act,
        }
        if ss.pool:
            stem["pool"] = ss.pool
        doc["stem"] = stem
        cin = stem["out"]
        size = conv_out_size(size, stem["kernel"], stem["stride"])
        if ss.pool:
            size = conv_out_size(size, 3, 2)
    stages = []
    for i, st in enumerate(space.stages):
        cout = _pick_simple(trial, f"s{i}.out", st.out)
        stride = _pick_simple(trial, f"s{i}.stride", st.stride)
        lo, hi = st.repeat.low, st.repeat.high
        repeat = trial.suggest_int(f"s{i}.repeat", lo, hi) if lo < hi else lo
        ctx = _Context(trial, i, cin, cout, stride, repeat, size)
        first_stage = i == 0
        specs = block_types.REGISTRY
        valid = [
            b
            for b in st.blocks
            if specs[b].fits(space.blocks.get(b, BlockDims()), ctx, first_stage)
        ]
        if not valid:
            raise ValueError(
                f"stages[{i}]: no block type in {st.blocks} fits {cin} -> {cout} channels at "
                f"stride {stride}; widen the choices of stages[{i}].out or of the block dimensions"
            )
        block = ctx.pick("block", st.blocks, valid)
        dims = space.blocks.get(block, BlockDims())
        stage = {
            "block": block,
            "out": cout,
            "stride": stride,
            "repeat": repeat,
            **specs[block].sample(dims, ctx, first_stage),
        }
        if st.pool:
            stage["pool"] = st.pool
        stages.append(stage)
        cin = cout
        size = conv_out_size(size, 3, stride)
        if st.pool:
            size //= 2
    doc["stages"] = stages
    head_types = [t for t in space.head.type if t == "fc" or cin >= space.num_classes]
    if not head_types:
        raise ValueError(f"head.type: conv_classifier needs >= {space.num_classes} channels")
    head_type = _pick_simple(
        trial, "head.type", head_types, declared=space.head.type, context=f"@in={cin}"
    )
    head: dict[str, Any] = {"type": head_type}
    if head_type == "fc":
        conv_out = _pick_simple(trial, "head.conv_out", space.head.conv_out)
        if conv_out is not None:
            head["conv_out"] = conv_out
        head["dropout"] = _pick_simple(trial, "head.dropout", space.head.dropout)
    doc["head"] = head
    return parse_arch(doc)


def _pick_simple(
    trial: Suggester,
    name: str,
    choices: Sequence[Choice],
    declared: Sequence[Choice] | None = None,
    context: str = "",
) -> Choice:
    if len(choices) == 1:
        return choices[0]
    if declared is not None and list(declared) != list(choices):
        name += context
    return trial.suggest_categorical(name, list(choices))
