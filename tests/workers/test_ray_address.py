"""An unset Ray address gives a private local Ray, not whatever cluster runs on the machine."""

from __future__ import annotations

import pytest

from workers.ray_address import ray_address


def test_unset_address_is_a_private_local_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_address(None) == "local"
    assert ray_address("") == "local"


def test_explicit_and_environment_addresses_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert ray_address(None) == "10.0.0.5:6379"
    assert ray_address("auto") == "auto"
    assert ray_address("head:6379") == "head:6379"
