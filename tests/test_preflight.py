"""Pre-flight verdicts: where we decide whether a server may be finalized."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator.config import Config
from orchestrator.plan import Application, Server, Wave
from orchestrator.preflight import Decision, check_instances, decide, preflight_stream
from orchestrator.views import parse_server

APP = "app-0000000000000000a"
OTHER_APP = "app-0000000000000000b"


def _item(sid: str = "s-00000000000000001", **over: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "sourceServerID": sid,
        "applicationID": APP,
        "isArchived": False,
        "lifeCycle": {"state": "CUTTING_OVER"},
        "dataReplicationInfo": {"dataReplicationState": "CONTINUOUS"},
        "launchedInstance": {"ec2InstanceID": "i-0123456789abcdef0", "firstBoot": "SUCCEEDED"},
        "sourceProperties": {"identificationHints": {"hostname": "pay-web-01"}},
    }
    item.update(over)
    return item


def _decide(item: dict[str, Any] | None, **cfg: Any) -> tuple[Decision, str | None]:
    sid = item["sourceServerID"] if item else "s-00000000000000001"
    view = parse_server(item) if item else None
    check = decide(Server(sid, APP), view, Config(**cfg))
    return check.decision, check.reason


def test_ready_server_is_finalized() -> None:
    """CUTTING_OVER, first boot SUCCEEDED, right application, not archived: finalize."""
    assert _decide(_item()) == (Decision.FINALIZE, None)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (None, "not_found"),
        (_item(isArchived=True), "archived"),
        (_item(applicationID=OTHER_APP), "application_mismatch"),
        (_item(lifeCycle={"state": "READY_FOR_CUTOVER"}), "wrong_state: READY_FOR_CUTOVER"),
        (_item(lifeCycle={"state": "TESTING"}), "wrong_state: TESTING"),
        (_item(launchedInstance={"firstBoot": "WAITING"}), "first_boot: WAITING"),
        (_item(launchedInstance={"firstBoot": "STOPPED"}), "first_boot: STOPPED"),
        (_item(launchedInstance=None), "first_boot: no launched instance"),
        (_item(lifeCycle={"state": "EXPLODING"}), "unknown_state"),
        (_item(lifeCycle=None), "unknown_state"),
        (_item(isArchived="no"), "unknown_state"),
        (_item(launchedInstance={"firstBoot": "MAYBE"}), "unknown_state"),
    ],
)
def test_blocked_with_reason(item: dict[str, Any] | None, reason: str) -> None:
    """Each failed condition blocks the server, and the reason says which."""
    decision, got = _decide(item)
    assert decision is Decision.BLOCKED
    assert got is not None and got.startswith(reason)


def test_first_boot_check_can_be_turned_off() -> None:
    """With require_first_boot false, a WAITING first boot does not block."""
    item = _item(launchedInstance={"firstBoot": "WAITING"})
    assert _decide(item, require_first_boot=False)[0] is Decision.FINALIZE


def test_cutover_and_disconnected_is_already_done() -> None:
    """A server already CUTOVER + DISCONNECTED needs nothing."""
    item = _item(
        lifeCycle={"state": "CUTOVER"},
        dataReplicationInfo={"dataReplicationState": "DISCONNECTED"},
    )
    assert _decide(item) == (Decision.ALREADY_CUTOVER, None)


def test_server_without_mgn_application_is_not_a_mismatch() -> None:
    """MGN naming no application is not a mismatch (the plan's grouping stands)."""
    item = _item()
    del item["applicationID"]
    assert _decide(item)[0] is Decision.FINALIZE


def test_converged_is_already_cutover_whatever_else_mgn_shows() -> None:
    """CUTOVER + DISCONNECTED is done even when archived or filed under another application:
    such a server must never hold back its application on a rerun."""
    done = {
        "lifeCycle": {"state": "CUTOVER"},
        "dataReplicationInfo": {"dataReplicationState": "DISCONNECTED"},
    }
    decision, reason = _decide(_item(isArchived=True, **done))
    assert decision is Decision.ALREADY_CUTOVER and reason == "archived"
    decision, reason = _decide(_item(applicationID=OTHER_APP, **done))
    assert decision is Decision.ALREADY_CUTOVER and OTHER_APP in (reason or "")


async def test_instance_check_blocks_unhealthy_instances() -> None:
    """A stopped or impaired or unknown instance blocks; running with both checks ok passes."""
    ids = ["s-00000000000000001", "s-00000000000000002", "s-00000000000000003"]
    instances = ["i-00000000000000001", "i-00000000000000002", "i-00000000000000003"]
    checks = [
        decide(
            Server(sid, APP),
            parse_server(
                _item(sid, launchedInstance={"ec2InstanceID": iid, "firstBoot": "SUCCEEDED"})
            ),
            Config(),
        )
        for sid, iid in zip(ids, instances, strict=True)
    ]
    asked: list[list[str]] = []

    async def status(batch: Any) -> dict[str, dict[str, str]]:
        asked.append(list(batch))
        return {
            instances[0]: {"state": "running", "system": "ok", "instance": "ok"},
            instances[1]: {"state": "running", "system": "ok", "instance": "impaired"},
        }

    out = await check_instances(checks, status)
    assert [c.decision for c in out] == [Decision.FINALIZE, Decision.BLOCKED, Decision.BLOCKED]
    assert "instance_status=impaired" in (out[1].reason or "")
    assert "EC2 does not know" in (out[2].reason or "")
    assert asked == [instances]


def _wave(applications: int, servers_each: int) -> Wave:
    """A wave of `applications` applications of `servers_each` servers (`_views` reads them)."""
    return Wave(
        "w",
        tuple(
            Application(
                f"app-{a:017d}",
                None,
                tuple(Server(f"s-{a:03d}{n:014d}", f"app-{a:017d}") for n in range(servers_each)),
            )
            for a in range(applications)
        ),
    )


def _views(batch: Any) -> list[Any]:
    """MGN's view of `_wave`'s servers, each ready for finalize in its application."""
    return [parse_server(_item(sid, applicationID=f"app-{int(sid[2:5]):017d}")) for sid in batch]


async def test_the_first_page_of_200_goes_alone_then_the_rest_at_once() -> None:
    """60 applications of 10: ceil(600/200) = 3 reads of 200 IDs, the first asked for alone,
    the other two together once it is in."""
    in_flight = 0
    asked: list[tuple[int, int]] = []  # (batch size, reads already in flight when asked)

    async def describe(batch: Any) -> list[Any]:
        nonlocal in_flight
        asked.append((len(batch), in_flight))
        in_flight += 1
        await asyncio.sleep(0)
        in_flight -= 1
        return _views(batch)

    wave = _wave(applications=60, servers_each=10)
    checks = [c async for part in preflight_stream(wave, Config(), describe) for c in part]
    assert len(checks) == 600
    assert asked == [(200, 0), (200, 0), (200, 1)]


async def test_stream_yields_each_application_once_wholly_read() -> None:
    """Applications come out as soon as all their servers are read, never split across parts."""
    # 3 applications of 150 servers: 200 IDs first (app 0 and a third of app 1), then the other
    # 250 in pages of 200 and 50 together.
    wave = _wave(applications=3, servers_each=150)
    apps = wave.applications
    release = asyncio.Event()
    reads: list[int] = []

    async def describe(batch: Any) -> list[Any]:
        reads.append(len(batch))
        if len(reads) > 1:
            await release.wait()  # later batches are slow
        return _views(batch)

    stream = preflight_stream(wave, Config(), describe)
    first = await anext(stream)
    assert {c.server.application_id for c in first} == {apps[0].application_id}
    assert len(first) == 150 and all(c.decision is Decision.FINALIZE for c in first)
    assert reads == [200]  # the first page alone
    for _ in range(3):
        await asyncio.sleep(0)  # the next batches' reads start, and wait
    assert reads == [200, 200, 50]  # then the rest together
    release.set()
    rest = [c async for part in stream for c in part]
    assert [c.server.application_id for c in rest[:1]] == [apps[1].application_id]
    assert len(rest) == 300
    assert reads == [200, 200, 50]  # nothing more: ceil(450/200) reads
