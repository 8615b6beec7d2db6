from __future__ import annotations

import pytest
import torch

from objectives.latency import measure_latency, torch_threads


def test_latency_report_records_threads_and_is_positive() -> None:
    report = measure_latency("effnet", threads=1, warmup=1, repeats=5)
    assert report.threads == 1
    assert report.batch == 1 and report.resolution == 32
    assert 0 < report.p10_ms <= report.median_ms <= report.p90_ms
    assert report.to_dict()["backend"] == "torch-eager"


def test_thread_count_is_restored() -> None:
    before = torch.get_num_threads()
    with torch_threads(1) as used:
        assert used == 1
    assert torch.get_num_threads() == before


def test_bare_module_needs_resolution() -> None:
    with pytest.raises(ValueError, match="resolution"):
        measure_latency(torch.nn.Identity())


def test_rejects_bad_repeats() -> None:
    with pytest.raises(ValueError, match="repeats"):
        measure_latency("effnet", repeats=0)
