from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workers.full.synthetic import write_synthetic_imagenet

CLASSES = 4


@pytest.fixture(scope="session")
def tiny_arch() -> dict[str, Any]:
    """A two-stage clc + ant design: seconds per epoch at 32 px on CPU."""
    return {
        "format": "clnas.arch/1",
        "name": "tiny",
        "num_classes": 10,
        "resolution": 224,
        "stem": {"out": 16, "kernel": 3, "stride": 2},
        "stages": [
            {"block": "clc", "out": 32, "stride": 2, "repeat": 1, "g1": 8, "g2": 2},
            {"block": "ant", "out": 32, "stride": 1, "expand": 2, "se_ratio": 4, "groups": 2},
        ],
        "head": {"type": "fc"},
    }


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ImageNet layout with 4 classes, 8 train and 4 val JPEGs each (synthetic-marked)."""
    return write_synthetic_imagenet(
        tmp_path_factory.mktemp("imagenet"), num_classes=CLASSES, train_per_class=8, seed=3
    )


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
