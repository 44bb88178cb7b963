"""The aiohttp application: MGN's REST-JSON (`POST /<Operation>`) plus an admin API.

Admin paths, outside MGN's namespace (all JSON, unknown ones a JSON 404):
    GET  /_emulator/stats              counters (calls, throttled, failed, by server, ...)
    GET  /_emulator/servers?accountID= true current SourceServer records (default account)
    GET  /_emulator/log?limit=N        the request log, newest last
    GET  /_emulator/jobs?accountID=    every job as DescribeJobs shows it now (default account)
    POST /_emulator/clock              {"advance_s": S}: let S seconds pass at once
    GET  /_emulator/faults             the faults in force
    POST /_emulator/faults             partial update, e.g. {"error_rate": 0.1}
    POST /_emulator/seed               a fixture (seed.py), or {"generate": {servers, ...}}
    POST /_emulator/reset              {"data": true, "counters": true} (both by default)
Every other path is an MGN operation; unknown ones answer ValidationException(unknownOperation).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from orchestrator.emulator.engine import Emulator
from orchestrator.emulator.errors import EmulatorInputError, validation_error
from orchestrator.emulator.generate import generate
from orchestrator.emulator.identity import access_key_of
from orchestrator.emulator.seed import seed_fixture
from orchestrator.emulator.state import iso
from orchestrator.emulator.store import DEFAULT_ACCOUNT_ID

ADMIN_PREFIX = "/_emulator"
_EMULATOR_KEY = web.AppKey("emulator", Emulator)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _mgn(request: web.Request) -> web.StreamResponse:
    emulator = request.app[_EMULATOR_KEY]
    path = request.path.lstrip("/")
    op = path if request.method == "POST" else f"{request.method} /{path}"
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        reply = emulator.error_reply(validation_error("Request body too large", "other"))
    else:
        key = access_key_of(request.headers.get("Authorization"))
        reply = await emulator.handle(op, raw, key)
    if reply.drop:
        transport = request.transport
        if transport is not None:
            transport.close()
        return web.Response()  # never sent: the connection is gone
    return web.Response(status=reply.status, body=reply.body, headers=reply.headers)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"message": f"invalid JSON: {exc}"}), content_type="application/json"
        ) from exc
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"message": "expected a JSON object"}), content_type="application/json"
        )
    return data


async def _stats(request: web.Request) -> web.Response:
    return _json(request.app[_EMULATOR_KEY].stats.to_json())


async def _servers(request: web.Request) -> web.Response:
    emulator = request.app[_EMULATOR_KEY]
    return _json(emulator.store.servers(request.query.get("accountID")))


async def _log(request: web.Request) -> web.Response:
    entries = list(request.app[_EMULATOR_KEY].stats.log)
    limit = request.query.get("limit")
    if limit is not None and limit.isdigit():
        entries = entries[-int(limit) :] if int(limit) else []
    return _json(entries)


async def _jobs(request: web.Request) -> web.Response:
    store = request.app[_EMULATOR_KEY].store
    now = store.clock()
    found = store.accounts.get(request.query.get("accountID") or DEFAULT_ACCOUNT_ID)
    return _json([] if found is None else [j.view(now, iso) for j in found.jobs.values()])


async def _clock(request: web.Request) -> web.Response:
    emulator = request.app[_EMULATOR_KEY]
    seconds = (await _body(request)).get("advance_s", 0)
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        return _json({"message": f"advance_s must be a number >= 0, got {seconds!r}"}, 400)
    emulator.advance(float(seconds))
    return _json({"advanced_s": seconds, "offset_s": emulator.clock.offset_s})


async def _get_faults(request: web.Request) -> web.Response:
    return _json(request.app[_EMULATOR_KEY].faults.to_json())


async def _set_faults(request: web.Request) -> web.Response:
    emulator = request.app[_EMULATOR_KEY]
    changes = await _body(request)
    try:
        emulator.set_faults(emulator.faults.updated(changes))
    except (EmulatorInputError, TypeError, ValueError) as exc:
        return _json({"message": str(exc)}, 400)
    return _json(emulator.faults.to_json())


async def _seed(request: web.Request) -> web.Response:
    emulator = request.app[_EMULATOR_KEY]
    data = await _body(request)
    try:
        if "generate" in data:
            ids = generate(emulator.store, **dict(data["generate"]))
            return _json({"seeded": len(ids)})
        return _json({"seeded": seed_fixture(emulator.store, data)})
    except (EmulatorInputError, TypeError, ValueError) as exc:
        return _json({"message": str(exc)}, 400)


async def _reset(request: web.Request) -> web.Response:
    emulator = request.app[_EMULATOR_KEY]
    data = await _body(request)
    if data.get("data", True):
        emulator.store.clear()
    if data.get("counters", True):
        emulator.stats.reset()
    return _json({"reset": True})


async def _identities(request: web.Request) -> web.Response:
    """`{"ACCESSKEYID": "222222222222", ...}`: those keys belong to those member accounts."""
    emulator = request.app[_EMULATOR_KEY]
    data = await _body(request)
    for key, account in data.items():
        if not (isinstance(account, str) and len(account) == 12 and account.isdigit()):
            return _json({"message": f"{key}: account must be 12 digits"}, 400)
        emulator.identities.register(str(key), account)
    return _json({"identities": len(data)})


async def _admin_unknown(request: web.Request) -> web.Response:
    return _json({"message": f"unknown admin path: {request.method} {request.path}"}, 404)


def build_app(emulator: Emulator) -> web.Application:
    """The aiohttp application serving `emulator`."""
    app = web.Application(client_max_size=16 * 2**20)
    app[_EMULATOR_KEY] = emulator
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/stats", _stats),
        ("GET", "/servers", _servers),
        ("GET", "/log", _log),
        ("GET", "/jobs", _jobs),
        ("POST", "/clock", _clock),
        ("GET", "/faults", _get_faults),
        ("POST", "/faults", _set_faults),
        ("POST", "/seed", _seed),
        ("POST", "/reset", _reset),
        ("POST", "/identities", _identities),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, ADMIN_PREFIX + path, handler)
    app.router.add_route("*", ADMIN_PREFIX + "{tail:(/.*)?}", _admin_unknown)
    app.router.add_route("*", "/{tail:.*}", _mgn)
    return app


async def start_server(
    emulator: Emulator, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Serve `emulator` on host:port (0 picks a free port); returns the runner and base URL."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    runner = web.AppRunner(build_app(emulator), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    await web.SockSite(runner, sock, backlog=1024).start()
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return runner, f"http://{shown}:{bound}"
