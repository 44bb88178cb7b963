"""HTTP answers are never misattributed, and MGN's 200 status line is its acceptance (issue 21,
points 7 and 5): interim 1xx answers are skipped, a connection in doubt is never reused, a 200
whose body is unreadable or cut short is never followed by a second FinalizeCutover, and a 200
naming another server is not this server's acceptance.

MGN here is the project's emulator behind `Front`, a raw HTTP/1.1 front written on asyncio's
streams that forwards each request to the emulator and then answers as the test tells it (with
interim answers first, with the body replaced or cut short, or for another server). The client
is the real `MgnClient` (in-process), or the CLI as a subprocess.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from orchestrator.errors import MgnError, RetryableError
from orchestrator.http1 import Http1
from orchestrator.mgn import ClientSettings, MgnClient
from tests.runhelp import (
    aid,
    cli_env,
    mgn_cutover,
    outcomes,
    report,
    run_args,
    server,
    sid,
    write_plan,
)

pytestmark = pytest.mark.usefixtures("fake_credentials")

# How `Front` answers one request: (operation, the request's JSON) -> a `how` below.
Plan = Callable[[str, dict[str, Any]], str]
PLAIN = "plain"  # the emulator's answer as it is
INTERIM = "interim"  # 100 Continue and 103 Early Hints first, each written on its own, then it
HTML = "html"  # the emulator's status line, then a middlebox's HTML page instead of the body
CUT = "cut"  # the status line, half the body, then the connection's end
STALL = "stall"  # the status line, half the body, then nothing (the client's read timeout)
FOREIGN = "foreign"  # not forwarded: a 200 naming another server
RENAMED = "renamed"  # forwarded (MGN applies it), its answer renamed to another server
OTHER_SERVER = "s-00000000fffffffff"
INTERIM_ANSWERS = (
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
)
PAGE = b"<html><head><title>Notice</title></head><body>Access policy page</body></html>"


class Front:
    """A raw HTTP/1.1 front of the emulator: keep-alive, one request at a time per connection."""

    def __init__(self, upstream: str, plan: Plan) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.plan = plan
        self.seen: Counter[tuple[str, str]] = Counter()  # (operation, sourceServerID) received
        self.connections = 0
        self.url = ""
        self.handlers: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.done: asyncio.Event | None = None  # set when the test ends: stalled answers end

    async def close(self) -> None:
        """End every connection and wait for its handler (a cancelled one upsets asyncio)."""
        assert self.done is not None
        self.done.set()
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.done = self.done or asyncio.Event()
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.writers.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the connection stays open."""
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        headers = dict(line.split(":", 1) for line in head[1:] if line)
        headers = {k.strip(): v.strip() for k, v in headers.items()}
        length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), 0))
        body = await reader.readexactly(length)
        path = urlsplit(target).path  # a proxied request names the whole URL
        operation, asked = path.strip("/"), json.loads(body or b"{}")
        self.seen[(operation, str(asked.get("sourceServerID", "")))] += 1
        how = self.plan(operation, asked)
        if how == FOREIGN:
            writer.write(_answer(200, "OK", {}, json.dumps({"sourceServerID": OTHER_SERVER})))
            await writer.drain()
            return True
        status, reason, answer_headers, answer = await asyncio.to_thread(
            self._forward, method, path, headers, body
        )
        if how == INTERIM:
            for interim in INTERIM_ANSWERS:
                writer.write(interim)
                await writer.drain()
                await asyncio.sleep(0.05)  # the interim answers arrive on their own
        if how == HTML:
            answer_headers, answer = {"Content-Type": "text/html"}, PAGE
        if how == RENAMED:
            answer = json.dumps({**json.loads(answer), "sourceServerID": OTHER_SERVER}).encode()
        whole = _answer(status, reason, answer_headers, answer)
        if how in (CUT, STALL):
            writer.write(whole[: len(whole) - len(answer) // 2])
            await writer.drain()
            if how == STALL:
                assert self.done is not None
                await self.done.wait()
            return False
        writer.write(whole)
        await writer.drain()
        return True

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            return response.status, response.reason, dict(response.getheaders()), response.read()
        finally:
            conn.close()


def _answer(status: int, reason: str, headers: dict[str, str], body: str | bytes) -> bytes:
    data = body.encode() if isinstance(body, str) else body
    kept = {
        k: v
        for k, v in headers.items()
        if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server")
    }
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in kept.items())]
    lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


@asynccontextmanager
async def fronting(upstream: str, plan: Plan) -> AsyncIterator[Front]:
    """`Front` on this test's loop."""
    front = Front(upstream, plan)
    front.done = asyncio.Event()
    listener = await asyncio.start_server(front.handle, "127.0.0.1", 0)
    front.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        yield front
    finally:
        listener.close()
        await front.close()


@contextmanager
def fronting_in_thread(upstream: str, plan: Plan) -> Iterator[Front]:
    """`Front` on its own loop in a thread, for a CLI run in a subprocess."""
    front = Front(upstream, plan)
    loop = asyncio.new_event_loop()
    ready, stopping = threading.Event(), asyncio.Event()

    async def serve() -> None:
        front.done = asyncio.Event()
        listener = await asyncio.start_server(front.handle, "127.0.0.1", 0)
        front.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
        ready.set()
        try:
            await stopping.wait()
        finally:
            listener.close()
            await front.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield front
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        loop.close()


def _seed(emulator: Any, servers: int) -> list[str]:
    ids = [sid(n, 0) for n in range(servers)]
    emulator.seed({"servers": [server(s, aid(n)) for n, s in enumerate(ids)]})
    return ids


def _plan_file(work: Path, ids: list[str]) -> Path:
    return write_plan(work, "w", {aid(n): [s] for n, s in enumerate(ids)})


def _settings(url: str, **kw: Any) -> ClientSettings:
    return ClientSettings(region="us-east-1", endpoint_url=url, **kw)


async def test_interim_answers_are_skipped_and_each_request_gets_its_own_answer(
    emulator: Any,
) -> None:
    """On one kept-alive connection, two FinalizeCutover answered "100 Continue" and "103 Early
    Hints" before their 200 each get their own server's answer, and a read after them too."""
    first, second = _seed(emulator, 2)
    async with fronting(emulator.url, lambda op, asked: INTERIM) as front:
        client = MgnClient(_settings(front.url))
        async with client:
            one = await client.finalize(first)
            two = await client.finalize(second)
            read = await client.describe([first, second])
    assert one is not None and one.source_server_id == first
    assert two is not None and two.source_server_id == second
    assert {v.source_server_id for v in read} == {first, second}
    assert front.connections == 1  # the same connection answered all three
    assert emulator.calls("FinalizeCutover") == 2


async def test_bytes_past_an_answers_end_close_the_connection_never_reach_the_next_request() -> (
    None
):
    """An answer followed by bytes its Content-Length does not cover is delivered, and the
    connection is closed: the next request gets its own answer on a new connection."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        n = connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(int(head.lower().split(b"content-length:")[1].split()[0]))
                body = b'{"n": %d}' % n
                stray = b'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{"n": 99}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n" + body + stray)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = Http1(
        "127.0.0.1", port, ssl_context=None, max_connections=1,
        connect_timeout_s=5.0, read_timeout_s=5.0,
    )  # fmt: skip
    head = b"POST /FinalizeCutover HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"
    try:
        answers = [(await client.request(head, b"{}")).body for _ in range(3)]
    finally:
        client.close()
        listener.close()
    assert answers == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    assert connections == 3


@pytest.mark.parametrize("how", [HTML, CUT, STALL])
async def test_a_200_whose_body_is_unreadable_or_cut_short_is_an_acceptance(
    emulator: Any, how: str
) -> None:
    """FinalizeCutover answered 200 with an HTML page, with half its body then the connection's
    end, or with half its body then silence: accepted (no view, no error), and the connection
    is not reused."""
    (only,) = _seed(emulator, 1)

    def plan(operation: str, asked: dict[str, Any]) -> str:
        return how if operation == "FinalizeCutover" else PLAIN

    async with fronting(emulator.url, plan) as front:
        client = MgnClient(_settings(front.url, read_timeout_s=0.5))
        async with client:
            assert await client.finalize(only) is None
            (view,) = await client.describe([only])
    assert view.lifecycle_state == "CUTOVER"
    assert front.seen[("FinalizeCutover", only)] == 1
    # A whole (if unreadable) answer leaves the connection reusable; one cut short never does.
    assert front.connections == (1 if how == HTML else 2)


async def test_a_cut_short_200_through_a_proxy_is_an_acceptance(
    emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a proxy (aiobotocore's HTTP session sends), a FinalizeCutover whose 200 is cut
    short is accepted too, not a dropped connection to retry; the proxy still carries reads."""
    (only,) = _seed(emulator, 1)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    def plan(operation: str, asked: dict[str, Any]) -> str:
        return CUT if operation == "FinalizeCutover" else PLAIN

    async with fronting(emulator.url, plan) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with MgnClient(_settings(emulator.url)) as client:
            assert await client.finalize(only) is None
            (view,) = await client.describe([only])
    assert view.lifecycle_state == "CUTOVER"
    assert proxy.seen[("FinalizeCutover", only)] == 1


async def test_a_200_naming_another_server_is_not_an_acceptance(emulator: Any) -> None:
    """A FinalizeCutover answered 200 for another server raises MisattributedError, an MgnError
    the pool never retries, not a view of the other server."""
    (only,) = _seed(emulator, 1)
    async with fronting(emulator.url, lambda op, asked: FOREIGN) as front:
        client = MgnClient(_settings(front.url))
        async with client:
            with pytest.raises(MgnError) as caught:
                await client.finalize(only)
    assert type(caught.value).__name__ == "MisattributedError"
    assert not isinstance(caught.value, RetryableError)
    assert OTHER_SERVER in str(caught.value)


@pytest.mark.parametrize("how", [HTML, CUT])
def test_a_run_sends_one_finalize_per_server_when_its_200s_are_unreadable(
    emulator: Any, work_dir: Path, how: str
) -> None:
    """A night whose FinalizeCutover 200s come back as HTML pages or cut short sends exactly one
    FinalizeCutover per server, journals each as accepted, and finalizes every server."""
    ids = _seed(emulator, 4)
    plan_file = _plan_file(work_dir, ids)

    def plan(operation: str, asked: dict[str, Any]) -> str:
        return how if operation == "FinalizeCutover" else PLAIN

    with fronting_in_thread(emulator.url, plan) as front:
        out = mgn_cutover(run_args(plan_file, "w", work_dir), cli_env(front.url))
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(outcomes(report(work_dir, "w")).values()) == {"finalized"}
    assert all(front.seen[("FinalizeCutover", s)] == 1 for s in ids)
    assert emulator.calls("FinalizeCutover") == len(ids)
    assert "answer_body_unreadable" in out.stderr


def test_a_run_whose_answers_all_start_with_interim_answers_finalizes_each_server_once(
    emulator: Any, work_dir: Path
) -> None:
    """Every answer of the night (reads and finalizes) preceded by 100 Continue and 103 Early
    Hints: the wave is finalized with one FinalizeCutover per server."""
    ids = _seed(emulator, 4)
    plan_file = _plan_file(work_dir, ids)
    with fronting_in_thread(emulator.url, lambda op, asked: INTERIM) as front:
        out = mgn_cutover(run_args(plan_file, "w", work_dir), cli_env(front.url))
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(outcomes(report(work_dir, "w")).values()) == {"finalized"}
    assert all(front.seen[("FinalizeCutover", s)] == 1 for s in ids)


def test_a_run_resolves_a_200_naming_another_server_by_reading_never_by_sending_again(
    emulator: Any, work_dir: Path
) -> None:
    """A 200 naming another server is not an acceptance: the server is never sent again and is
    decided by reading MGN, finalized when MGN had applied it, unconfirmed when it had not."""
    applied, lost = _seed(emulator, 2)
    plan_file = _plan_file(work_dir, [applied, lost])

    def plan(operation: str, asked: dict[str, Any]) -> str:
        if operation != "FinalizeCutover":
            return PLAIN
        return RENAMED if asked.get("sourceServerID") == applied else FOREIGN

    with fronting_in_thread(emulator.url, plan) as front:
        args = run_args(plan_file, "w", work_dir, "--timeout", "2")
        out = mgn_cutover(args, cli_env(front.url))
    assert out.returncode == 1, out.stderr[-3000:]
    rep = report(work_dir, "w")
    assert outcomes(rep) == {applied: "finalized", lost: "unconfirmed"}
    assert front.seen[("FinalizeCutover", applied)] == 1
    assert front.seen[("FinalizeCutover", lost)] == 1
    assert emulator.calls_for(lost, "FinalizeCutover") == 0  # MGN never got it: still unsent
    row = next(s for s in rep["servers"] if s["sourceServerID"] == lost)
    assert OTHER_SERVER in json.dumps(row)
