"""The lean HTTP/1.1 client against a raw TCP server that answers as told: framing, reuse, and
which failures mean "never sent" and which "may have been sent"."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from botocore.httpsession import get_cert_path

from orchestrator.http1 import Dropped, Http1, NotSent
from orchestrator.wire import _tls

HEAD = b"POST /FinalizeCutover HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"

# What the server does with each request it reads: bytes to write, then whether to close.
Script = Callable[[int], tuple[bytes, bool]]


class Server:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests = 0
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                self.requests += 1
                answer, close = self.script(self.requests)
                for piece in (answer[: len(answer) // 2], answer[len(answer) // 2 :]):
                    writer.write(piece)  # in two writes: the parser must wait for the rest
                    await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(script: Script, **kw: float) -> AsyncIterator[tuple[Server, Http1]]:
    server = Server(script)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = Http1(
        "127.0.0.1",
        port,
        ssl_context=None,
        max_connections=int(kw.get("max_connections", 4)),
        connect_timeout_s=kw.get("connect_timeout_s", 5.0),
        read_timeout_s=kw.get("read_timeout_s", 5.0),
    )
    try:
        yield server, client
    finally:
        client.close()
        listener.close()
        await listener.wait_closed()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_answers_are_read_whole_and_the_connection_reused() -> None:
    async with serving(lambda n: (ok(b'{"n": %d}' % n), False)) as (server, client):
        for n in (1, 2, 3):
            response = await client.request(HEAD, b"{}")
            assert (response.status, response.body) == (200, b'{"n": %d}' % n)
        assert server.connections == 1


async def test_a_chunked_answer_with_trailers() -> None:
    chunked = (
        b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\nX-Amzn-ErrorType: Conflict\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    async with serving(lambda n: (chunked, False)) as (server, client):
        for _ in range(2):
            response = await client.request(HEAD, b"{}")
            assert (response.status, response.body) == (409, b"hello world")
            assert response.headers["x-amzn-errortype"] == "Conflict"
        assert server.connections == 1


async def test_an_answer_framed_by_the_connections_end() -> None:
    answer = b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"a": 1}'
    async with serving(lambda n: (answer, True)) as (server, client):
        for _ in range(2):
            response = await client.request(HEAD, b"{}")
            assert response.body == b'{"a": 1}'
        assert server.connections == 2  # never reused after Connection: close


async def test_a_connection_dropped_before_the_answer_may_have_been_sent() -> None:
    async with serving(lambda n: (b"", True)) as (server, client):
        with pytest.raises(Dropped) as caught:
            await client.request(HEAD, b"{}")
        assert not caught.value.timed_out
        assert server.requests == 1  # the server did read it: "may have been sent" is right


async def test_a_half_answer_then_a_drop_is_dropped_not_a_short_body() -> None:
    async with serving(lambda n: (ok(b'{"long": "answer"}')[:-5], True)) as (_, client):
        with pytest.raises(Dropped):
            await client.request(HEAD, b"{}")


async def test_an_answer_that_never_comes_is_a_read_timeout() -> None:
    async with serving(lambda n: (b"HTTP/1.1 200 OK\r\n", False), read_timeout_s=0.2) as (
        _,
        client,
    ):
        with pytest.raises(Dropped) as caught:
            await client.request(HEAD, b"{}")
        assert caught.value.timed_out


async def test_garbage_is_dropped() -> None:
    async with serving(lambda n: (b"SMTP ready\r\n\r\n", False)) as (_, client):
        with pytest.raises(Dropped, match="unreadable"):
            await client.request(HEAD, b"{}")


async def test_no_listener_means_never_sent() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    client = Http1(
        "127.0.0.1", port, ssl_context=None, max_connections=1,
        connect_timeout_s=1.0, read_timeout_s=1.0,
    )  # fmt: skip
    with pytest.raises(NotSent):
        await client.request(HEAD, b"{}")


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    async with serving(lambda n: (ok(b"{}", b"Connection: keep-alive\r\n"), n == 1)) as (
        server,
        client,
    ):
        await client.request(HEAD, b"{}")
        idle = client._idle[0]
        for _ in range(500):  # until the server's FIN reaches the idle connection
            if idle.lost:
                break
            await asyncio.sleep(0.01)
        assert idle.lost
        response = await client.request(HEAD, b"{}")
        assert response.status == 200
        assert server.connections == 2


async def test_at_most_max_connections_at_once() -> None:
    gate = asyncio.Event()
    inflight = 0
    most = 0

    class Slow(Server):
        async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal inflight, most
            inflight += 1
            most = max(most, inflight)
            await gate.wait()
            inflight -= 1
            await super().handle(reader, writer)

    server = Slow(lambda n: (ok(b"{}"), False))
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = Http1(
        "127.0.0.1", port, ssl_context=None, max_connections=3,
        connect_timeout_s=5.0, read_timeout_s=5.0,
    )  # fmt: skip
    calls = [asyncio.ensure_future(client.request(HEAD, b"{}")) for _ in range(10)]
    await asyncio.sleep(0.1)
    assert most == 3
    gate.set()
    assert all(r.status == 200 for r in await asyncio.gather(*calls))
    client.close()
    listener.close()
    await listener.wait_closed()


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for `localhost` that signs itself, and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_tls_to_a_trusted_endpoint_and_never_to_an_untrusted_one(tmp_path: Path) -> None:
    """Over TLS with the bundle that trusts the endpoint: answered. With the default bundle
    (which does not): the connection is refused before anything is sent."""
    cert, key = _self_signed(tmp_path)
    server = Server(lambda n: (ok(b"{}"), False))
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=served)
    port = listener.sockets[0].getsockname()[1]

    def client(context: ssl.SSLContext) -> Http1:
        return Http1(
            "localhost", port, ssl_context=context, max_connections=1,
            connect_timeout_s=5.0, read_timeout_s=5.0,
        )  # fmt: skip

    try:
        trusting = client(_tls(str(cert)))
        assert (await trusting.request(HEAD, b"{}")).status == 200
        trusting.close()
        with pytest.raises(NotSent, match="CERTIFICATE_VERIFY_FAILED"):
            await client(_tls(str(get_cert_path(True)))).request(HEAD, b"{}")
        assert server.requests == 1
    finally:
        listener.close()
        await listener.wait_closed()
