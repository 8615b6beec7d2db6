"""The upper bounds of `clnas.arch/1` (docs/limits.md#architecture-documents): every published
design sits well inside them, each one is refused with an error naming its field, and the
largest document they accept is still analysed quickly."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from objectives import cost_report
from search_space import ArchError, load_arch, zoo_names
from search_space import arch as fmt
from search_space.arch import analysis_cells, parse_arch

BASE: dict[str, Any] = {
    "format": "clnas.arch/1",
    "num_classes": 10,
    "resolution": 32,
    "stem": {"out": 16},
    "stages": [{"block": "dws", "out": 32, "stride": 2}],
    "head": {"type": "fc"},
}


def _doc(stage: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    if stage is not None:
        doc["stages"] = [{**doc["stages"][0], **stage}]
    doc.update(top)
    return doc


def _paths(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ArchError) as err:
        parse_arch(doc)
    return err.value.paths


@pytest.mark.parametrize("name", zoo_names())
def test_the_zoo_has_at_least_2x_headroom(name: str) -> None:
    a = load_arch(name)
    widths = [s.out for s in a.stages] + ([a.stem.out] if a.stem else [])
    assert max(widths) * 2 <= fmt.MAX_CHANNELS
    assert sum(s.repeat for s in a.stages) * 8 <= fmt.MAX_BLOCKS
    assert a.num_classes * 10 <= fmt.MAX_CLASSES
    assert a.resolution * 4 <= fmt.MAX_RESOLUTION
    assert analysis_cells(a) * 4 <= fmt.MAX_ANALYSIS_CELLS


@pytest.mark.parametrize(("doc", "path"), [
    (_doc({"repeat": 10_000_000}), "stages[0].repeat"),
    (_doc({"repeat": fmt.MAX_REPEAT + 1}), "stages[0].repeat"),
    (_doc({"out": fmt.MAX_CHANNELS + 1}), "stages[0].out"),
    (_doc(stem={"out": 2_000_000}), "stem.out"),
    (_doc(in_channels=fmt.MAX_IN_CHANNELS + 1, stem=None), "in_channels"),
    (_doc(num_classes=10**12), "num_classes"),
    (_doc(resolution=fmt.MAX_RESOLUTION + 1), "resolution"),
    (_doc(head={"type": "fc", "hidden": [fmt.MAX_CHANNELS + 1]}), "head.hidden[0]"),
    (_doc(head={"type": "fc", "hidden": [8] * (fmt.MAX_HEAD_LAYERS + 1)}), "head.hidden"),
    (_doc(head={"type": "fc", "conv_out": 10**9}), "head.conv_out"),
    (_doc({"block": "mbconv", "expand": fmt.MAX_EXPAND + 1}), "stages[0].expand"),
    (_doc({"block": "clc", "g1": 2, "g2": 2, "mid": 10**9}), "stages[0].mid"),
    (_doc({"block": "eant", "expand": 1, "se_ratio": 4, "groups": [1] * 9}), "stages[0].groups"),
    (_doc({"block": "mbconv", "out": 2048, "expand": 3, "repeat": 2}), "stages[0].expand"),
    (_doc(stages=[{"block": "dws", "out": 32, "repeat": 64}] * 5), "stages"),
    (_doc(stages=[{"block": "conv", "out": 4096 - 8 * i} for i in range(9)]), "stages"),
])
def test_each_bound_is_refused_naming_its_field(doc: dict[str, Any], path: str) -> None:
    assert path in _paths(doc)


def test_bounds_are_checked_before_the_structural_walk() -> None:
    # 10^7 blocks whose groups do not divide their channels: one bound error, no walk
    # (the walk would take minutes; 2 s leaves room for a pause of a loaded machine)
    doc = _doc({"block": "gm", "groups": 3, "repeat": 10_000_000})
    start = time.perf_counter()
    assert _paths(doc) == ["stages[0].repeat"]
    doc = _doc(stages=[{"block": "gm", "out": 30, "groups": 7, "repeat": 64}] * 64)
    assert _paths(doc) == ["stages"]
    assert time.perf_counter() - start < 2.0


def test_the_largest_accepted_document_is_analysed_in_bounded_time() -> None:
    # 8 distinct 2896-wide clc blocks (4 stages, each a first block and its repeats): just
    # under the analysis limit
    groups = [(1, 1), (2, 1), (4, 1), (8, 1)]
    doc = _doc(stem={"out": 2896}, num_classes=fmt.MAX_CLASSES, stages=[
        {"block": "clc", "out": 2896, "g1": g1, "g2": g2, "repeat": 32} for g1, g2 in groups
    ], head={"type": "fc", "conv_out": fmt.MAX_CHANNELS, "hidden": [fmt.MAX_CHANNELS] * 8})
    a = parse_arch(doc)
    assert fmt.MAX_ANALYSIS_CELLS / 2 < analysis_cells(a) <= fmt.MAX_ANALYSIS_CELLS
    start = time.perf_counter()
    cost_report(a)
    assert time.perf_counter() - start < 20  # ~1.5 s on one busy core
