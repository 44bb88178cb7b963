"""The emulator's request pipeline, independent of HTTP: raw body in, a Reply out.

Steps per request (faults.py explains the drop semantics): route -> parse -> count -> latency ->
AccessDenied (403) -> quota (429) -> injected 500 -> cannotParse / field validation (400) ->
UninitializedAccount (400) -> drop before apply -> apply -> drop after apply -> strict output
check -> serialize. Errors are serialized as MGN does: the modeled HTTP status, an
`x-amzn-ErrorType: <Name>:<namespace>` header, the modeled body fields and, for 429 and 500, a
`Retry-After` header that botocore maps to `retryAfterSeconds`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.emulator import identity
from orchestrator.emulator.ec2 import Ec2
from orchestrator.emulator.errors import (
    ERROR_NAMESPACE,
    ApiError,
    ResponseShapeError,
    validation_error,
)
from orchestrator.emulator.faults import FaultInjector, Faults, retry_after_s
from orchestrator.emulator.identity import Identities
from orchestrator.emulator.model import Errors, MgnModel, load_model
from orchestrator.emulator.ops import HANDLERS
from orchestrator.emulator.stats import Stats
from orchestrator.emulator.store import DEFAULT_ACCOUNT_ID, Clock, Store

log = logging.getLogger(__name__)
JSON_TYPE = "application/json"
ENCODE_CACHE_LIMIT = 50_000


@dataclass(frozen=True)
class Reply:
    """What to answer: status, headers and body, or `drop` to close the connection instead."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    drop: bool = False


class _Outcome(Exception):
    """Internal: ends a request early with a reply and the outcome to log."""

    def __init__(self, reply: Reply, outcome: str) -> None:
        self.reply = reply
        self.outcome = outcome
        super().__init__(outcome)


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _server_ids(body: Any) -> list[str]:
    if type(body) is not dict:
        return []
    found: list[str] = []
    one = body.get("sourceServerID")
    if type(one) is str:
        found.append(one)
    many = body.get("sourceServerIDs")
    filters = body.get("filters")
    if many is None and type(filters) is dict:
        many = filters.get("sourceServerIDs")
    if type(many) is list:
        found.extend(s for s in many if type(s) is str)
    return found


def _summary(errors: Errors) -> str:
    shown = "; ".join(m if m.startswith("Value") else f"{n}: {m}" for n, m in errors[:10])
    noun = "error" if len(errors) == 1 else "errors"
    return f"{len(errors)} validation {noun} detected: {shown}"


class Emulator:
    """One emulated MGN endpoint: model, store, faults and stats, shared by HTTP and Python."""

    def __init__(
        self,
        *,
        faults: Faults | None = None,
        seed: int = 0,
        strict: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        ec2_endpoint_url: str | None = None,
    ) -> None:
        self.model: MgnModel = load_model()
        self.seed = seed
        self.strict = strict
        # One clock for everything (lag, quotas, jobs, log), so advance() moves them together.
        self.clock = Clock(clock, wall)
        self.store = Store(clock=self.clock, wall=self.clock.wall, seed=seed)
        if ec2_endpoint_url:
            self.use_ec2(ec2_endpoint_url)
        self.stats = Stats(self.clock)
        self.identities = Identities()
        self.injector = FaultInjector(faults or Faults(), seed, self.clock)
        self._sleep = sleep
        self._requests = 0
        # id -> (record, its JSON): published records never change, so encode each once.
        self._encoded: dict[int, tuple[Any, bytes]] = {}
        self.set_faults(self.injector.faults)

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self.injector.faults

    def set_faults(self, faults: Faults) -> None:
        """Put new faults in force for every following request."""
        self.injector.set_faults(faults)
        self.store.visibility_lag_s = faults.visibility_lag_s
        self.store.faults = faults
        self.store.is_stuck = self.injector.is_stuck
        self.store.is_stuck_job = self.injector.is_stuck_job

    def advance(self, seconds: float) -> None:
        """Let `seconds` of clock time pass at once (jobs, boots, lag and quotas all see it)."""
        self.clock.advance(seconds)

    def use_ec2(self, endpoint_url: str) -> None:
        """Launch instances in this EC2 endpoint (moto) from the next StartCutover on."""
        self.close()
        self.store.ec2 = Ec2(endpoint_url, DEFAULT_ACCOUNT_ID)

    def close(self) -> None:
        """Release the EC2 clients, if any."""
        if self.store.ec2 is not None:
            self.store.ec2.close()

    async def handle(self, op: str, raw: bytes, access_key: str | None = None) -> Reply:
        """Answer one MGN request for operation `op` (the request path without its slash),
        attributed to the account `access_key` belongs to (`identity`)."""
        body: Any = {}
        parse_error: str | None = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                parse_error = str(exc)
        server_ids = _server_ids(body)
        account_id = body.get("accountID") if type(body) is dict else None
        account_id = account_id if type(account_id) is str else None
        self.stats.count_call(op, server_ids)
        try:
            member = self.identities.account_of(access_key)
            reply, outcome = await self._run(op, body, parse_error, member)
        except _Outcome as early:
            reply, outcome = early.reply, early.outcome
        except ApiError as err:
            reply, outcome = self.error_reply(err), err.name
        except ResponseShapeError as exc:
            reply, outcome = self._bug_reply(str(exc)), "emulator_error"
        except Exception as exc:
            # A bug in the emulator: answer a modeled 500, never an HTML page.
            log.exception("emulator_bug", extra={"op": op})
            self.stats.emulator_errors.append(f"{op}: {exc!r}")
            reply, outcome = self._bug_reply(f"{op}: {exc!r}"), "emulator_error"
        self.stats.finish(op, None if reply.drop else reply.status, server_ids, account_id, outcome)
        return reply

    async def _run(
        self, op: str, body: Any, parse_error: str | None, member: str | None = None
    ) -> tuple[Reply, str]:
        spec = self.model.operations.get(op)
        if spec is None:
            raise validation_error(f"Unknown operation: {op}", "unknownOperation")
        asked = body.get("accountID") if type(body) is dict else None
        await self._admit(op, member or (asked if type(asked) is str else None))
        self._validate(op, body, parse_error)
        identity.scope(body, op, member)
        if self.injector.faults.uninitialized:
            account = body.get("accountID") or "the default account"
            raise ApiError(
                "UninitializedAccountException",
                f"Application Migration Service is not initialized in {account}",
                code="UninitializedAccountException",
            )
        drop = self.injector.drop(op, spec.mutating)
        if drop == "before":
            return Reply(0, drop=True), "dropped_before"
        try:
            answer = HANDLERS[op](self.store, body)
            out = await answer if inspect.isawaitable(answer) else answer
        except ApiError:
            if drop == "after":
                return Reply(0, drop=True), "dropped_after"
            raise
        if drop == "after":
            return Reply(0, drop=True), "dropped_after"
        if self.strict:
            self._check_output(op, out)
        return Reply(spec.status, self._encode(out), self._headers()), "ok"

    async def _admit(self, op: str, account_id: str | None = None) -> None:
        """Latency, then the front door: access denied, quota, injected server error."""
        inj = self.injector
        delay = inj.latency_s(op)
        if delay > 0:
            await self._sleep(delay)
        if inj.faults.access_denied:
            raise ApiError(
                "AccessDeniedException",
                "User is not authorized to perform this action (emulated)",
                code="AccessDeniedException",
            )
        if inj.denied(account_id):
            raise ApiError(
                "AccessDeniedException",
                f"The security token for account {account_id} has expired (emulated)",
                code="AccessDeniedException",
            )
        wait = inj.throttle_wait_s(op, account_id)
        if wait > 0:
            raise ApiError(
                "ThrottlingException",
                f"Rate exceeded for {op}",
                retry_after_s=retry_after_s(wait),
                serviceCode="mgn",
                quotaCode=f"emulator-{op}",
            )
        # fail_first before the dice: its calls fail whatever error_rate draws.
        if inj.fails_first(op, account_id) or inj.inject_error(op):
            err = ApiError(
                "InternalServerException",
                "Internal service error (injected by the emulator)",
                retry_after_s=inj.faults.error_retry_after_s,
            )
            raise _Outcome(self.error_reply(err), f"injected:{err.name}")

    def _validate(self, op: str, body: Any, parse_error: str | None) -> None:
        if parse_error is not None or type(body) is not dict:
            raise validation_error(
                f"Request body is not a JSON object: {parse_error or type(body).__name__}",
                "cannotParse",
            )
        errors = self.model.validate_input(op, body)
        if errors:
            raise validation_error(_summary(errors), "fieldValidationFailed", errors)

    def _encode(self, out: dict[str, Any]) -> bytes:
        items = out.get("items")
        if type(items) is not list or not items or "sourceServerID" not in items[0]:
            return _dumps(out)
        cache = self._encoded
        parts = []
        for item in items:
            hit = cache.get(id(item))
            if hit is None or hit[0] is not item:
                if len(cache) >= ENCODE_CACHE_LIMIT:
                    cache.clear()
                hit = cache[id(item)] = (item, _dumps(item))
            parts.append(hit[1])
        rest = {k: v for k, v in out.items() if k != "items"}
        tail = b"," + _dumps(rest)[1:-1] if rest else b""
        return b'{"items":[' + b",".join(parts) + b"]" + tail + b"}"

    def _check_output(self, op: str, out: Any) -> None:
        errors = self.model.output_errors(op, out)
        if errors:
            text = f"{op} response breaks its output shape: {_summary(errors)}"
            self.stats.emulator_errors.append(text)
            log.error("emulator_response_shape", extra={"op": op, "errors": errors[:10]})
            raise ResponseShapeError(text)

    def _headers(self) -> dict[str, str]:
        self._requests += 1
        return {
            "Content-Type": JSON_TYPE,
            "x-amzn-RequestId": f"00000000-0000-4000-8000-{self._requests:012x}",
        }

    def error_reply(self, err: ApiError) -> Reply:
        headers = self._headers()
        headers["x-amzn-ErrorType"] = f"{err.name}:{ERROR_NAMESPACE}"
        if err.retry_after_s is not None:
            headers["Retry-After"] = str(err.retry_after_s)
        if self.strict:
            problems: Errors = []
            self.model.error_checks[err.name](err.fields, "", problems)
            if problems:
                text = f"{err.name} body breaks its shape: {_summary(problems)}"
                self.stats.emulator_errors.append(text)
                return self._bug_reply(text)
        return Reply(self.model.error_status[err.name], _dumps(err.fields), headers)

    def _bug_reply(self, text: str) -> Reply:
        """A 500 for the emulator's own bug (strict mode catches these in tests)."""
        headers = self._headers()
        headers["x-amzn-ErrorType"] = f"InternalServerException:{ERROR_NAMESPACE}"
        return Reply(500, _dumps({"message": f"emulator bug: {text}"}), headers)
