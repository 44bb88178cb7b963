"""A headless Chromium driven over the DevTools protocol, for tests of the HTML report.

`Browser` starts chromium with its own profile folder; `Browser.page()` opens a websocket to its
page and collects console errors, uncaught exceptions and log errors (CSP violations included).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CHROMIUM_PATHS = ("/usr/bin/chromium", "chromium", "chromium-browser")


def find_chromium() -> str:
    """The chromium binary; skips the test without one, except under CI where it fails."""
    for candidate in CHROMIUM_PATHS:
        found = shutil.which(candidate)
        if found:
            return found
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail("chromium is missing and CI is set: .ci/run installs it (apt-get chromium)")
    pytest.skip("chromium not installed (apt-get install chromium); CI fails instead of skipping")


class Browser:
    """One headless chromium process with a private profile, closed by `close()`."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.profile = profile
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "--window-size=1400,1000",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.port = self._wait_port(timeout_s=30.0)

    def _wait_port(self, timeout_s: float) -> int:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
                return int(port_file.read_text().splitlines()[0])
            time.sleep(0.05)
        raise RuntimeError(f"chromium did not open a debugging port in {timeout_s}s")

    def page_ws_url(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list") as resp:
            targets = json.load(resp)
        return str(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])

    @contextlib.asynccontextmanager
    async def page(self) -> AsyncIterator[Page]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(self.page_ws_url(), max_msg_size=0) as ws,
        ):
            page = Page(ws)
            reader = asyncio.create_task(page.read())
            try:
                for domain in ("Runtime", "Log", "Page"):
                    await page.send(f"{domain}.enable")
                yield page
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Page:
    """A DevTools session with one page: commands, JS evaluation, and the errors it logged."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self.loaded = asyncio.Event()

    async def read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            else:
                self._on_event(data.get("method", ""), data.get("params", {}))

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(f"exception: {details.get('exception', {}).get('description')}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append(f"console.{params['type']}: {params['args']}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"log: {params['entry'].get('text')}")
        elif method == "Page.loadEventFired":
            self.loaded.set()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        reply = await asyncio.wait_for(future, timeout=30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result", {}))

    async def open(self, path: Path) -> None:
        """Load a file and wait for its load event (inline scripts have run by then)."""
        self.loaded.clear()
        self.errors.clear()
        await self.send("Page.navigate", url=path.resolve().as_uri())
        await asyncio.wait_for(self.loaded.wait(), timeout=30)

    async def js(self, expression: str) -> Any:
        """The JSON value of a JS expression evaluated in the page; raises on a JS exception."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def type_into(self, selector: str, text: str) -> None:
        """Focus an element and type as a user would (input events fire)."""
        await self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.send("Input.insertText", text=text)

    async def click(self, selector: str) -> None:
        """A real mouse click at the middle of the element, once it is scrolled into view,
        laid out (two frames: parts of the page lay out only near the screen) and the element
        a click there would reach."""
        found = await self.send(
            "Runtime.evaluate",
            expression=(
                f"(async function(){{var e=document.querySelector({json.dumps(selector)});"
                "for(var i=0;i<20;i++){e.scrollIntoView({block:'center'});"
                "await new Promise(f=>requestAnimationFrame(()=>requestAnimationFrame(f)));"
                "var r=e.getBoundingClientRect(),x=r.left+r.width/2,y=r.top+r.height/2;"
                "var hit=document.elementFromPoint(x,y);"
                "if(hit&&(hit===e||e.contains(hit)))return [x,y];}"
                f"throw new Error('not clickable: '+{json.dumps(selector)});}})()"
            ),
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in found:
            raise RuntimeError(f"JS failed: {found['exceptionDetails']}")
        box = found["result"]["value"]
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )

    async def screenshot(self, path: Path) -> None:
        import base64

        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
