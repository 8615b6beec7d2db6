"""Define-by-run sampling of an arch from a space (docs/design.md §5).

Dimensions are suggested in order over anything with Optuna's `suggest_categorical` /
`suggest_int` (an `optuna.Trial`, or `RandomSuggester` for plain random draws). Choices that
would break a divisibility rule for the channels already sampled are filtered out *before* the
suggestion, so every sample validates by construction. Optuna needs one fixed choice list per
parameter name, so when filtering changes the list the name carries the context
(`s2.clc.g1@in=64,out=128`); a dimension with a single valid choice is not suggested at all.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any, Protocol

from search_space.arch import Arch, conv_out_size, parse_arch
from search_space.spaces.format import BlockDims, Space

Choice = Any


class Suggester(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[Choice]) -> Choice: ...

    def suggest_int(self, name: str, low: int, high: int) -> int: ...


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


def _divides(g: int, n: int) -> bool:
    return n % g == 0


class _Context:
    """What the choices of one stage depend on."""

    def __init__(
        self, trial: Suggester, stage: int, cin: int, cout: int, stride: int, repeat: int, size: int
    ):
        self.trial, self.stage = trial, stage
        self.cin, self.cout, self.stride, self.repeat, self.size = cin, cout, stride, repeat, size

    def pick(
        self, key: str, declared: Sequence[Choice], valid: Sequence[Choice], extra: str = ""
    ) -> Choice:
        if not valid:
            raise ValueError(f"stages[{self.stage}].{key}: no valid choice")  # filtered upstream
        if len(valid) == 1:
            return valid[0]
        name = f"s{self.stage}.{key}"
        if list(valid) != list(declared) or extra:
            name += f"@in={self.cin},out={self.cout},s={self.stride}{extra}"
        return self.trial.suggest_categorical(name, list(valid))

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """(in, out) of the stage's first block and, when repeated, of the others."""
        return [(self.cin, self.cout)] + ([(self.cout, self.cout)] if self.repeat > 1 else [])


# -- per block type: which choices are valid, and the sampled keys ----------------------------


def _groups_ok(g: int, ctx: _Context, expand: int = 1) -> bool:
    return all(_divides(g, cin * expand) and _divides(g, cout) for cin, cout in ctx.pairs)


def _shuffle_groups_ok(g: int, ctx: _Context, first_stage: bool) -> bool:
    mid = ctx.cout // 4
    branch = ctx.cout - ctx.cin if ctx.stride == 2 else ctx.cout
    in_ok = _divides(g, ctx.cin) or first_stage
    return in_ok and _divides(g, mid) and _divides(g, branch) and _divides(g, ctx.cout)


def _valid_eant_sets(dims: BlockDims, ctx: _Context, expand: int) -> dict[int, list[str]]:
    groups = [g for g in dims.groups or [] if _groups_ok(g, ctx, expand)]
    return {
        k: ["-".join(map(str, c)) for c in itertools.combinations(groups, k)]
        for k in dims.width or []
        if len(groups) >= k
    }


def _type_ok(block: str, dims: BlockDims, ctx: _Context, first_stage: bool) -> bool:
    if block == "hetconv":
        return bool(_valid_parts(dims, ctx))
    if block == "clc":
        return bool(_valid_g1(dims, ctx)) and bool(_valid_g2(dims, ctx))
    if block == "ant":
        return any(_groups_ok(g, ctx, e) for e in dims.expand or [] for g in dims.groups or [])
    if block == "eant":
        return any(_valid_eant_sets(dims, ctx, e) for e in dims.expand or [])
    if block in ("gm", "gcwm"):
        return any(_groups_ok(g, ctx) for g in dims.groups or [])
    if block == "dwscw":
        return _divides(ctx.cin, ctx.cout) or _divides(ctx.cout, ctx.cin)
    if block == "shuffle":
        shape_ok = ctx.cout % 4 == 0 and (
            ctx.cout > ctx.cin if ctx.stride == 2 else ctx.cout == ctx.cin
        )
        return shape_ok and any(_shuffle_groups_ok(g, ctx, first_stage) for g in dims.groups or [])
    if block == "effnet":
        return ctx.cout >= 2 and (ctx.stride == 1 or ctx.size >= 2)
    return True


def _valid_parts(dims: BlockDims, ctx: _Context) -> list[Choice]:
    def fits(p: Choice, cin: int, cout: int) -> bool:
        part = cin if p == "in" else p
        return _divides(part, cin) and _divides(part, cout)

    return [p for p in dims.part or [] if all(fits(p, a, b) for a, b in ctx.pairs)]


def _valid_g1(dims: BlockDims, ctx: _Context) -> list[int]:
    """clc g1 (given directly or as CRF size M/g1); the stage's g1 must fit every block."""
    if dims.crf is not None:
        g1s = [ctx.cin // c for c in dims.crf if _divides(c, ctx.cin)]
    else:
        g1s = list(dims.g1 or [])
    return [g for g in g1s if all(_divides(g, a) for pair in ctx.pairs for a in pair)]


def _valid_g2(dims: BlockDims, ctx: _Context) -> list[int]:
    return [g for g in dims.g2 or [] if all(_divides(g, a) for pair in ctx.pairs for a in pair)]


def _sample_block_keys(
    block: str, dims: BlockDims, ctx: _Context, first_stage: bool
) -> dict[str, Any]:
    p = f"{block}."
    keys: dict[str, Any] = {}
    if block != "shuffle":
        keys["kernel"] = ctx.pick(p + "kernel", dims.kernel, dims.kernel)
    if block in ("conv", "hetconv"):
        keys["bias"] = ctx.pick(p + "bias", dims.bias, dims.bias)
    if block == "dws":
        keys["dw_bn_act"] = ctx.pick(p + "dw_bn_act", dims.dw_bn_act, dims.dw_bn_act)
    elif block == "hetconv":
        keys["part"] = ctx.pick(p + "part", dims.part or [], _valid_parts(dims, ctx))
    elif block == "mbconv":
        keys["expand"] = ctx.pick(p + "expand", dims.expand or [], dims.expand or [])
    elif block == "clc":
        declared_g1 = dims.g1 or [ctx.cin // c for c in dims.crf or [] if _divides(c, ctx.cin)]
        keys["g1"] = ctx.pick(
            p + "g1", declared_g1, _valid_g1(dims, ctx), extra="" if dims.g1 else ",crf"
        )
        keys["g2"] = ctx.pick(p + "g2", dims.g2 or [], _valid_g2(dims, ctx))
        keys["interlace"] = ctx.pick(p + "interlace", dims.interlace, dims.interlace)
    elif block == "ant":
        expands = [
            e for e in dims.expand or [] if any(_groups_ok(g, ctx, e) for g in dims.groups or [])
        ]
        e = keys["expand"] = ctx.pick(p + "expand", dims.expand or [], expands)
        keys["se_ratio"] = ctx.pick(p + "se_ratio", dims.se_ratio or [], dims.se_ratio or [])
        groups = [g for g in dims.groups or [] if _groups_ok(g, ctx, e)]
        keys["groups"] = ctx.pick(p + "groups", dims.groups or [], groups, extra=f",e={e}")
    elif block == "eant":
        expands = [e for e in dims.expand or [] if _valid_eant_sets(dims, ctx, e)]
        e = keys["expand"] = ctx.pick(p + "expand", dims.expand or [], expands)
        keys["se_ratio"] = ctx.pick(p + "se_ratio", dims.se_ratio or [], dims.se_ratio or [])
        sets = _valid_eant_sets(dims, ctx, e)
        k = ctx.pick(p + "width", dims.width or [], sorted(sets), extra=f",e={e}")
        members = ctx.pick(p + "groups", sets[k], sets[k], extra=f",e={e},K={k}")
        keys["groups"] = [int(g) for g in members.split("-")]
    elif block in ("gm", "gcwm"):
        groups = [g for g in dims.groups or [] if _groups_ok(g, ctx)]
        keys["groups"] = ctx.pick(p + "groups", dims.groups or [], groups)
        if block == "gcwm":
            keys["cw_kernel"] = ctx.pick(
                p + "cw_kernel", dims.cw_kernel or [], dims.cw_kernel or []
            )
    elif block == "dwscw":
        keys["cw_kernel"] = ctx.pick(p + "cw_kernel", dims.cw_kernel or [], dims.cw_kernel or [])
    elif block == "shuffle":
        groups = [g for g in dims.groups or [] if _shuffle_groups_ok(g, ctx, first_stage)]
        g = keys["groups"] = ctx.pick(p + "groups", dims.groups or [], groups)
        if not _divides(g, ctx.cin):
            keys["in_groups"] = 1  # ShuffleNet: the first stage's first 1x1 conv is not grouped
    return keys


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
        valid = [
            b for b in st.blocks if _type_ok(b, space.blocks.get(b, BlockDims()), ctx, first_stage)
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
            **_sample_block_keys(block, dims, ctx, first_stage),
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
