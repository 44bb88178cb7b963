"""Notifications: a real HTTP receiver for the webhook, moto's SNS and SQS, fake sleeps."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from orchestrator.notify import (
    Event,
    EventKind,
    Notifier,
    NotifyPolicy,
    application_blocked,
    application_failed,
    application_finalized,
    application_partially_cut_over,
    approval_awaited,
    check_webhook_url,
    parse_topic_arn,
    redact_url,
    run_finished,
    run_started,
)

TOKEN = "sig=SuperSecretQueryToken123"
PATH_TOKEN = "XyZpathSecret987"
FAST = NotifyPolicy(max_attempts=3, base_delay_s=0.5, attempt_timeout_s=2.0)


@dataclass
class Receiver:
    """A local webhook: records each JSON body and query; `answers` scripts the statuses."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    hang: bool = False


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook receiver on 127.0.0.1 with a token in its path and its query."""
    state = Receiver()

    async def hook(request: web.Request) -> web.Response:
        state.queries.append(request.query_string)
        state.bodies.append(await request.json())
        if state.hang:
            await asyncio.Event().wait()
        status = state.answers.pop(0) if state.answers else 200
        return web.Response(status=status, text="ok" if status == 200 else "nope")

    app = web.Application()
    app.router.add_post(f"/hooks/{PATH_TOKEN}", hook)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/hooks/{PATH_TOKEN}?{TOKEN}"
    try:
        yield state
    finally:
        await runner.cleanup()


class FakeSleep:
    """Records the delays asked for and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays.append(delay_s)


def _no_secrets(logs: list[dict[str, Any]]) -> None:
    text = json.dumps(logs, default=str)
    assert "SuperSecretQueryToken123" not in text
    assert PATH_TOKEN not in text


def _events() -> list[Event]:
    return [
        run_started("wave-01", servers=10, applications=4, run_id="r-1"),
        application_finalized("wave-01", "app-1", name="payments", servers=3),
        application_blocked("wave-01", "app-2", name="<!channel> crm", reason="first boot WAITING"),
        application_failed("wave-01", "app-4", reason="InternalServerException: boom"),
        approval_awaited("wave-01", "app-3", name="hr"),
        run_finished(
            "wave-01",
            exit_code=1,
            summary={"total": 10, "finalized": 8, "blocked": 2, "failed": 0},
            report_location="s3://reports/wave-01/",
        ),
        application_partially_cut_over(
            "wave-01", "app-5", servers=2, converged=0, reason="s-1: run interrupted"
        ),
    ]


async def test_webhook_gets_slack_and_teams_json(receiver: Receiver) -> None:
    """Each event arrives in order as JSON with a top-level text and the structured fields."""
    with capture_logs() as logs:
        notifier = Notifier.from_settings(webhook_url=receiver.url, sleep=FakeSleep())
        for event in _events():
            assert notifier.send(event)
        stats = await notifier.aclose(timeout_s=10)
    assert stats[0].sent == 7 and stats[0].failed == stats[0].dropped == 0
    assert [b["mgn_cutover"]["event"] for b in receiver.bodies] == [
        "run_started",
        "application_finalized",
        "application_blocked",
        "application_failed",
        "approval_awaited",
        "run_finished",
        "application_partially_cut_over",
    ]
    assert all(isinstance(b["text"], str) and b["text"] for b in receiver.bodies)
    assert receiver.queries == [TOKEN] * 7
    half = receiver.bodies[6]
    assert "HALF CUT OVER: 0 of 2 servers converged" in half["text"]
    assert half["mgn_cutover"]["status"] == "partially_cut_over"
    blocked = receiver.bodies[2]
    assert blocked["text"] == (
        "[wave-01] application &lt;!channel&gt; crm (app-2) BLOCKED: first boot WAITING"
    )
    assert blocked["mgn_cutover"]["name"] == "<!channel> crm"
    finished = receiver.bodies[5]
    assert finished["text"] == (
        "[wave-01] run finished: exit 1 (something was blocked, failed, timed out, "
        "unconfirmed or not attempted, or the run was interrupted); 8 finalized, 2 blocked; "
        "report: s3://reports/wave-01/"
    )
    assert finished["mgn_cutover"]["summary"]["finalized"] == 8
    _no_secrets(logs)
    assert [e["event"] for e in logs] == ["notify_sent"] * 7


async def test_webhook_500_then_200_is_retried(receiver: Receiver) -> None:
    """A 500 is retried after a backoff; the second attempt delivers."""
    receiver.answers = [500]
    sleep = FakeSleep()
    with capture_logs() as logs:
        notifier = Notifier.from_settings(webhook_url=receiver.url, policy=FAST, sleep=sleep)
        notifier.send(run_started("wave-01", servers=1, applications=1))
        stats = await notifier.aclose(timeout_s=10)
    assert stats[0].sent == 1 and stats[0].failed == 0
    assert len(receiver.bodies) == 2 and len(sleep.delays) == 1
    assert 0 <= sleep.delays[0] <= FAST.base_delay_s
    retry = next(e for e in logs if e["event"] == "notify_retry")
    assert retry["reason"] == "HTTP 500" and retry["attempt"] == 1
    _no_secrets(logs)


async def test_webhook_gives_up_after_max_attempts_and_never_retries_a_400(
    receiver: Receiver,
) -> None:
    """5xx are tried max_attempts times; a 400 once; both end as failed, nothing raised."""
    receiver.answers = [503, 503, 503, 400]
    with capture_logs() as logs:
        notifier = Notifier.from_settings(webhook_url=receiver.url, policy=FAST, sleep=FakeSleep())
        notifier.send(run_started("wave-01", servers=1, applications=1))
        notifier.send(run_started("wave-01", servers=2, applications=1))
        stats = await notifier.aclose(timeout_s=10)
    assert stats[0].failed == 2 and stats[0].sent == 0
    assert len(receiver.bodies) == 4
    failed = [e for e in logs if e["event"] == "notify_failed"]
    assert [(e["reason"], e["attempts"]) for e in failed] == [("HTTP 503", 3), ("HTTP 400", 1)]
    _no_secrets(logs)


async def test_hanging_webhook_never_blocks_the_run(receiver: Receiver) -> None:
    """A receiver that never answers: send returns at once, aclose within its limit, no token."""
    receiver.hang = True
    policy = NotifyPolicy(max_attempts=2, attempt_timeout_s=0.3, base_delay_s=0.1)
    with capture_logs() as logs:
        notifier = Notifier.from_settings(webhook_url=receiver.url, policy=policy)
        started = time.monotonic()
        for _ in range(3):
            notifier.send(run_started("wave-01", servers=1, applications=1))
        assert time.monotonic() - started < 0.05
        await asyncio.sleep(0)  # the run goes on with its own work
        stats = await notifier.aclose(timeout_s=1.0)
        elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert stats[0].sent == 0
    assert stats[0].failed >= 1 and stats[0].failed + stats[0].dropped == 3
    assert any(e["event"] == "notify_flush_timeout" for e in logs)
    assert any(e.get("reason") == "no answer in 0.3s" for e in logs), logs
    _no_secrets(logs)


async def test_cancelled_aclose_propagates_and_a_second_aclose_cleans_up(
    receiver: Receiver,
) -> None:
    """Cancelling aclose is never swallowed; delivery stops; aclose again closes at once."""
    receiver.hang = True
    notifier = Notifier.from_settings(
        webhook_url=receiver.url, policy=NotifyPolicy(attempt_timeout_s=30)
    )
    notifier.send(run_started("wave-01", servers=1, applications=1))
    closing = asyncio.create_task(notifier.aclose(timeout_s=30))
    while not receiver.bodies:  # the delivery is in flight
        await asyncio.sleep(0.01)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    started = time.monotonic()
    stats = await notifier.aclose(timeout_s=5)
    assert time.monotonic() - started < 1
    assert stats[0].dropped == 1 and stats[0].sent == stats[0].failed == 0


async def test_full_queue_drops_instead_of_waiting(receiver: Receiver) -> None:
    """With the queue full, send drops the new event and says so; it never waits."""
    receiver.hang = True
    policy = NotifyPolicy(queue_size=1, max_attempts=1, attempt_timeout_s=0.2)
    with capture_logs() as logs:
        notifier = Notifier.from_settings(webhook_url=receiver.url, policy=policy)
        sent = [notifier.send(run_started("wave-01", servers=i, applications=1)) for i in range(3)]
        stats = await notifier.aclose(timeout_s=2)
    assert sent == [True, False, False]
    assert stats[0].dropped == 2 and stats[0].failed == 1
    assert [e["reason"] for e in logs if e["event"] == "notify_dropped"] == ["queue_full"] * 2
    assert not notifier.send(run_started("wave-01", servers=1, applications=1))  # closed


async def test_unreachable_webhook_fails_without_the_url_in_logs() -> None:
    """Connection refused is retried, then failed; the log names the error class, not the URL."""
    url = f"http://127.0.0.1:9/hooks/{PATH_TOKEN}?{TOKEN}"  # the same tokens, a dead port
    with capture_logs() as logs:
        notifier = Notifier.from_settings(webhook_url=url, policy=FAST, sleep=FakeSleep())
        notifier.send(run_started("wave-01", servers=1, applications=1))
        stats = await notifier.aclose(timeout_s=10)
    assert stats[0].failed == 1
    failed = next(e for e in logs if e["event"] == "notify_failed")
    assert failed["reason"] == "ClientConnectorError" and failed["attempts"] == 3
    _no_secrets(logs)


def test_redact_url_hides_query_and_path_tokens() -> None:
    """Only scheme, host, port and the first path segment survive redaction."""
    assert redact_url(f"https://hooks.slack.com/services/T1/B2/{PATH_TOKEN}") == (
        "https://hooks.slack.com/services/<redacted>"
    )
    assert redact_url(f"https://user:pw@x.logic.azure.com:443/workflows/abc?{TOKEN}") == (
        "https://x.logic.azure.com:443/workflows/<redacted>?<redacted>"
    )
    assert redact_url("https://example.com") == "https://example.com/"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"http://hooks.example.com/x/{PATH_TOKEN}?{TOKEN}", "must use https"),
        (f"ftp://example.com/x?{TOKEN}", "must be an https:// URL"),
        (f"https:///x?{TOKEN}", "must be an https:// URL"),
        (f"https://example.com:99999/x?{TOKEN}", "is not a valid URL"),
    ],
)
def test_check_webhook_url_refuses_without_showing_the_token(url: str, why: str) -> None:
    """A bad webhook URL raises ValueError whose message has no token."""
    with pytest.raises(ValueError, match=why) as caught:
        check_webhook_url(url)
    assert "SuperSecret" not in str(caught.value) and PATH_TOKEN not in str(caught.value)
    assert check_webhook_url("http://localhost:8080/x") == "http://localhost:8080/x"


def test_parse_topic_arn() -> None:
    """A topic ARN gives its region; anything else is refused."""
    assert parse_topic_arn("arn:aws:sns:eu-west-1:123456789012:night") == "eu-west-1"
    assert parse_topic_arn("arn:aws:sns:us-east-1:123456789012:night.fifo") == "us-east-1"
    for bad in ("night", "arn:aws:sqs:us-east-1:123456789012:q", "arn:aws:sns:us-east-1:12:t"):
        with pytest.raises(ValueError, match="is not an SNS topic ARN"):
            parse_topic_arn(bad)


# --- SNS on moto ----------------------------------------------------------------------------


@pytest.fixture
def aws(moto_url: str, fake_credentials: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """boto3 clients factory on moto; AWS_ENDPOINT_URL points the code under test there too."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    return lambda service: boto3.client(service, endpoint_url=moto_url)


def _subscribed_queue(aws: Callable[[str], Any], topic_arn: str) -> str:
    sqs = aws("sqs")
    queue_url = sqs.create_queue(QueueName="night")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    aws("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return str(queue_url)


async def test_sns_delivers_json_to_an_sqs_subscriber(aws: Callable[[str], Any]) -> None:
    """SQS subscribers get the JSON payload, with event and wave as message attributes."""
    topic_arn = aws("sns").create_topic(Name="mgn-night")["TopicArn"]
    queue_url = _subscribed_queue(aws, topic_arn)
    with capture_logs() as logs:
        notifier = Notifier.from_settings(sns_topic_arn=topic_arn, sleep=FakeSleep())
        for event in _events():
            notifier.send(event)
        stats = await notifier.aclose(timeout_s=20)
    assert stats[0].sent == 7, logs
    messages = aws("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    envelopes = [json.loads(m["Body"]) for m in messages]
    payloads = [json.loads(e["Message"]) for e in envelopes]
    assert sorted(p["mgn_cutover"]["event"] for p in payloads) == sorted(k.value for k in EventKind)
    finished = next(e for e in envelopes if "run_finished" in e["Message"])
    assert finished["Subject"] == "mgn-cutover wave-01: run_finished"
    assert finished["MessageAttributes"]["event"]["Value"] == "run_finished"
    assert finished["MessageAttributes"]["wave"]["Value"] == "wave-01"


async def test_sns_missing_topic_fails_once_without_raising(aws: Callable[[str], Any]) -> None:
    """A topic that does not exist: not retried, counted failed, the run goes on."""
    sleep = FakeSleep()
    with capture_logs() as logs:
        notifier = Notifier.from_settings(
            sns_topic_arn="arn:aws:sns:us-east-1:123456789012:nope", sleep=sleep
        )
        notifier.send(run_started("wave-01", servers=1, applications=1))
        stats = await notifier.aclose(timeout_s=20)
    assert stats[0].failed == 1 and sleep.delays == []
    failed = next(e for e in logs if e["event"] == "notify_failed")
    assert failed["attempts"] == 1 and "NotFound" in failed["reason"], failed


async def test_sns_and_webhook_together(aws: Callable[[str], Any], receiver: Receiver) -> None:
    """Both destinations get every event; a failing webhook does not hold SNS back."""
    receiver.answers = [500, 500, 500]
    topic_arn = aws("sns").create_topic(Name="mgn-night")["TopicArn"]
    queue_url = _subscribed_queue(aws, topic_arn)
    notifier = Notifier.from_settings(
        sns_topic_arn=topic_arn, webhook_url=receiver.url, policy=FAST, sleep=FakeSleep()
    )
    assert notifier.destinations == [
        f"sns {topic_arn}",
        f"webhook {redact_url(receiver.url)}",
    ]
    notifier.send(run_started("wave-01", servers=1, applications=1))
    sns_stats, hook_stats = await notifier.aclose(timeout_s=20)
    assert sns_stats.sent == 1 and hook_stats.failed == 1
    assert len(aws("sqs").receive_message(QueueUrl=queue_url)["Messages"]) == 1
