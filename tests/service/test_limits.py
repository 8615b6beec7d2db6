"""Oversized documents and bodies against a running `clnas serve` (issue 17, docs/limits.md):
each is refused with 422 (naming the field) or 413 in under a second, and the server's memory
stays near its idle size. Before the bounds, one 200-byte `/api/cost` body with
`"repeat": 10000000` never answered and grew the server by gigabytes."""

from __future__ import annotations

import copy
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.search_space.test_arch_bounds import BASE
from tests.service.serving import Server

SMALL = BASE  # the smallest valid document, shared with the bounds unit tests


def _arch(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SMALL)
    doc.update(changes)
    return doc


def _stage(**changes: Any) -> dict[str, Any]:
    return _arch(stages=[{**SMALL["stages"][0], **changes}])


def _nested(depth: int) -> bytes:
    """A body whose `arch.provenance` nests `depth` objects (too deep for json.dumps to write)."""
    arch = json.dumps(SMALL)[:-1] + ', "provenance": '
    return ('{"arch": ' + arch + '{"a": ' * depth + "{}" + "}" * depth + "}}").encode()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("limits")
    srv = Server(tmp, f"sqlite:///{tmp / 'clnas.db'}")
    srv.start("serve.log")
    try:
        yield srv
    finally:
        srv.stop()


# (body, where the 422 points): the documents, one bound each
OVERSIZED: dict[str, tuple[dict[str, Any] | bytes, list[str | int]]] = {
    "repeat": ({"arch": _stage(repeat=10_000_000)}, ["body", "arch", "stages", 0, "repeat"]),
    "out": ({"arch": _stage(out=2_000_000)}, ["body", "arch", "stages", 0, "out"]),
    "in_channels": ({"arch": _arch(in_channels=10**9)}, ["body", "arch", "in_channels"]),
    "num_classes": ({"arch": _arch(num_classes=10**12)}, ["body", "arch", "num_classes"]),
    "num_classes override": ({"arch": SMALL, "num_classes": 10**12}, ["body", "num_classes"]),
    "resolution override": ({"arch": SMALL, "resolution": 10**6}, ["body", "resolution"]),
    "stem out": ({"arch": _arch(stem={"out": 10**7})}, ["body", "arch", "stem", "out"]),
    "head hidden": ({"arch": _arch(head={"type": "fc", "hidden": [10**8]})},
                    ["body", "arch", "head", "hidden", 0]),
    "head layers": ({"arch": _arch(head={"type": "fc", "hidden": [64] * 100_000})},
                    ["body", "arch", "head", "hidden"]),
    "blocks in total": ({"arch": _arch(stages=[{"block": "dws", "out": 32, "repeat": 64}] * 64)},
                        ["body", "arch", "stages"]),
    "expanded width": ({"arch": _stage(block="mbconv", out=4096, expand=16, repeat=2)},
                       ["body", "arch", "stages", 0, "expand"]),
    "analysis size": ({"arch": _arch(stages=[
        {"block": "gcwm", "out": 4096 - 64 * i, "groups": 2, "cw_kernel": 8}
        for i in range(12)])}, ["body", "arch", "stages"]),
    "deep nesting": (_nested(100_000), ["body"]),
}


def test_oversized_documents_are_refused_fast_and_cheaply(server: Server) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    ok = httpx.post(f"{server.url}/api/cost", json={"arch": SMALL}, timeout=30)
    assert ok.status_code == 200, ok.text  # the cost model is loaded: this is idle
    idle = _rss_mb(pid)
    for what, (body, loc) in OVERSIZED.items():
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        assert len(data) < 1 << 20, what  # under the body limit: the document's bounds act
        start = time.perf_counter()
        r = httpx.post(f"{server.url}/api/cost", content=data, timeout=30,
                       headers={"content-type": "application/json"})
        elapsed = time.perf_counter() - start
        assert r.status_code == 422, (what, r.status_code, r.text[:500])
        assert elapsed < 3.0, (what, elapsed)  # "never answers" is the bug; slack for load
        locs = [d["loc"] for d in r.json()["detail"]]
        assert loc in locs, (what, locs)
        print(f"{what}: {r.status_code} in {elapsed * 1000:.0f} ms")
    print(f"RSS idle {idle:.0f} MB, after {_rss_mb(pid):.0f} MB")
    assert _rss_mb(pid) - idle < 200, (idle, _rss_mb(pid))
    assert httpx.post(f"{server.url}/api/cost", json={"arch": SMALL}, timeout=30).json() == \
        ok.json()  # still serving, same answer


def _read_reply(sock: socket.socket) -> str:
    """The whole response: its headers and body may arrive in separate segments."""
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: *(\d+)", head, re.I)
        if sep and length and len(body) >= int(length.group(1)):
            return data.decode()
        chunk = sock.recv(4096)
        if not chunk:  # the server closed the connection
            return data.decode()
        data += chunk


def test_a_50_mb_body_gets_413_before_it_is_read(server: Server) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    idle = _rss_mb(pid)
    head = (f"POST /api/cost HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 << 20}\r\n\r\n").encode()
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + b'{"arch": "' + b"x" * (1 << 16))
        reply = _read_reply(sock)
    elapsed = time.perf_counter() - start
    assert reply.startswith("HTTP/1.1 413"), reply
    assert "body_too_large" in reply
    assert elapsed < 3.0, elapsed
    print(f"50 MB with Content-Length: 413 in {elapsed * 1000:.0f} ms")

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        for _ in range(50):
            yield b"x" * (1 << 20)

    start = time.perf_counter()
    try:
        r = httpx.post(f"{server.url}/api/cost", content=chunked(), timeout=30)
        assert r.status_code == 413, r.text
    except httpx.TransportError:
        pytest.fail("the server closed the connection without answering 413")
    elapsed = time.perf_counter() - start
    print(f"50 MB chunked: 413 in {elapsed * 1000:.0f} ms; RSS {idle:.0f} -> {_rss_mb(pid):.0f} MB")
    assert elapsed < 3.0
    assert _rss_mb(pid) - idle < 200, (idle, _rss_mb(pid))


def test_every_route_has_the_body_limit(server: Server) -> None:
    r = httpx.post(f"{server.url}/api/studies", content=b"{" + b" " * (2 << 20) + b"}",
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413, r.text
    assert httpx.get(f"{server.url}/api/studies", timeout=30).json()["total"] == 0
