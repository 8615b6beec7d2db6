"""The local Ray head the service owns when no `--ray-address` is given (docs/cluster.md):
`ray start --head --block`, dying with the service, and the environment (auth token) its
drivers need."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from service.settings import Settings

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int) -> Any:
    """preexec_fn: the child gets `sig` when the service dies, even by SIGKILL (Linux)."""

    def fn() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)

    return fn


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RayHead:
    """The local Ray head the service owns (when no `--ray-address` is given)."""

    def __init__(self, settings: Settings, log_dir: Path):
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = settings.ray_address
        self.log_dir = log_dir
        # Ray 2.60 clusters authenticate drivers with a token: the head the service starts and
        # the study processes share one (an external cluster's token comes from the user's
        # environment, $RAY_AUTH_TOKEN or ~/.ray/auth_token).
        self.env = dict(os.environ)
        if not settings.ray_address and not self.env.get("RAY_AUTH_TOKEN"):
            self.env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}

    def start(self, timeout: float = 120) -> str:
        if self.address:
            return self.address
        port = _free_port()
        ray_bin = str(Path(sys.executable).with_name("ray"))
        cmd = [ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false",
               "--disable-usage-stats", "--block"]
        if self.settings.ray_num_cpus:
            cmd.append(f"--num-cpus={self.settings.ray_num_cpus}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = (self.log_dir / "ray-head.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                     preexec_fn=die_with_parent(signal.SIGTERM))
        address = f"127.0.0.1:{port}"
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start failed; see {self.log_dir / 'ray-head.log'}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                self.address = address
                time.sleep(2)  # the raylet registers just after the GCS opens its port
                return address
            time.sleep(0.5)
        raise RuntimeError(f"Ray head not up after {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None
