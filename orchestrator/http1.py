"""A small HTTP/1.1 keep-alive client for the lean calls (`wire`).

The lean calls go to one host, as POSTs with a JSON body, thousands a minute. Through aiohttp's
ClientSession each request costs ~0.4 ms of CPU here (request and response objects, header
multidicts, tracing hooks, a timer per request); this client writes the request in one piece and
reads the answer with a small parser: ~0.1 ms. It does only what those calls need:

- one host; at most `max_connections` at once, idle ones kept for reuse (latest first);
- answers framed by Content-Length, chunked transfer coding, or the connection's end, after
  any number of interim 1xx answers (100 Continue, 103 Early Hints), which are skipped;
- one request at a time per connection, and a connection reused only when its last answer
  ended exactly where its framing said: any doubt (a timeout, a cancel, a body not read to its
  end, bytes past the answer or nobody asked for) closes it, so no answer can reach a request
  other than the one it answers;
- a connect timeout and a read timeout (from the last byte sent to the whole answer);
- TLS with the given context.

What it does not do (proxies, client certificates) the caller leaves to botocore's session.

Failures say whether the request could have reached the server: `NotSent` (the connection
could not be made) means it did not; `Dropped` (the connection broke or timed out after the
request was written, a reused connection included) means it may have; its `status` is the
final answer's status when that much had been read (a 200 whose body was cut short).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024


class NotSent(Exception):
    """The connection could not be made: the request never left."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class Dropped(Exception):
    """The request was written (or may have been) and no whole answer came back; `status`: the
    final answer's status line, if it had come (then only its body is missing or unreadable)."""

    def __init__(self, message: str, *, timed_out: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.status = status


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


class _BadAnswer(Exception):
    """The bytes read are not an HTTP/1.1 answer."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the parser of the answer it is waiting for."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()  # the bytes of the answer not consumed yet
        self._answer: asyncio.Future[Response] | None = None
        self._head: tuple[int, dict[str, str], bool] | None = None  # final: status, headers, keep
        self._at = 0  # where the next chunk starts (chunked) in `_buffer`
        self._chunks: list[bytes] = []
        self.reusable = False
        self.lost = False

    @property
    def status(self) -> int | None:
        """The final answer's status once its head was read (interim 1xx never count)."""
        return self._head[0] if self._head is not None else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reusable = False
        answer = self._answer
        if answer is None or answer.done():
            return
        head = self._head
        if head is not None and _length(head[1]) is None and not _chunked(head[1]):
            # Framed by the connection's end: the answer is whole now.
            answer.set_result(Response(head[0], head[1], bytes(self._buffer)))
            return
        why = f"connection lost: {exc}" if exc else "the server closed the connection"
        answer.set_exception(Dropped(why, status=self.status))

    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None or answer.done():
            self._close()  # bytes nobody asked for: never reuse this connection
            return
        self._buffer += data
        try:
            whole = self._parse()
        except _BadAnswer as err:
            answer.set_exception(Dropped(f"unreadable answer: {err}", status=self.status))
            self._close()
            return
        if whole is not None:
            answer.set_result(whole)

    def idle(self) -> bool:
        """Whether another request may go out on this connection: its last answer ended exactly
        where its framing said, and nothing has come or gone wrong since."""
        closing = self.transport is None or self.transport.is_closing()
        return self.reusable and not self.lost and not closing and not self._buffer

    def send(self, data: bytes) -> asyncio.Future[Response]:
        """Write one request (on a new connection, or one that is `idle`); the future answer."""
        assert self.transport is not None
        self._head, self._at, self._chunks = None, 0, []
        self.reusable = False  # until this request's answer has been read to its exact end
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._answer

    def _close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def _parse(self) -> Response | None:
        """The whole final answer, or None while more is needed. Raises _BadAnswer."""
        buffer = self._buffer
        while self._head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0 or end > MAX_HEADER_BYTES:
                if len(buffer) > MAX_HEADER_BYTES:
                    raise _BadAnswer("headers too long")
                return None
            head = _head(bytes(buffer[:end]))
            del buffer[: end + 4]
            if head[0] == 101:  # this client never asks to switch protocols
                raise _BadAnswer("101 Switching Protocols")
            if head[0] >= 200:
                self._head = head
            # else an interim answer (100 Continue, 103 Early Hints): the final one follows
        status, headers, keep = self._head
        length = _length(headers)
        if _chunked(headers):
            found = self._dechunk()
            if found is None:
                return None
            body, end = found
        elif length is not None:
            if len(buffer) < length:
                return None
            body, end = bytes(buffer[:length]), length
        elif status in (204, 304):
            body, end = b"", 0
        else:
            return None  # until the connection ends (never reusable)
        # Bytes past the answer's end answer nothing we sent: the connection is in doubt.
        self.reusable = keep and len(buffer) == end
        buffer.clear()
        return Response(status, headers, body)

    def _dechunk(self) -> tuple[bytes, int] | None:
        """The body and where the answer ends once the last chunk came; None while more is
        needed. Raises _BadAnswer."""
        buffer, at = self._buffer, self._at
        while True:
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                return None
            size_text = bytes(buffer[at:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _BadAnswer(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:  # the last chunk: then trailers, if any, and a blank line
                if buffer.startswith(b"\r\n", line_end + 2):
                    end = line_end + 4
                else:
                    blank = buffer.find(b"\r\n\r\n", line_end + 2)
                    if blank < 0:
                        return None
                    end = blank + 4
                body = b"".join(self._chunks)
                self._chunks = []
                return body, end
            start, stop = line_end + 2, line_end + 2 + size
            if len(buffer) < stop + 2:
                return None
            if buffer[stop : stop + 2] != b"\r\n":
                raise _BadAnswer("a chunk longer than its size")
            self._chunks.append(bytes(buffer[start:stop]))
            at = self._at = stop + 2


def _head(raw: bytes) -> tuple[int, dict[str, str], bool]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise _BadAnswer(f"bad status line {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise _BadAnswer(f"bad header line {line[:60]!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection and (parts[0] != "HTTP/1.0" or "keep-alive" in connection)
    return int(parts[1]), headers, keep


def _length(headers: Mapping[str, str]) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise _BadAnswer(f"bad Content-Length {raw[:20]!r}")
    return int(raw)


def _chunked(headers: Mapping[str, str]) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


class Http1:
    """Keep-alive connections to one host: `request` sends one request and reads its answer."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> None:
        self._host, self._port = host, port
        self._ssl = ssl_context
        self._slots = asyncio.Semaphore(max(1, max_connections))
        self._idle: list[_Connection] = []
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s

    async def request(self, head: bytes, body: bytes) -> Response:
        """Send `head` (request line and headers, ending with the blank line) and `body`.
        Raises NotSent or Dropped."""
        async with self._slots:
            conn = self._reuse() or await self._connect()
            answer = conn.send(head + body)
            try:
                response = await asyncio.wait_for(answer, self._read_timeout_s)
            except TimeoutError:
                self._discard(conn)  # mid-answer maybe: what comes later answers nothing
                raise Dropped("read timeout", timed_out=True, status=conn.status) from None
            except asyncio.CancelledError:
                self._discard(conn)
                raise
            except Dropped:
                self._discard(conn)
                raise
            if conn.reusable and not conn.lost:  # `_reuse` checks again when it is taken
                self._idle.append(conn)
            else:
                self._discard(conn)
            return response

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self._discard(self._idle.pop())

    def _reuse(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.idle():
                return conn
            self._discard(conn)
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    _Connection,
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                ),
                self._connect_timeout_s,
            )
        except TimeoutError:
            raise NotSent(f"connect timeout to {self._host}:{self._port}", timed_out=True) from None
        except OSError as exc:
            raise NotSent(f"cannot connect to {self._host}:{self._port}: {exc}") from None
        return conn

    @staticmethod
    def _discard(conn: _Connection) -> None:
        conn.reusable = False
        if conn.transport is not None:
            conn.transport.close()
