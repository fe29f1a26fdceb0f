"""Headless Debian ``chromium`` for tests: a screenshot of a URL, and a page driven over the DevTools
protocol (a websocket through ``aiohttp``). No browser is downloaded: without ``chromium`` on PATH the
tests skip with a reason (``.ci/run`` installs it)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
FLAGS += ["--disable-extensions", "--disable-background-networking", "--hide-scrollbars", "--mute-audio"]


def chromium() -> str:
    """Path of the browser, or skip the test saying how to get it."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")


def shots_dir(tmp_path: Path) -> Path:
    """Where screenshots go: ``$TEXT4SEG_SHOTS`` when set (to keep them), else the test's tmp folder."""
    d = Path(os.environ.get("TEXT4SEG_SHOTS") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def screenshot(url: str, out: Path, profile: Path, size: tuple[int, int] = (1200, 1600), timeout: float = 90):
    """``chromium --screenshot`` of ``url`` into ``out`` (PNG); returns ``out``."""
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"]
    cmd += [f"--screenshot={out}", "--virtual-time-budget=3000", url]
    subprocess.run(cmd, check=True, timeout=timeout, capture_output=True)
    return out


class Page:
    """One chromium tab at ``url``, driven through the DevTools protocol (``with Page(url, tmp) as p``)."""

    def __init__(self, url: str, profile: Path, size: tuple[int, int] = (1280, 1000)):
        self.url, self.profile, self.size = url, profile, size
        self._ids = itertools.count(1)

    def __enter__(self) -> Page:
        aiohttp = pytest.importorskip("aiohttp")
        cmd = [chromium(), *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0"]
        cmd += [f"--window-size={self.size[0]},{self.size[1]}", self.url]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self._kill()
                pytest.fail("chromium did not open its DevTools port")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        ws = None
        while ws is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                tabs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
                ws = next((t["webSocketDebuggerUrl"] for t in tabs if t.get("type") == "page"), None)
            time.sleep(0.2)
        if ws is None:
            self._kill()
            pytest.fail("chromium has no page target")
        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(self._open(aiohttp, ws))
        return self

    async def _open(self, aiohttp, ws_url):
        session = aiohttp.ClientSession()
        self.ws = await session.ws_connect(ws_url, max_msg_size=0)
        return session

    def send(self, method: str, timeout: float = 60, **params) -> dict:
        """One DevTools command; its ``result`` (events in between are dropped)."""

        async def go():
            i = next(self._ids)
            await self.ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                msg = json.loads((await self.ws.receive(timeout=timeout)).data)
                if msg.get("id") == i:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg.get("result", {})

        return self.loop.run_until_complete(go())

    def js(self, expression: str):
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 120, every: float = 0.25):
        """Poll a JavaScript expression until truthy (bounded); returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = self.js(expression)
            if v:
                return v
            time.sleep(every)
        raise TimeoutError(f"page: {expression} still false after {timeout} s")

    def set_files(self, selector: str, paths: list[str]) -> None:
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.send("DOM.setFileInputFiles", nodeId=node, files=[str(p) for p in paths])

    def screenshot(self, out: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        out.write_bytes(base64.b64decode(data))
        return out

    def _kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self.ws.close())
            self.loop.run_until_complete(self.session.close())
        self.loop.close()
        self._kill()
