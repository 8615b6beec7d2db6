"""ONNX export (`clnas export-onnx`): the exported graph computes the network's function in
ONNX Runtime, with a dynamic batch dimension."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from search_space import build_model, load_arch
from search_space.export import export_onnx
from service.cli import main

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def calibrated(name: str) -> torch.nn.Module:
    arch = load_arch(name)
    model = build_model(arch)
    for bn in model.modules():
        if isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
            bn.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(16, arch.in_channels, arch.resolution, arch.resolution))
    return model.eval()


@pytest.mark.parametrize(
    "name",
    [
        "clcnet_a_cifar100",
        "hetconv_vgg16_p4",
        pytest.param("antnet_g2_cifar100", marks=pytest.mark.slow),
        pytest.param("channelnet_v3_cifar100", marks=pytest.mark.slow),
    ],
)
def test_exported_graph_matches_the_network(name):
    model = calibrated(name)
    session = ort.InferenceSession(export_onnx(model), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 32, 32)  # batch 3: the batch dimension is dynamic
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert y.shape == ref.shape
    # float32 in two runtimes (ORT folds BN, different kernels): rounding-level agreement
    assert np.abs(y - ref).max() < 5e-5 * max(1.0, np.abs(ref).max())


def test_cli_export_onnx(tmp_path, capsys):
    out = tmp_path / "net.onnx"
    assert main(["export-onnx", "effnet_cifar100", "-o", str(out), "--resolution", "40"]) == 0
    assert "wrote" in capsys.readouterr().out
    session = ort.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[2:] == [40, 40]


def test_export_loads_weights(tmp_path):
    model = calibrated("effnet_cifar100")
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    data = export_onnx("effnet_cifar100", weights=weights)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 32, 32)
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert np.abs(y - model(x).numpy()).max() < 1e-4
