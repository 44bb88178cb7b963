"""The calls a night makes by the thousand, sent without botocore's per-request machinery.

FinalizeCutover (once per server) and DescribeSourceServers by ID (pre-flight and polling) are
most of a run's requests. Through the botocore client each costs ~1.6 ms of CPU here (event
hooks, parameter validation, a user agent rebuilt per request, signing, and a parse of the whole
SourceServer record), more than the run's whole budget per call. `Wire` sends them lean:

- the request: the operation's method and path from the client's own service model, the body
  as compact JSON (the emulator checks every request against that model);
- signing: SigV4 with a per-day signing key (`sign`, checked against botocore's `SigV4Auth` in
  tests/test_wire.py), with the client's own credentials object, so refreshable credentials
  refresh as they do for the client: aiobotocore's (an assumed role's) awaited, botocore's own
  (SSO, container or instance roles, assume-role profiles) refreshed in a thread, never in the
  event loop;
- sending: with `http1`, a small keep-alive client (~0.1 ms a request instead of ~0.4 ms
  through aiohttp's session), with the client's timeouts, pool size and TLS trust; through the
  client's own HTTP session where it needs a proxy or a client certificate (`sends_itself`:
  then the client must be aiobotocore's). Failed connections raise the botocore exceptions the
  client raises, so they mean the same (sent or not);
- answers: read as JSON; an error keeps botocore's wire rules (`x-amzn-ErrorType` first, then the
  body's `code`) and becomes the same botocore-shaped error response the client would raise. A
  2xx status line whose body is not JSON or never came whole is `AnswerError`, not a dropped
  connection: MGN did answer 2xx (for FinalizeCutover, that is its acceptance).

ListManagedAccounts goes lean too: a global-view run makes it once, before its first
FinalizeCutover, and it would be the run's only call through botocore's client, whose first
request costs ~40 ms of one-time setup here.

The client is a plain botocore one where `sends_itself` allows it (`mgn.MgnClient`): it never
sends, it only gives the endpoint, settings and credentials. Every other call goes through
aiobotocore's client.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import http
import inspect
import json
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

from botocore.awsrequest import AWSPreparedRequest
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.httpsession import get_cert_path

from orchestrator.http1 import Dropped, Http1, NotSent

LEAN_OPERATIONS = ("FinalizeCutover", "DescribeSourceServers", "ListManagedAccounts")
_ALGORITHM = "AWS4-HMAC-SHA256"
_STATUSES = frozenset(s.value for s in http.HTTPStatus)


class WireError(Exception):
    """MGN answered with an error: `response` is shaped as botocore's ClientError.response."""

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__(response["Error"]["Code"])
        self.response = response


class AnswerError(Exception):
    """MGN answered 2xx (`status`) with a body that is not JSON or was cut short."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """SigV4's derived key for one day, region and service."""
    key = hmac.new(f"AWS4{secret_key}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign(
    *,
    method: str,
    host: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    amz_date: str,
    access_key: str,
    key: bytes,
    scope: str,
) -> str:
    """The `Authorization` header of a SigV4 request with no query string, signing `host` and
    every header in `headers` (names as given; values trimmed, as botocore does)."""
    signed = {"host": host, **{k.lower(): " ".join(v.split()) for k, v in headers.items()}}
    names = sorted(signed)
    canonical = "\n".join(
        (
            method,
            path,
            "",
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        )
    )
    to_sign = "\n".join(
        (_ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
    )
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"{_ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, "
        f"Signature={signature}"
    )


class Wire:
    """Lean REST-JSON calls with one botocore or aiobotocore MGN client's endpoint, credentials
    and settings (through its HTTP session only where `sends_itself` is false)."""

    def __init__(self, client: Any, user_agent: str) -> None:
        meta = client.meta
        self._url = meta.endpoint_url.rstrip("/")
        parts = urlsplit(self._url)
        default_port = {"https": 443, "http": 80}.get(parts.scheme)
        self._host = parts.hostname or ""
        if parts.port is not None and parts.port != default_port:
            self._host = f"{self._host}:{parts.port}"
        self._prefix = parts.path.rstrip("/")
        self._region = meta.region_name
        self._service = meta.service_model.signing_name
        self._routes = {
            name: (op.http["method"], op.http["requestUri"])
            for name in LEAN_OPERATIONS
            for op in (meta.service_model.operation_model(name),)
        }
        # botocore keeps these private; they are what the client itself sends with.
        self._http = client._endpoint.http_session
        self._credentials = client._request_signer._credentials
        self._awaited = self._credentials is not None and inspect.iscoroutinefunction(
            self._credentials.get_frozen_credentials
        )
        self._user_agent = user_agent
        self._key: tuple[str, str, bytes] | None = None  # (secret, date, derived key)
        self._lean = _lean_http(self._http, parts, meta.config)

    def close(self) -> None:
        """Close the lean client's idle connections (the botocore session closes its own)."""
        if self._lean is not None:
            self._lean.close()

    async def call(self, operation: str, params: dict[str, Any]) -> Any:
        """One request; the answer's JSON, any JSON value (the caller checks its shape).

        Raises WireError for an error answer, AnswerError for a 2xx answer whose body is not
        JSON or was cut short (by the connection's end or a read timeout), botocore exceptions
        for connection failures and missing or unrefreshable credentials.
        """
        method, route = self._routes[operation]
        path = self._prefix + route
        body = json.dumps(params, separators=(",", ":")).encode()
        credentials = await self._frozen()
        if credentials is None or not credentials.access_key:
            raise NoCredentialsError()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        date = amz_date[:8]
        key = self._key
        if key is None or key[0] != credentials.secret_key or key[1] != date:
            derived = signing_key(credentials.secret_key, date, self._region, self._service)
            key = self._key = (credentials.secret_key, date, derived)
        headers = {"Content-Type": "application/json", "X-Amz-Date": amz_date}
        if credentials.token:
            headers["X-Amz-Security-Token"] = credentials.token
        headers["Authorization"] = sign(
            method=method,
            host=self._host,
            path=path,
            headers=headers,
            body=body,
            amz_date=amz_date,
            access_key=credentials.access_key,
            key=key[2],
            scope=f"{date}/{self._region}/{self._service}/aws4_request",
        )
        headers["User-Agent"] = self._user_agent
        if self._lean is not None:
            status, answer_headers, raw = await self._send_lean(
                operation, method, path, headers, body
            )
        else:
            status, answer_headers, raw = await self._send_session(
                operation, method, route, headers, body
            )
        if status >= 300:
            raise WireError(error_response(status, answer_headers, raw))
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise AnswerError(
                f"{operation}: the {status} answer is not JSON: {exc}", status
            ) from None
        return answer

    async def _send_session(
        self, operation: str, method: str, route: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Through the client's own HTTP session (a proxy, a client certificate). The status
        is taken before the body is read (`stream_output`), so a 2xx whose body is cut short
        is told from a connection that broke before any answer."""
        import aiohttp  # only here: the session is aiobotocore's, so aiohttp is loaded

        request = AWSPreparedRequest(method, self._url + route, headers, body, True)
        response = await self._http.send(request)
        status, answer_headers = int(response.status_code), dict(response.headers)
        try:
            raw = await response.content
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # `send` maps no body errors
            if 200 <= status < 300:
                why = f"{operation}: the {status} answer was cut short: {type(exc).__name__}"
                raise AnswerError(why, status) from None
            if isinstance(exc, TimeoutError):
                raise ReadTimeoutError(endpoint_url=self._url, error=str(exc)) from None
            raise ConnectionClosedError(endpoint_url=self._url, error=str(exc)) from None
        return status, answer_headers, raw

    async def _frozen(self) -> Any:
        """The credentials' keys now; a refresh of botocore's own (sync) credentials runs in a
        thread, as it may call STS, SSO or a metadata endpoint."""
        credentials = self._credentials
        if credentials is None:
            return None
        if self._awaited:  # aiobotocore's
            return await credentials.get_frozen_credentials()
        needed = getattr(credentials, "refresh_needed", None)  # RefreshableCredentials'
        if needed is not None:
            # A second past botocore's own advisory window: it cannot start a refresh in between.
            window_s = getattr(credentials, "_advisory_refresh_timeout", 0) + 1
            if needed(window_s):
                return await asyncio.to_thread(credentials.get_frozen_credentials)
        return credentials.get_frozen_credentials()

    async def _send_lean(
        self, operation: str, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._lean is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += [f"Content-Length: {len(body)}", "Accept-Encoding: identity", "", ""]
        try:
            response = await self._lean.request("\r\n".join(lines).encode(), body)
        except NotSent as err:
            if err.timed_out:
                raise ConnectTimeoutError(endpoint_url=self._url, error=str(err)) from None
            raise EndpointConnectionError(endpoint_url=self._url, error=str(err)) from None
        except Dropped as err:
            if err.status is not None and 200 <= err.status < 300:
                why = f"{operation}: the {err.status} answer was cut short: {err}"
                raise AnswerError(why, err.status) from None
            if err.timed_out:
                raise ReadTimeoutError(endpoint_url=self._url, error=str(err)) from None
            raise ConnectionClosedError(endpoint_url=self._url, error=str(err)) from None
        return response.status, response.headers, response.body


def sends_itself(client: Any) -> bool:
    """Whether `Wire` sends this client's calls itself: not where the client's own HTTP session
    must (a proxy for the URL, a client certificate, a scheme other than http(s))."""
    parts = urlsplit(client.meta.endpoint_url.rstrip("/"))
    return _sends_itself(client._endpoint.http_session, parts)


def _sends_itself(http_session: Any, parts: Any) -> bool:
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    proxy = http_session._proxy_config.proxy_url_for(parts.geturl())
    return not proxy and not http_session._cert_file


def _lean_http(http_session: Any, parts: Any, config: Any) -> Http1 | None:
    """The lean client for this endpoint, or None where the client's session must send."""
    if not _sends_itself(http_session, parts):
        return None
    context: ssl.SSLContext | None = None
    if parts.scheme == "https":
        verify = http_session._verify
        context = _tls(None if verify is False else str(get_cert_path(verify)))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return Http1(
        parts.hostname,
        port,
        ssl_context=context,
        max_connections=int(config.max_pool_connections or 10),
        connect_timeout_s=float(config.connect_timeout or 60),
        read_timeout_s=float(config.read_timeout or 60),
    )


@functools.lru_cache(maxsize=8)
def _tls(cafile: str | None) -> ssl.SSLContext:
    """A TLS context trusting `cafile` (None: verification off, as botocore's verify=False);
    one per bundle, shared by every target (loading a CA bundle costs ~40 ms)."""
    if cafile is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=cafile)


def error_response(status: int, headers: dict[str, str], raw: bytes) -> dict[str, Any]:
    """An error answer as botocore's REST-JSON parser shapes it (tests/test_wire.py compares
    the two): a 5xx with an empty or HTML body is generic (the status and its reason); else the
    code from the `x-amzn-ErrorType` header, else the body's `code`/`Code`, else its `__type`,
    else the status; the message from the body (or the body's text when it is not JSON)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    meta = {"HTTPStatusCode": status, "HTTPHeaders": lowered}
    stripped = raw.strip()
    if status >= 500 and (not stripped or stripped.startswith(b"<html>")):
        reason = http.HTTPStatus(status).phrase if status in _STATUSES else ""
        return {"Error": {"Code": str(status), "Message": reason}, "ResponseMetadata": meta}
    text = raw.decode("utf-8", errors="replace")
    try:
        body = json.loads(text) if raw else {}
    except ValueError:
        body = {"message": text}
    if not isinstance(body, dict):
        body = {}
    message = body.get("message", body.get("Message", ""))
    code = body.get("__type", str(status))
    if "x-amzn-errortype" in lowered:
        code = lowered["x-amzn-errortype"]
    elif "code" in body or "Code" in body:
        code = body.get("code", body.get("Code", ""))
    code = str(code).split(":", 1)[0].rsplit("#", 1)[-1]
    return {"Error": {"Code": code, "Message": str(message)}, "ResponseMetadata": meta}
