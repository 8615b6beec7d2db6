"""Full training end to end on real Ray Train workers (gloo DDP on CPU) over generated JPEG
folders: the CLI, artefacts, ONNX parity, checkpoint + resume, input errors. Accuracies here come
from synthetic data and are checked only for being labelled so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from search_space import load_arch
from service.cli import main
from workers.full.export import ONNX_TOLERANCE, load_trained
from workers.full.loop import EpochMetrics, Progress
from workers.full.recipe import load_recipe
from workers.full.train import ResumeError, train_full

CLNAS = str(Path(sys.executable).with_name("clnas"))
TIMING = {"images_per_s", "epoch_s", "wall_s"}
SETTINGS: dict[str, Any] = {"workers": 2, "batch_size": 8, "image_size": 32, "seed": 11}


@pytest.fixture(scope="module")
def data(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic folders plus one unreadable val image."""
    root = Path(shutil.copytree(image_folder, tmp_path_factory.mktemp("d") / "imagenet"))
    (root / "val" / "n00000001" / "broken.JPEG").write_bytes(b"not a JPEG at all")
    return root


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clcNet's recipe with label smoothing and a weight EMA, so resume covers the EMA too."""
    doc = load_recipe("clcnet").model_dump() | {
        "name": "clcnet_ema",
        "epochs": 2,
        "label_smoothing": 0.1,
        "ema_decay": 0.9,
    }
    path = tmp_path_factory.mktemp("recipe") / "clcnet_ema.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture(scope="module")
def arch_file(tiny_arch: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("arch") / "tiny.json"
    path.write_text(json.dumps(tiny_arch))
    return path


@pytest.fixture(scope="module")
def cli_run(
    ray_local: None, data: Path, recipe_file: Path, arch_file: Path, tmp_path_factory: Any
) -> tuple[Path, dict[str, Any]]:
    """`clnas train` for 2 epochs on 2 workers, uninterrupted (in-process, on the test's Ray),
    given --data relative to the working directory (Ray Train's workers run elsewhere)."""
    out = tmp_path_factory.mktemp("cli") / "out"
    argv = [
        "train", str(arch_file), "--data", data.name, "--recipe", str(recipe_file),
        "--workers", "2", "--batch-size", "8", "--image-size", "32", "--seed", "11",
        "--loader-workers", "1", "--out", str(out), "--json",
    ]  # fmt: skip
    here = os.getcwd()
    os.chdir(data.parent)
    try:
        rc = main(argv)
    finally:
        os.chdir(here)
    assert rc == 0
    return out, json.loads((out / "metrics.json").read_text())


def _without_timing(history: list[EpochMetrics] | tuple[EpochMetrics, ...]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k not in TIMING} for m in history]


def test_cli_trains_and_writes_every_artefact(cli_run: tuple[Path, dict[str, Any]]) -> None:
    out, metrics = cli_run
    assert metrics["completed"] and metrics["synthetic"] and metrics["workers"] == 2
    history = metrics["history"]
    assert [m["epoch"] for m in history] == [1, 2]
    for m in history:
        assert m["synthetic"]  # generated data: never an ImageNet accuracy
        assert m["skipped_images"] == 1  # the broken val JPEG, every epoch
        assert 0 <= m["val_top1"] <= m["val_top5"] <= 1
        assert m["ema_val_top1"] is not None and np.isfinite(m["train_loss"])
    assert history[0]["lr"] == pytest.approx(0.1 * 8 / 256)  # linear scaling
    # checkpoints: every rank's RNG state beside rank 0's training state
    last = out / "run" / "epoch-0002"
    assert sorted(p.name for p in last.iterdir()) == ["rng-rank0.pt", "rng-rank1.pt", "state.pt"]
    # the arch document as trained: the data's 4 classes at 32 px
    arch = load_arch(out / "arch.json")
    assert (arch.name, arch.num_classes, arch.resolution) == ("tiny", 4, 32)
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["arch"]) == arch.to_dict()
    # the exported weights are the EMA's (the recipe keeps one)
    state = torch.load(last / "state.pt", weights_only=True)
    weights = load_file(str(out / "model.safetensors"))
    assert torch.equal(weights["head.fc.weight"], state["ema"]["module.head.fc.weight"])


def test_onnx_matches_pytorch(cli_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = cli_run
    model = load_trained(out)
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": x.numpy()})
    assert got.shape == (5, 4)
    assert np.abs(got - expected).max() < ONNX_TOLERANCE


@pytest.mark.slow  # two full runs of the CLI (~2 min on 2 cores)
def test_stopped_run_resumes_to_the_uninterrupted_result(
    cli_run: tuple[Path, dict[str, Any]],
    data: Path,
    recipe_file: Path,
    tiny_arch: dict[str, Any],
    tmp_path: Path,
) -> None:
    full_out, full_metrics = cli_run
    out = tmp_path / "out"
    first = train_full(
        tiny_arch, data, recipe_file, out_dir=out, stop_after=1, loader_workers=0, **SETTINGS
    )
    assert (first.epochs, first.target_epochs, first.completed) == (1, 2, False)
    assert first.weights_path is None and not (out / "model.onnx").exists()
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 1

    events: list[Progress] = []
    second = train_full(
        tiny_arch,
        data,
        recipe_file,
        out_dir=out,
        resume=True,  # epochs, batch size and image size come from the stored run
        workers=2,
        seed=11,
        loader_workers=0,
        progress_callback=events.append,
    )
    assert second.completed and second.epochs == 2
    assert {e.epoch for e in events} == {2}  # resumed at epoch 2
    assert [e.metrics["epoch"] for e in events if e.metrics is not None] == [2]
    assert events[-1].step == events[-1].steps
    # identical to the uninterrupted run: every metric and every weight
    assert _without_timing(second.history) == _without_timing(full_metrics["history"])
    resumed = load_file(str(out / "model.safetensors"))
    uninterrupted = load_file(str(full_out / "model.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    assert second.val_top1 == full_metrics["history"][-1]["ema_val_top1"]


def test_resume_errors(
    cli_run: tuple[Path, dict[str, Any]], data: Path, recipe_file: Path, tmp_path: Path
) -> None:
    full_out, _ = cli_run
    arch = full_out / "arch.json"
    with pytest.raises(ResumeError, match="already holds a run"):
        train_full(arch, data, recipe_file, out_dir=full_out, **SETTINGS)
    with pytest.raises(ResumeError, match="nothing to resume"):
        train_full(arch, data, recipe_file, out_dir=tmp_path, resume=True, **SETTINGS)
    changed = load_recipe(recipe_file).model_dump() | {"nesterov": False}
    with pytest.raises(ResumeError, match=r"different settings: recipe\.nesterov$"):
        train_full(arch, data, changed, out_dir=full_out, resume=True, **SETTINGS)
    with pytest.raises(ResumeError, match="different settings: seed"):
        train_full(
            arch, data, recipe_file, out_dir=full_out, resume=True, **{**SETTINGS, "seed": 1}
        )


def test_bad_settings_fail_before_training(data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch size 8 does not split evenly over 3 workers"):
        train_full("mobilenet_v2", data, out_dir=tmp_path, **{**SETTINGS, "workers": 3})
    with pytest.raises(ValueError, match="fewer than one batch of 64"):
        train_full("mobilenet_v2", data, out_dir=tmp_path, **{**SETTINGS, "batch_size": 64})
    assert not (tmp_path / "job.json").exists()


def _clnas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLNAS, *args], capture_output=True, text=True, timeout=120)


def test_cli_errors_exit_1_naming_the_problem(data: Path, tmp_path: Path) -> None:
    missing = _clnas("train", "tiny_missing", "--data", str(tmp_path / "none"))
    assert missing.returncode == 1
    assert f"error: {tmp_path / 'none'}: no such data directory" in missing.stderr
    bad_recipe = _clnas("train", "clcnet_a", "--data", str(data), "--recipe", "resnet")
    assert bad_recipe.returncode == 1 and "unknown recipe 'resnet'" in bad_recipe.stderr
    partial = Path(shutil.copytree(data, tmp_path / "partial"))
    shutil.rmtree(partial / "val" / "n00000003")
    mismatch = _clnas("train", "clcnet_a", "--data", str(partial), "--out", str(tmp_path / "o"))
    assert mismatch.returncode == 1
    assert "val classes do not match train: 1 train classes missing (n00000003)" in mismatch.stderr
