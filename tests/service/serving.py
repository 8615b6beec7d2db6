"""A `clnas serve` process for the end-to-end tests: started on a free port with its own
database (a SQLite file or a PostgreSQL URL), Ray temp dir and results dir; stopped politely or
killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.service.conftest import free_port

CLNAS = str(Path(sys.executable).with_name("clnas"))
EXAMPLE = json.loads((Path(__file__).parents[2] / "examples" / "synthetic_small.json").read_text())
DONE = ("COMPLETE", "PRUNED")


class Server:
    def __init__(self, tmp: Path, db: str):
        self.tmp, self.db, self.port = tmp, db, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, log_name: str) -> None:
        """Start `clnas serve` and wait for /api/health. The port is picked before the server
        binds it (after its migrations and Ray head): if something took it meanwhile, start
        again on another port; a server that died otherwise fails at once with its log."""
        for _ in range(3):
            if self._start_once(log_name):
                return
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
        raise AssertionError((self.tmp / log_name).read_text()[-3000:])

    def _start_once(self, log_name: str) -> bool:
        env = os.environ | {"RAY_TMPDIR": tempfile.mkdtemp(prefix="clnas-ray-", dir="/tmp")}
        log = (self.tmp / log_name).open("wb")
        self.proc = subprocess.Popen(
            [CLNAS, "serve", "--port", str(self.port), "--db", self.db,
             "--results-dir", str(self.tmp / "ray"), "--data-dir", str(self.tmp / "data"),
             "--ray-num-cpus", "2"],
            cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                time.sleep(0.5)
            if self.proc.poll() is not None:
                text = (self.tmp / log_name).read_text()
                if "address already in use" in text.lower():
                    return False
                raise AssertionError(text[-3000:])
        raise AssertionError((self.tmp / log_name).read_text()[-3000:])

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(server: Server, sid: int, until: Any, timeout: float = 600) -> dict[str, Any]:
    deadline = time.time() + timeout
    body: dict[str, Any] = {}
    while time.time() < deadline:
        body = httpx.get(f"{server.url}/api/studies/{sid}", timeout=30).json()
        if until(body):
            return body
        assert body["status"] != "failed", body["error"]
        time.sleep(1)
    raise AssertionError(f"timed out: {body}")
