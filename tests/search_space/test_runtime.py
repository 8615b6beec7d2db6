"""The fused runtime is explicit: importing `search_space` imports no part of it and changes no
global state of torch (no flop formula, no module hooks), there is no import cycle between the
builder and the runtime, and the runtime's global registrations happen once, on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from search_space import build_model, load_arch

ROOT = Path(__file__).parents[2]


def python(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter with warnings as errors."""
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_importing_search_space_registers_nothing() -> None:
    done = python(
        "import sys\n"
        "import search_space\n"
        "from torch.utils.flop_counter import flop_registry\n"
        "from search_space import torch_compat\n"
        "assert not [m for m in sys.modules if m.startswith('search_space.runtime')]\n"
        "assert torch_compat.CONVOLUTION_POINTWISE not in flop_registry\n"
        "import search_space.runtime\n"
        "from search_space.runtime import fused_network\n"
        "assert torch_compat.CONVOLUTION_POINTWISE not in flop_registry\n"
        "assert not fused_network._watching  # no module registration hooks\n"
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "first", ["search_space.runtime", "search_space.runtime.kernels", "search_space.builder"]
)
def test_no_import_cycle(first: str) -> None:
    """Each module imports on its own, first, without warnings."""
    done = python(f"import {first}")
    assert done.returncode == 0, done.stderr


def test_first_use_registers_the_flop_formula_once() -> None:
    done = python(
        "import torch\n"
        "from torch.utils.flop_counter import flop_registry\n"
        "from search_space import build_model, load_arch, torch_compat\n"
        "from search_space.runtime import fuse, fused_network\n"
        "arch = load_arch('effnet_cifar100')\n"
        "ref = build_model(arch).eval()\n"
        "with torch.inference_mode():\n"
        "    ref(torch.randn(1, 3, 32, 32))\n"
        "assert torch_compat.CONVOLUTION_POINTWISE not in flop_registry\n"
        "fuse(ref)\n"
        "assert torch_compat.CONVOLUTION_POINTWISE in flop_registry or not torch_compat.ONEDNN\n"
        "net = build_model(arch, runtime='fused').eval()\n"
        "with torch.inference_mode():\n"
        "    net(torch.randn(1, 3, 32, 32))\n"
        "assert fused_network._watching and net._plan is not None\n"
    )
    assert done.returncode == 0, done.stderr


def test_unknown_runtime_is_refused() -> None:
    with pytest.raises(ValueError, match="runtime"):
        build_model(load_arch("effnet_cifar100"), runtime="tvm")  # type: ignore[arg-type]
