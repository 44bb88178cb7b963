"""Notifications of the night: to an SNS topic and/or a chat webhook, never in the run's way.

`Notifier.send(event)` only queues the event and returns at once. One background task per
destination delivers in order, retrying transient failures (throttling, 5xx, timeouts, dropped
connections) a bounded number of times with exponential backoff and full jitter; anything else
is logged and dropped. `aclose(timeout_s)` flushes what is queued within a time limit, then stops.
A full queue drops the new event (logged): a notification never blocks or fails the run.
Once the run halts (a signal), a flush waits no longer than the stop's grace (`stop.GRACE_S`,
counted from the stop): a destination that has not taken its events by then is abandoned, its
events dropped, and `flush` says which, for the report.

Webhook payload: `{"text": ..., "mgn_cutover": {...}}`. A top-level `text` is what Slack and
Microsoft Teams incoming webhooks both display; the structured fields sit under one key so they
never collide with Slack's own (`channel`, `username`, ...). SNS messages use
`MessageStructure=json`: email and SMS subscribers get the text, SQS, Lambda and HTTP
subscribers the JSON payload; `event` and `wave` are message attributes for filter policies.

Webhook URLs carry their secret in the query or in the path (Slack's
`/services/T…/B…/<token>`), so a URL is only ever shown as `redact_url` makes it:
scheme, host and first path segment, the rest `<redacted>`.

aiohttp and aioboto3 are imported only by the destinations that use them: a run that notifies
nowhere never imports them (~0.2 s of its start).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import random
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import structlog

from orchestrator.config import redact_url
from orchestrator.errors import MgnCutoverError, RetryableError
from orchestrator.mgn import translate
from orchestrator.outcome import exit_meaning
from orchestrator.stop import Stop, first_of

if TYPE_CHECKING:
    import aiohttp

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]

_TOPIC_ARN = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov|aws-iso[a-z-]*):sns:([a-z]{2}(?:-[a-z]+)+-\d):(\d{12}):"
    r"([A-Za-z0-9_-]{1,256}(?:\.fifo)?)"
)
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_SUBJECT_MAX = 99  # SNS: under 100 printable ASCII characters, no line breaks
# After a halting stop, an event queued once the grace is over (run_finished, after the report)
# still gets this long: a destination that answers takes it, one that does not is not waited for.
_LAST_WORD_S = 0.5


class EventKind(StrEnum):
    """What a notification is about."""

    RUN_STARTED = "run_started"
    APPLICATION_FINALIZED = "application_finalized"
    APPLICATION_BLOCKED = "application_blocked"
    APPLICATION_FAILED = "application_failed"
    APPLICATION_PARTIALLY_CUT_OVER = "application_partially_cut_over"
    APPROVAL_AWAITED = "approval_awaited"
    RUN_FINISHED = "run_finished"


@dataclass(frozen=True)
class Event:
    """One notification: a line for people and fields for machines (JSON values only)."""

    kind: EventKind
    wave: str
    text: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: _now_iso())

    def payload(self) -> dict[str, Any]:
        """The webhook body: Slack/Teams `text`, and the structured fields under `mgn_cutover`."""
        return {
            "text": self.text,
            "mgn_cutover": {"event": self.kind.value, "wave": self.wave, "at": self.at}
            | dict(self.fields),
        }


class NotifyError(MgnCutoverError):
    """One delivery attempt failed; `retryable` says whether another attempt may help."""

    def __init__(self, reason: str, retryable: bool, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after_s = retry_after_s


# --- events ---------------------------------------------------------------------------------


def run_started(
    wave: str,
    *,
    servers: int,
    applications: int,
    run_id: str | None = None,
    dry_run: bool = False,
    endpoint_url: str | None = None,
    warnings: Sequence[str] = (),
) -> Event:
    """The run began working on `servers` servers in `applications` applications; `warnings`
    (e.g. another wave's plan file skipped) are said loudly in the text."""
    mode = " (dry run)" if dry_run else ""
    text = f"run started{mode}: {servers} servers in {applications} applications"
    if warnings:
        text += ". WARNING: " + "; ".join(_esc(w) for w in warnings)
    fields: dict[str, Any] = {"run_id": run_id, "servers": servers, "applications": applications}
    if warnings:
        fields["warnings"] = list(warnings)
    return _event(EventKind.RUN_STARTED, wave, text, fields, dry_run, endpoint_url)


def application_finalized(
    wave: str, application_id: str, *, name: str | None = None, servers: int, **extra: Any
) -> Event:
    """Every server of an application was finalized (or already cut over)."""
    text = f"application {_app(application_id, name)} finalized: {servers} servers"
    fields = {"applicationID": application_id, "name": name, "servers": servers}
    return _event(EventKind.APPLICATION_FINALIZED, wave, text, fields | extra)


def application_blocked(
    wave: str, application_id: str, *, name: str | None = None, reason: str, **extra: Any
) -> Event:
    """An application is held back: nothing of it will be finalized tonight."""
    text = f"application {_app(application_id, name)} BLOCKED: {_esc(reason)}"
    fields = {"applicationID": application_id, "name": name, "reason": reason}
    return _event(EventKind.APPLICATION_BLOCKED, wave, text, fields | extra)


def application_failed(
    wave: str, application_id: str, *, name: str | None = None, reason: str, **extra: Any
) -> Event:
    """An application has a server that failed or timed out."""
    text = f"application {_app(application_id, name)} FAILED: {_esc(reason)}"
    fields = {"applicationID": application_id, "name": name, "reason": reason}
    return _event(EventKind.APPLICATION_FAILED, wave, text, fields | extra)


def application_partially_cut_over(
    wave: str,
    application_id: str,
    *,
    name: str | None = None,
    servers: int,
    converged: int,
    reason: str,
    **extra: Any,
) -> Event:
    """An application is HALF CUT OVER: a server of it is cut over (or its finalize accepted)
    while another is not converged; someone must act now (finish it or roll the rest back)."""
    text = (
        f"application {_app(application_id, name)} HALF CUT OVER: {converged} of {servers} "
        f"servers converged; act now: {_esc(reason)}"
    )
    fields = {
        "applicationID": application_id,
        "name": name,
        "status": "partially_cut_over",
        "servers": servers,
        "converged": converged,
        "reason": reason,
    }
    return _event(EventKind.APPLICATION_PARTIALLY_CUT_OVER, wave, text, fields | extra)


def approval_awaited(
    wave: str, application_id: str, *, name: str | None = None, detail: str | None = None
) -> Event:
    """The run waits for someone to approve an application before finalizing it."""
    text = f"approval awaited for application {_app(application_id, name)}" + (
        f": {_esc(detail)}" if detail else ""
    )
    fields = {"applicationID": application_id, "name": name, "detail": detail}
    return _event(EventKind.APPROVAL_AWAITED, wave, text, fields)


def run_finished(
    wave: str,
    *,
    exit_code: int,
    summary: Mapping[str, int],
    report_location: str | None = None,
    run_id: str | None = None,
    dry_run: bool = False,
    endpoint_url: str | None = None,
) -> Event:
    """The run ended: its exit code, the count of each outcome, and where the report is."""
    counts = ", ".join(f"{n} {k}" for k, n in summary.items() if n and k != "total")
    text = f"run finished{' (dry run)' if dry_run else ''}: exit {exit_code}"
    text += f" ({exit_meaning(exit_code, dry_run)})"
    text += f"; {_esc(counts)}" if counts else ""
    text += f"; report: {_esc(report_location)}" if report_location else ""
    fields = {
        "run_id": run_id,
        "exit_code": exit_code,
        "summary": dict(summary),
        "report_location": report_location,
    }
    return _event(EventKind.RUN_FINISHED, wave, text, fields, dry_run, endpoint_url)


def _event(
    kind: EventKind,
    wave: str,
    text: str,
    fields: Mapping[str, Any],
    dry_run: bool = False,
    endpoint_url: str | None = None,
) -> Event:
    prefix = "[REHEARSAL] " if endpoint_url else ""
    extra: dict[str, Any] = {"dry_run": dry_run} if dry_run else {}
    if endpoint_url:
        extra["endpoint_url"] = endpoint_url
    return Event(kind, wave, f"{prefix}[{_esc(wave)}] {text}", {**fields, **extra})


def _app(application_id: str, name: str | None) -> str:
    return f"{_esc(name)} ({_esc(application_id)})" if name else _esc(application_id)


def _esc(text: str) -> str:
    """Slack's escaping: names from MGN tags cannot become <!channel> pings or links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- destinations ---------------------------------------------------------------------------


def check_webhook_url(url: str) -> str:
    """The URL, if it can be a webhook: https, or http to this machine only (tests, proxies).

    Raises ValueError saying why; the message shows the URL redacted.
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"notify_webhook_url {shown} is not a valid URL") from exc
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(f"notify_webhook_url {shown} must be an https:// URL with a host")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError(
            f"notify_webhook_url {shown} must use https: its path or query carries a token"
        )
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_topic_arn(arn: str) -> str:
    """The region of an SNS topic ARN. Raises ValueError if it is not one."""
    found = _TOPIC_ARN.fullmatch(arn.strip())
    if not found:
        raise ValueError(
            f"notify_sns_topic_arn {arn!r} is not an SNS topic ARN "
            "(arn:aws:sns:<region>:<12-digit account>:<topic name>)"
        )
    return found.group(2)


class Sink(Protocol):
    """One destination. `deliver` raises NotifyError; `name` is safe to log."""

    name: str

    async def deliver(self, event: Event) -> None: ...

    async def aclose(self) -> None: ...


class WebhookSink:
    """POSTs the event's JSON payload to a Slack- or Teams-style incoming webhook."""

    def __init__(self, url: str, *, attempt_timeout_s: float = 10.0) -> None:
        import aiohttp

        self._url = check_webhook_url(url)
        self.name = f"webhook {redact_url(url)}"
        self._timeout = aiohttp.ClientTimeout(total=attempt_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"WebhookSink({self.name!r})"

    async def deliver(self, event: Event) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(self._url, json=event.payload()) as resp:
                status = resp.status
                retry_after = _seconds(resp.headers.get("Retry-After"))
                await resp.read()
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            raise NotifyError(f"no answer in {self._timeout.total:g}s", retryable=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            # Never str(exc): aiohttp puts the full URL, token included, in its messages.
            raise NotifyError(type(exc).__name__, retryable=True) from None
        if status >= 300:
            raise NotifyError(f"HTTP {status}", status in _RETRY_STATUSES, retry_after)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class SnsSink:
    """Publishes the event to an SNS topic (standard or FIFO)."""

    def __init__(
        self,
        topic_arn: str,
        *,
        profile: str | None = None,
        endpoint_url: str | None = None,
        attempt_timeout_s: float = 10.0,
    ) -> None:
        self.topic_arn = topic_arn
        self.name = f"sns {topic_arn}"
        self._region = parse_topic_arn(topic_arn)
        self._profile = profile
        self._endpoint_url = endpoint_url
        self._timeout_s = attempt_timeout_s
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def deliver(self, event: Event) -> None:
        try:
            if self._client is None:
                import aioboto3
                from aiobotocore.config import AioConfig

                session = aioboto3.Session(profile_name=self._profile, region_name=self._region)
                config = AioConfig(
                    retries={"total_max_attempts": 1},
                    connect_timeout=self._timeout_s,
                    read_timeout=self._timeout_s,
                )
                self._client = await self._stack.enter_async_context(
                    session.client("sns", endpoint_url=self._endpoint_url, config=config)
                )
            await self._client.publish(**self._params(event))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 -- every botocore error becomes a NotifyError
            err = translate(exc)
            retryable = isinstance(err, RetryableError)
            after = err.retry_after_s if isinstance(err, RetryableError) else None
            raise NotifyError(str(err), retryable, after) from None

    def _params(self, event: Event) -> dict[str, Any]:
        payload = json.dumps(event.payload(), ensure_ascii=False, default=str)
        message = {"default": event.text, "email": event.text, "sms": event.text[:140]}
        message |= {p: payload for p in ("sqs", "lambda", "http", "https", "firehose")}
        params: dict[str, Any] = {
            "TopicArn": self.topic_arn,
            "Subject": _subject(f"mgn-cutover {event.wave}: {event.kind.value}"),
            "Message": json.dumps(message, ensure_ascii=False),
            "MessageStructure": "json",
            "MessageAttributes": {
                "event": {"DataType": "String", "StringValue": event.kind.value},
                "wave": {"DataType": "String", "StringValue": event.wave},
            },
        }
        if self.topic_arn.endswith(".fifo"):
            params["MessageGroupId"] = event.wave
            params["MessageDeduplicationId"] = hashlib.sha256(payload.encode()).hexdigest()
        return params

    async def aclose(self) -> None:
        await self._stack.aclose()


def _subject(text: str) -> str:
    ascii_text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return ascii_text[:_SUBJECT_MAX]


def _seconds(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value <= 3600 else None


# --- the notifier ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NotifyPolicy:
    """How hard to try one delivery: attempts, backoff and a time limit per attempt."""

    max_attempts: int = 4
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    attempt_timeout_s: float = 10.0
    queue_size: int = 100

    def delay_s(self, attempt: int, err: NotifyError, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if err.retry_after_s is not None:
            return min(err.retry_after_s, self.max_delay_s)
        return rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


@dataclass
class NotifyStats:
    """What became of the events sent to one destination."""

    sink: str
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    dropped_events: list[str] = field(default_factory=list)  # their kinds, in order

    def drop(self, event: Event) -> None:
        self.dropped += 1
        self.dropped_events.append(event.kind.value)


@dataclass
class _Channel:
    sink: Sink
    queue: asyncio.Queue[Event]
    stats: NotifyStats
    task: asyncio.Task[None] | None = None
    current: Event | None = None  # the event being delivered
    abandoned: bool = False  # it did not take its events within a stop's grace


class Notifier:
    """Sends events to every destination in the background; see the module docstring."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        policy: NotifyPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        stop: Stop | None = None,
    ) -> None:
        """`stop`: the run's stop; once it halts, flushing waits at most its grace."""
        self.policy = policy or NotifyPolicy()
        self._sleep = sleep
        self._stop = stop
        self._rng = rng or random.Random()
        self._channels = [
            _Channel(s, asyncio.Queue(self.policy.queue_size), NotifyStats(s.name)) for s in sinks
        ]
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        *,
        sns_topic_arn: str | None = None,
        webhook_url: str | None = None,
        profile: str | None = None,
        sns_endpoint_url: str | None = None,
        policy: NotifyPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        stop: Stop | None = None,
    ) -> Notifier:
        """A notifier for the configured destinations (none configured: sends nowhere).

        Raises ValueError for a malformed topic ARN or webhook URL (the URL shown redacted).
        """
        policy = policy or NotifyPolicy()
        sinks: list[Sink] = []
        if sns_topic_arn:
            sinks.append(
                SnsSink(
                    sns_topic_arn,
                    profile=profile,
                    endpoint_url=sns_endpoint_url,
                    attempt_timeout_s=policy.attempt_timeout_s,
                )
            )
        if webhook_url:
            sinks.append(WebhookSink(webhook_url, attempt_timeout_s=policy.attempt_timeout_s))
        return cls(sinks, policy=policy, sleep=sleep, stop=stop)

    @property
    def destinations(self) -> list[str]:
        """The destinations, as safe to log."""
        return [c.sink.name for c in self._channels]

    def send(self, event: Event) -> bool:
        """Queue `event` for every destination; never waits. False if any destination dropped it.

        Must be called from a running event loop (the delivery tasks start on first use).
        """
        accepted = True
        for channel in self._channels:
            if self._closed or channel.abandoned:
                reason = "abandoned" if channel.abandoned else "closed"
            else:
                if channel.task is None:
                    channel.task = asyncio.get_running_loop().create_task(self._work(channel))
                try:
                    channel.queue.put_nowait(event)
                    continue
                except asyncio.QueueFull:
                    reason = "queue_full"
            channel.stats.drop(event)
            accepted = False
            log.warning(
                "notify_dropped", sink=channel.sink.name, notify_event=event.kind, reason=reason
            )
        return accepted

    async def _work(self, channel: _Channel) -> None:
        while True:
            event = await channel.queue.get()
            channel.current = event
            try:
                await self._deliver(channel, event)
            finally:
                channel.current = None
                channel.queue.task_done()

    async def _deliver(self, channel: _Channel, event: Event) -> None:
        policy, name = self.policy, channel.sink.name
        for attempt in range(1, policy.max_attempts + 1):
            try:
                async with asyncio.timeout(policy.attempt_timeout_s):
                    await channel.sink.deliver(event)
            except TimeoutError:
                err = NotifyError(f"no answer in {policy.attempt_timeout_s:g}s", retryable=True)
            except NotifyError as exc:
                err = exc
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 -- a bug in a destination must not stop the rest
                # The type only: a foreign message may hold the URL and its token.
                err = NotifyError(f"internal error {type(exc).__name__}", retryable=False)
            else:
                channel.stats.sent += 1
                log.info("notify_sent", sink=name, notify_event=event.kind, attempts=attempt)
                return
            if not err.retryable or attempt == policy.max_attempts:
                break
            delay_s = policy.delay_s(attempt, err, self._rng)
            log.info(
                "notify_retry",
                sink=name,
                notify_event=event.kind,
                attempt=attempt,
                reason=err.reason,
                delay_s=round(delay_s, 3),
            )
            await self._sleep(delay_s)
        channel.stats.failed += 1
        log.warning(
            "notify_failed", sink=name, notify_event=event.kind, attempts=attempt, reason=err.reason
        )

    async def flush(self, timeout_s: float = 10.0) -> list[str]:
        """Deliver what is queued within `timeout_s` (once the run halts: within what is left
        of its grace, at least `_LAST_WORD_S`); then abandon every destination still holding
        events, which drops them and anything sent to it later.

        Returns one line per destination abandoned by this flush, naming what it dropped (for
        the report). Raises only CancelledError, after abandoning what was not delivered.
        """
        live = [c for c in self._channels if c.task is not None and not c.task.done()]
        stuck: list[_Channel] = []
        try:
            await first_of(
                asyncio.gather(*(c.queue.join() for c in live)), self._flush_limit(timeout_s)
            )
        finally:
            # Also when cancelled: nothing goes on delivering behind a flush that ended.
            stuck = [c for c in live if c.queue.qsize() or c.current is not None]
            dropped = {id(c): self._abandon(c) for c in stuck}
        await asyncio.gather(*(c.task for c in stuck if c.task), return_exceptions=True)
        lines = []
        for channel in stuck:
            kinds = ", ".join(dropped[id(channel)])
            log.warning(
                "notify_flush_timeout",
                sink=channel.sink.name,
                timeout_s=timeout_s,
                halted=self._halted,
                pending=len(dropped[id(channel)]),
                dropped=dropped[id(channel)],
            )
            within = "the stop's grace" if self._halted else f"{timeout_s:g} s"
            lines.append(
                f"notifications not delivered: {channel.sink.name} did not take them within "
                f"{within}; dropped: {kinds}; nothing more is sent to it by this run"
            )
        return lines

    @property
    def _halted(self) -> bool:
        return self._stop is not None and self._stop.halted

    async def _flush_limit(self, timeout_s: float) -> None:
        """Sleep `timeout_s`, cut short to the stop's grace once the run halts (before or
        while flushing)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        stop = self._stop
        if stop is not None and not stop.halted:
            await first_of(asyncio.sleep(timeout_s), stop.wait_halted())
        left_s = stop.grace_left_s() if stop is not None else None
        if left_s is not None:
            end = min(end, loop.time() + max(left_s, _LAST_WORD_S))
        await asyncio.sleep(max(0.0, end - loop.time()))

    def _abandon(self, channel: _Channel) -> list[str]:
        """Stop delivering to `channel` for good; the kinds of the events it drops."""
        channel.abandoned = True
        lost = [channel.current] if channel.current is not None else []
        while not channel.queue.empty():
            lost.append(channel.queue.get_nowait())
            channel.queue.task_done()
        for event in lost:
            channel.stats.drop(event)
        if channel.task is not None:
            channel.task.cancel()
        return [e.kind.value for e in lost]

    async def aclose(self, timeout_s: float = 10.0) -> list[NotifyStats]:
        """Deliver what is queued within `timeout_s` (see `flush`), drop the rest, close; one
        stats per sink.

        Safe to call again, e.g. after a cancelled aclose (which stops the delivery tasks but
        leaves the destinations to close).
        """
        self._closed = True
        await self.flush(timeout_s)
        # A halted run does not wait on a destination's goodbye longer than the last word.
        close_s = _LAST_WORD_S if self._halted else max(timeout_s, 1.0)
        for channel in self._channels:
            try:
                async with asyncio.timeout(close_s):
                    await channel.sink.aclose()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 -- closing a destination must not fail the run
                log.warning("notify_close_failed", sink=channel.sink.name, error=type(exc).__name__)
        return [c.stats for c in self._channels]

    async def __aenter__(self) -> Notifier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
