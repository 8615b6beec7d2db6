"""The installed `clnas` console script, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from search_space import load_arch, zoo_names

CLNAS = str(Path(sys.executable).with_name("clnas"))


def clnas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLNAS, *args], capture_output=True, text=True, timeout=300)


def test_zoo_table_and_json() -> None:
    table = clnas("zoo")
    assert table.returncode == 0, table.stderr
    assert "clcnet_a" in table.stdout and "mobilenet_v2" in table.stdout
    rows = json.loads(clnas("zoo", "--json").stdout)
    assert [r["name"] for r in rows] == zoo_names()
    mnv2 = next(r for r in rows if r["name"] == "mobilenet_v2")
    assert (mnv2["madds"], mnv2["params"]) == (300_774_272, 3_504_872)


def test_show_prints_stages_and_output_shapes() -> None:
    out = clnas("show", "clcnet_a")
    assert out.returncode == 0, out.stderr
    assert "clcnet_a" in out.stdout
    assert "1024x7x7" in out.stdout  # the last stage's output shape
    assert "g1=512" in out.stdout and "32x112x112" in out.stdout  # stem output


def test_validate_good_and_bad_files(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(load_arch("clcnet_a").to_yaml())
    ok = clnas("validate", str(good))
    assert ok.returncode == 0 and "valid" in ok.stdout
    doc = load_arch("clcnet_a").to_dict()
    doc["stages"][3]["g1"] = 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    res = clnas("validate", str(bad))
    assert res.returncode == 1
    assert "stages[3].g1: 3 does not divide 128 input channels" in res.stderr


def test_validate_missing_file(tmp_path: Path) -> None:
    res = clnas("validate", str(tmp_path / "nope.json"))
    assert res.returncode == 1 and "nope.json" in res.stderr


@pytest.mark.parametrize(
    ("name", "madds", "params"),
    [("mobilenet_v2", 300_774_272, 3_504_872), ("clcnet_a", 342_973_440, 3_253_640)],
)
def test_cost_reproduces_spec_numbers(name: str, madds: int, params: int) -> None:
    report = json.loads(clnas("cost", name, "--json").stdout)
    assert {"madds", "params", "fcrf", "blocks"} <= set(report)
    assert (report["madds"], report["params"]) == (madds, params)
    table = clnas("cost", name)
    assert f"{madds:,}" in table.stdout and f"{params:,}" in table.stdout


def test_cost_check_agrees_with_fvcore() -> None:
    res = clnas("cost", "clcnet_a_cifar100", "--check", "--json")
    assert res.returncode == 0, res.stderr
    check = json.loads(res.stdout)["check"]
    assert check["agree"] is True


def test_cost_overrides_and_their_errors() -> None:
    small = json.loads(clnas("cost", "mobilenet_v2", "--resolution", "160", "--json").stdout)
    assert small["resolution"] == 160 and small["madds"] < 300_774_272
    res = clnas("cost", "channelnet_v3", "--num-classes", "5000")
    assert res.returncode == 1 and "head.type" in res.stderr


def test_hetconv_against_paper_flops() -> None:
    # HetConv Table 1 counts FLOPs with the conv-bias additions: compare madds + conv_bias_adds.
    for name, paper in (("hetconv_vgg16_p1", 313.74e6), ("hetconv_vgg16_p4", 105.98e6)):
        r = json.loads(clnas("cost", name, "--json").stdout)
        assert abs(r["madds"] + r["conv_bias_adds"] - paper) / paper < 0.01


def test_groups() -> None:
    res = clnas("groups", "64", "64", "128", "--json")
    assert json.loads(res.stdout)["g1"] == 16 and json.loads(res.stdout)["g2"] == 4
    bad = clnas("groups", "64", "0", "128")
    assert bad.returncode == 2 and "positive" in bad.stderr


def test_search_on_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    study = Path(__file__).parents[2] / "examples" / "synthetic_small.json"
    out = clnas("search", str(study), "--db", "postgresql+psycopg://u@127.0.0.1:9/none",
                "--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path / "ray"),
                "--json")
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("error: the database (--db): connection failed"), out.stderr
    assert "Traceback" not in out.stderr
