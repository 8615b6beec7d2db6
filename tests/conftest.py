"""Suite-wide: tests marked `gpu` need CUDA and are skipped without it (scripts/device-check.sh
runs them on a GPU machine, docs/hardware.md)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu = [item for item in items if "gpu" in item.keywords]
    if not gpu:
        return
    import torch  # only when a gpu test is collected: the service suite does not import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (scripts/device-check.sh runs it on a GPU)")
    for item in gpu:
        item.add_marker(skip)
