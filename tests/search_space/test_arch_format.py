"""The `clnas.arch/1` format (docs/design.md §4): malformed documents are rejected with an
`ArchError` naming
the offending path; valid ones fill their defaults and round-trip through JSON and YAML."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from search_space import FORMAT, Arch, ArchError, load_arch, parse_arch, zoo_names


def every_block_doc() -> dict[str, Any]:
    """A valid document using all twelve block types (CIFAR-sized).

    Widths and maps: stem 16 @32; [1] 32 @16; [7] 96 @8; [10] 384 @4; [11] pool -> @2.
    """
    return {
        "format": FORMAT,
        "name": "every_block",
        "num_classes": 10,
        "resolution": 32,
        "in_channels": 3,
        "stem": {"out": 16, "kernel": 3, "stride": 1},
        "stages": [
            {"block": "conv", "out": 16, "bias": True},
            {"block": "hetconv", "out": 32, "stride": 2, "part": 4},
            {"block": "dws", "out": 32},
            {"block": "clc", "out": 64, "repeat": 2, "g1": 8, "g2": 2},
            {"block": "mbconv", "out": 64, "expand": 2},
            {"block": "ant", "out": 64, "expand": 2, "se_ratio": 8, "groups": 2},
            {"block": "eant", "out": 96, "expand": 2, "se_ratio": 8, "groups": [1, 2, 4]},
            {"block": "gm", "out": 96, "stride": 2, "groups": 4},
            {"block": "gcwm", "out": 96, "groups": 2, "cw_kernel": 4},
            {"block": "dwscw", "out": 192, "cw_kernel": 8},
            {"block": "shuffle", "out": 384, "stride": 2, "repeat": 2, "groups": 4},
            {"block": "effnet", "out": 128, "pool": "max"},
        ],
        "head": {"type": "fc", "hidden": [64], "dropout": 0.1},
    }


def conv_classifier_doc() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "name": "channelnet_like",
        "num_classes": 100,
        "resolution": 32,
        "stem": {"out": 32, "stride": 1, "act": "relu6", "pool": "max"},
        "stages": [
            {"block": "dws", "out": 64, "stride": 2},
            {"block": "gcwm", "out": 64, "groups": 2, "cw_kernel": 8, "repeat": 2},
            {"block": "dwscw", "out": 128, "cw_kernel": 16, "stride": 2},
            {"block": "hetconv", "out": 128, "part": "in"},
            {"block": "clc", "out": 128, "g1": 64, "g2": 2, "interlace": False, "mid": 128},
        ],
        "head": {"type": "conv_classifier"},
    }


VALID_DOCS = {"every_block": every_block_doc, "conv_classifier": conv_classifier_doc}

DROP = object()  # sentinel: remove the key


def edited(doc: dict[str, Any], edits: dict[tuple[Any, ...], Any]) -> Any:
    """A copy of `doc` with each `(key, index, ...)` location set to a value (or dropped)."""
    doc = copy.deepcopy(doc)
    for loc, value in edits.items():
        if not loc:
            return value
        parent = doc
        for key in loc[:-1]:
            parent = parent[key]
        if value is DROP:
            del parent[loc[-1]]
        else:
            parent[loc[-1]] = value
    return doc


S = "stages"

# (id, edits to `every_block_doc()`, the path the error must name)
MALFORMED: list[tuple[str, dict[tuple[Any, ...], Any], str]] = [
    # wrong types (strict: no coercion)
    ("out-str", {(S, 3, "out"): "64"}, "stages[3].out"),
    ("out-float", {(S, 3, "out"): 64.0}, "stages[3].out"),
    ("out-bool", {(S, 3, "out"): True}, "stages[3].out"),
    ("out-null", {(S, 0, "out"): None}, "stages[0].out"),
    ("num-classes-str", {("num_classes",): "10"}, "num_classes"),
    ("bias-int", {(S, 0, "bias"): 1}, "stages[0].bias"),
    ("interlace-str", {(S, 3, "interlace"): "yes"}, "stages[3].interlace"),
    ("eant-groups-str-member", {(S, 6, "groups"): [1, "2"]}, "stages[6].groups[1]"),
    ("eant-groups-not-list", {(S, 6, "groups"): 2}, "stages[6].groups"),
    ("hetconv-part-other-str", {(S, 1, "part"): "out"}, "stages[1].part"),
    ("stages-not-list", {(S,): {"block": "conv", "out": 16}}, "stages"),
    ("stage-not-dict", {(S, 2): 5}, "stages[2]"),
    ("stem-not-dict", {("stem",): "conv"}, "stem"),
    ("head-not-dict", {("head",): "fc"}, "head"),
    ("head-dropout-str", {("head", "dropout"): "0.1"}, "head.dropout"),
    # unknown block / head / values
    ("unknown-block", {(S, 2, "block"): "resnet"}, "stages[2].block"),
    ("block-not-str", {(S, 2, "block"): 3}, "stages[2].block"),
    ("unknown-head", {("head",): {"type": "svm"}}, "head.type"),
    ("wrong-format", {("format",): "clnas.arch/2"}, "format"),
    ("stride-3", {(S, 0, "stride"): 3}, "stages[0].stride"),
    ("stem-stride-3", {("stem", "stride"): 3}, "stem.stride"),
    ("stem-act", {("stem", "act"): "swish"}, "stem.act"),
    ("head-act", {("head", "act"): "gelu"}, "head.act"),
    ("pool-avg", {(S, 0, "pool"): "avg"}, "stages[0].pool"),
    # unknown keys
    ("unknown-top-key", {("dataset",): "cifar100"}, "dataset"),
    ("unknown-stem-key", {("stem", "padding"): 1}, "stem.padding"),
    ("unknown-stage-key", {(S, 3, "groups"): 2}, "stages[3].groups"),
    ("key-of-another-block", {(S, 0, "part"): 2}, "stages[0].part"),
    ("unknown-head-key", {("head", "classes"): 10}, "head.classes"),
    (
        "fc-key-on-conv-classifier",
        {("head",): {"type": "conv_classifier", "dropout": 0.1}},
        "head.dropout",
    ),
    # missing required keys
    ("missing-format", {("format",): DROP}, "format"),
    ("missing-num-classes", {("num_classes",): DROP}, "num_classes"),
    ("missing-resolution", {("resolution",): DROP}, "resolution"),
    ("missing-stages", {(S,): DROP}, "stages"),
    ("missing-head", {("head",): DROP}, "head"),
    ("missing-head-type", {("head", "type"): DROP}, "head.type"),
    ("missing-block", {(S, 2, "block"): DROP}, "stages[2].block"),
    ("missing-out", {(S, 1, "out"): DROP}, "stages[1].out"),
    ("missing-stem-out", {("stem", "out"): DROP}, "stem.out"),
    ("missing-g1", {(S, 3, "g1"): DROP}, "stages[3].g1"),
    ("missing-part", {(S, 1, "part"): DROP}, "stages[1].part"),
    ("missing-cw-kernel", {(S, 8, "cw_kernel"): DROP}, "stages[8].cw_kernel"),
    ("missing-se-ratio", {(S, 5, "se_ratio"): DROP}, "stages[5].se_ratio"),
    # zero / negative / out-of-range numbers
    ("out-zero", {(S, 0, "out"): 0}, "stages[0].out"),
    ("out-negative", {(S, 0, "out"): -16}, "stages[0].out"),
    ("stem-out-zero", {("stem", "out"): 0}, "stem.out"),
    ("repeat-zero", {(S, 2, "repeat"): 0}, "stages[2].repeat"),
    ("se-ratio-zero", {(S, 5, "se_ratio"): 0}, "stages[5].se_ratio"),
    ("part-zero", {(S, 1, "part"): 0}, "stages[1].part"),
    ("in-channels-zero", {("in_channels",): 0}, "in_channels"),
    ("resolution-tiny", {("resolution",): 4}, "resolution"),
    ("empty-name", {("name",): ""}, "name"),
    ("kernel-too-big", {(S, 0, "kernel"): 13}, "stages[0].kernel"),
    ("hidden-zero", {("head", "hidden"): [0]}, "head.hidden[0]"),
    ("dropout-one", {("head", "dropout"): 1.0}, "head.dropout"),
    ("empty-stages", {(S,): []}, "stages"),
    ("empty-eant-groups", {(S, 6, "groups"): []}, "stages[6].groups"),
    ("eant-too-wide", {(S, 6, "groups"): [1] * 9}, "stages[6].groups"),
    # even kernels
    ("even-kernel", {(S, 0, "kernel"): 4}, "stages[0].kernel"),
    ("even-stem-kernel", {("stem", "kernel"): 2}, "stem.kernel"),
    # structurally impossible: group counts that do not divide the channels
    ("g1-not-dividing-in", {(S, 3, "g1"): 3}, "stages[3].g1"),
    ("g1-not-dividing-mid", {(S, 3, "mid"): 36}, "stages[3].g1"),
    ("g2-not-dividing", {(S, 3, "g2"): 3}, "stages[3].g2"),
    ("g2-not-dividing-out", {(S, 3, "g2"): 128}, "stages[3].g2"),
    ("ant-groups", {(S, 5, "groups"): 3}, "stages[5].groups"),
    ("eant-member-groups", {(S, 6, "groups"): [1, 5]}, "stages[6].groups[1]"),
    ("gm-groups", {(S, 7, "groups"): 5}, "stages[7].groups"),
    ("gcwm-groups", {(S, 8, "groups"): 7}, "stages[8].groups"),
    ("part-not-dividing-in", {(S, 1, "part"): 32}, "stages[1].part"),
    ("part-not-dividing-out", {(S, 1, "part"): 8, (S, 1, "out"): 36}, "stages[1].part"),
    ("part-not-dividing", {(S, 1, "part"): 3}, "stages[1].part"),
    ("shuffle-groups", {(S, 10, "groups"): 5}, "stages[10].groups"),
    ("shuffle-in-groups", {(S, 10, "in_groups"): 5}, "stages[10].in_groups"),
    ("shuffle-out-not-by-4", {(S, 10, "out"): 390}, "stages[10].out"),
    ("shuffle-stride-1-widening", {(S, 10, "stride"): 1}, "stages[10].stride"),
    ("shuffle-stride-2-narrowing", {(S, 10, "out"): 96}, "stages[10].out"),
    ("dwscw-non-dividing-widths", {(S, 9, "out"): 144}, "stages[9].out"),
    ("effnet-one-channel", {(S, 11, "out"): 1}, "stages[11].out"),
    # shapes
    (
        "conv-classifier-too-few-channels",
        {("num_classes",): 1000, ("head",): {"type": "conv_classifier"}},
        "head.type",
    ),
    (
        "map-shrinks-to-nothing",
        {("resolution",): 8, ("stem", "stride"): 2, (S, 2, "pool"): "max", (S, 4, "pool"): "max"},
        "stages[4].pool",
    ),
    (
        "effnet-strides-1x1-map",
        {("resolution",): 8, ("stem", "stride"): 2, (S, 11, "stride"): 2},
        "stages[11].stride",
    ),
    # not a document at all
    ("list-document", {(): [every_block_doc()]}, "<root>"),
    ("string-document", {(): "clnas.arch/1"}, "<root>"),
    ("null-document", {(): None}, "<root>"),
]


def test_base_documents_are_valid():
    for make in VALID_DOCS.values():
        parse_arch(make())


@pytest.mark.parametrize(
    ("edits", "path"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_document_names_path(edits, path):
    doc = edited(every_block_doc(), edits)
    with pytest.raises(ArchError) as info:  # and no other exception type
        parse_arch(doc)
    exc = info.value
    assert path in exc.paths, str(exc)
    assert f"{path}: " in str(exc)
    assert all(msg for _, msg in exc.problems)


def test_malformed_ids_are_unique_and_plentiful():
    ids = [c[0] for c in MALFORMED]
    assert len(ids) == len(set(ids)) >= 30


def test_every_problem_is_reported():
    doc = edited(every_block_doc(), {(S, 3, "g1"): 3, (S, 7, "groups"): 5, ("stem", "foo"): 1})
    with pytest.raises(ArchError) as info:
        parse_arch(doc)
    assert "stem.foo" in info.value.paths  # parse errors first
    doc = edited(every_block_doc(), {(S, 3, "g1"): 3, (S, 7, "groups"): 5})
    with pytest.raises(ArchError) as info:
        parse_arch(doc)
    assert {"stages[3].g1", "stages[7].groups"} <= set(info.value.paths)


def test_non_fcrf_design_is_a_valid_document():
    """clcNet-Ap style (no interlace, g1*g2 > L) validates: FCRF is a budget, not a format rule."""
    doc = edited(every_block_doc(), {(S, 3, "interlace"): False, (S, 3, "g1"): 32})
    assert parse_arch(doc).stages[3].interlace is False


# -- defaults and round trips ------------------------------------------------------------------


def test_defaults_are_filled():
    arch = parse_arch(
        {
            "format": FORMAT,
            "num_classes": 10,
            "resolution": 32,
            "stages": [{"block": "clc", "out": 8, "g1": 3, "g2": 1}],
            "head": {"type": "fc"},
        }
    )
    assert arch.to_dict() == {
        "format": FORMAT,
        "name": "custom",
        "num_classes": 10,
        "resolution": 32,
        "in_channels": 3,
        "stages": [
            {
                "block": "clc",
                "out": 8,
                "stride": 1,
                "repeat": 1,
                "g1": 3,
                "g2": 1,
                "kernel": 3,
                "interlace": True,
            },
        ],
        "head": {"type": "fc", "act": "relu6", "hidden": [], "dropout": 0.0},
    }
    assert arch.stem is None
    assert arch.stages[0].mid is None


def test_stem_defaults():
    doc = edited(every_block_doc(), {("stem",): {"out": 8}})
    stem = parse_arch(doc).to_dict()["stem"]
    assert stem == {"out": 8, "kernel": 3, "stride": 2, "act": "relu"}


@pytest.mark.parametrize("make", VALID_DOCS.values(), ids=VALID_DOCS.keys())
def test_json_round_trip(make):
    arch = parse_arch(make())
    assert parse_arch(arch.to_dict()) == arch
    assert parse_arch(json.loads(arch.to_json())) == arch
    assert parse_arch(json.loads(arch.to_json(indent=None))).to_dict() == arch.to_dict()


@pytest.mark.parametrize("make", VALID_DOCS.values(), ids=VALID_DOCS.keys())
def test_yaml_round_trip(make):
    arch = parse_arch(make())
    assert parse_arch(yaml.safe_load(arch.to_yaml())) == arch


def test_with_changes_revalidates():
    arch = parse_arch(every_block_doc())
    assert arch.with_changes(num_classes=100).num_classes == 100
    with pytest.raises(ArchError) as info:
        arch.with_changes(num_classes=1000, head={"type": "conv_classifier"})
    assert "head.type" in info.value.paths


# -- load_arch -----------------------------------------------------------------------------


def test_load_arch_from_dict_and_arch():
    arch = load_arch(every_block_doc())
    assert isinstance(arch, Arch)
    assert load_arch(arch) is arch


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_load_arch_from_file(tmp_path: Path, suffix: str):
    arch = parse_arch(every_block_doc())
    path = tmp_path / f"model{suffix}"
    path.write_text(arch.to_json() if suffix == ".json" else arch.to_yaml())
    assert load_arch(path) == arch
    assert load_arch(str(path)) == arch


def test_load_arch_file_errors_name_the_path(tmp_path: Path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(edited(every_block_doc(), {(S, 3, "g1"): 3})))
    with pytest.raises(ArchError) as info:
        load_arch(path)
    assert "stages[3].g1" in info.value.paths


def test_load_arch_zoo_name():
    if "mobilenet_v2" not in zoo_names():
        pytest.skip("the zoo does not ship mobilenet_v2 yet")
    arch = load_arch("mobilenet_v2")
    assert arch.name == "mobilenet_v2"
    assert {s.block for s in arch.stages} == {"mbconv"}


def test_load_arch_unknown_zoo_name():
    with pytest.raises(ArchError, match="no_such_model"):
        load_arch("no_such_model")


@pytest.mark.parametrize("name", ["missing.json", "missing.yaml"])
def test_load_arch_nonexistent_file(tmp_path: Path, name: str):
    path = tmp_path / name
    with pytest.raises(ArchError) as info:
        load_arch(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("name", "text"), [("broken.json", '{"format": "clnas.arch/1",'), ("broken.yaml", "a: [1, 2")]
)
def test_load_arch_invalid_syntax_names_the_file(tmp_path: Path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ArchError) as info:
        load_arch(path)
    assert str(path) in str(info.value)


def test_load_arch_rejects_other_types():
    with pytest.raises(ArchError):
        load_arch(42)  # type: ignore[arg-type]
