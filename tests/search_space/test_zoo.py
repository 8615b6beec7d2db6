"""The zoo: every published model validates, builds, trains one step and round-trips
(one parametrised test over all of them, as in timm `tests/test_models.py`)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml

from search_space import build_model, load_arch, parse_arch, zoo_names

ZOO = zoo_names()

# docs/design.md §4: the zoo ships at least these.
REQUIRED = [
    "mobilenet_v1",
    "mobilenet_v2",
    "clcnet_a",
    "clcnet_b",
    "clcnet_ap",
    *(f"hetconv_vgg16_p{p}" for p in (1, 2, 4, 8, 16, 32, 64)),
    "hetconv_vgg16_pc",
    "antnet_g1",
    "antnet_g2",
    "e_antnet",
    "channelnet_v1",
    "channelnet_v2",
    "channelnet_v3",
    "shufflenet_v1_g3",
    "shufflenet_v1_g3_x1_5",
    "shufflenet_v1_g3_x2",
    "effnet",
    "mobilenet_v1_cifar100",
    "mobilenet_v2_cifar100",
    "clcnet_a_cifar100",
    "antnet_g2_cifar100",
    "e_antnet_cifar100",
    "channelnet_v1_cifar100",
    "shufflenet_v1_g3_cifar100",
]


def n_params(name: str) -> int:
    return sum(p.numel() for p in build_model(load_arch(name)).parameters())


def test_zoo_lists_every_required_model() -> None:
    assert not set(REQUIRED) - set(ZOO)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_trains_one_step(name: str) -> None:
    arch = load_arch(name)
    assert arch.name == name
    torch.manual_seed(0)
    model = build_model(arch).train()
    x = torch.randn(2, arch.in_channels, arch.resolution, arch.resolution)
    out = model(x)
    assert out.shape == (2, arch.num_classes)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([0, arch.num_classes - 1])).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without a gradient: {no_grad}"
    bad_grad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad_grad, f"non-finite gradients: {bad_grad}"


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_round_trips(name: str) -> None:
    arch = load_arch(name)
    assert load_arch(arch.to_dict()) == arch
    assert parse_arch(yaml.safe_load(arch.to_yaml())) == arch


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("mobilenet_v2", 3_504_872),  # torchvision / docs/design.md §7
        ("clcnet_a", 3_253_640),  # clcNet Table 5 / docs/design.md §3
        ("clcnet_ap", 3_253_640),  # dropping the interlace costs nothing
    ],
)
def test_zoo_param_count_is_exact(name: str, params: int) -> None:
    assert n_params(name) == params


@pytest.mark.parametrize(
    ("name", "params"),
    [("hetconv_vgg16_p1", 15.00e6), ("hetconv_vgg16_p4", 5.17e6)],  # HetConv Table 1
)
def test_zoo_param_count_matches_paper(name: str, params: float) -> None:
    assert n_params(name) == pytest.approx(params, rel=0.01)


@pytest.mark.parametrize("name", [n for n in ZOO if n.endswith("_cifar100")])
def test_cifar100_variants_fit_32x32(name: str) -> None:
    arch = load_arch(name)
    assert (arch.num_classes, arch.resolution) == (100, 32)
    _, size = arch.final_features()
    assert size >= 2
