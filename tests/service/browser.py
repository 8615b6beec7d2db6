"""A live `clnas serve` app on a free port and the system's headless Chromium, shared by the
dashboard browser tests and `benchmarks/dashboard_render.py`."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterator

import uvicorn
from playwright.sync_api import Browser, sync_playwright

from service.app import create_app
from service.settings import Settings
from tests.service.conftest import free_port


@contextlib.contextmanager
def live_server(settings: Settings) -> Iterator[str]:
    """Serve `create_app(settings)` with uvicorn on a background thread; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def chromium_path() -> str:
    """Debian's `chromium` (Playwright's own browser download is not used)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("chromium is not installed (scripts/test.sh installs it: "
                           "apt-get install -y chromium)")
    return path


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                     args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
