"""The state machine, visibility lag and first boot, driven through the engine on a fake clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.emulator.engine import Emulator
from orchestrator.emulator.faults import Faults
from orchestrator.emulator.seed import seed_fixture
from orchestrator.emulator.state import LIFECYCLE_STATES

SID = "s-0a1b2c3d4e5f6a7b8"
SID2 = "s-1a1b2c3d4e5f6a7b8"


def make(clock: Any, faults: Faults | None = None, **server: Any) -> Emulator:
    em = Emulator(faults=faults, clock=clock)
    spec = {"sourceServerID": SID, "state": "CUTTING_OVER", "firstBoot": "SUCCEEDED", **server}
    seed_fixture(em.store, {"servers": [spec]})
    return em


async def call(em: Emulator, op: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    reply = await em.handle(op, json.dumps(body).encode())
    return reply.status, json.loads(reply.body) if reply.body else {}


async def visible(em: Emulator, sid: str = SID) -> dict[str, Any]:
    status, out = await call(em, "DescribeSourceServers", {"filters": {"sourceServerIDs": [sid]}})
    assert status == 200
    [item] = out["items"]
    return dict(item)


async def test_finalize_effects(fake_clock: Any) -> None:
    """FinalizeCutover sets CUTOVER, disconnects replication, zeroes bytes, drops lag and eta."""
    em = make(fake_clock, replicationState="BACKLOG")
    status, out = await call(em, "FinalizeCutover", {"sourceServerID": SID})
    assert status == 200
    assert out["lifeCycle"]["state"] == "CUTOVER"
    assert "apiCallDateTime" in out["lifeCycle"]["lastCutover"]["finalized"]
    info = out["dataReplicationInfo"]
    assert info["dataReplicationState"] == "DISCONNECTED"
    assert "lagDuration" not in info and "etaDateTime" not in info
    assert all(v == 0 for d in info["replicatedDisks"] for k, v in d.items() if k != "deviceName")
    assert out == await visible(em)


@pytest.mark.parametrize("state", [s for s in LIFECYCLE_STATES if s != "CUTTING_OVER"])
async def test_finalize_refused_outside_cutting_over(fake_clock: Any, state: str) -> None:
    """FinalizeCutover from any state but CUTTING_OVER is a 409 naming the current state."""
    em = make(fake_clock, state=state)
    status, out = await call(em, "FinalizeCutover", {"sourceServerID": SID})
    assert status == 409
    assert state in out["message"] and out["resourceId"] == SID


async def test_unknown_server_is_not_found(fake_clock: Any) -> None:
    """An unknown server ID is a 404 ResourceNotFoundException naming it."""
    status, out = await call(make(fake_clock), "FinalizeCutover", {"sourceServerID": SID2})
    assert status == 404 and out["resourceId"] == SID2


async def test_visibility_lag_hides_change_until_due(fake_clock: Any) -> None:
    """A finalize shows in Describe only after the lag; a repeat finalize sees the true state."""
    em = make(fake_clock, Faults(visibility_lag_s=5.0))
    status, _ = await call(em, "FinalizeCutover", {"sourceServerID": SID})
    assert status == 200
    assert (await visible(em))["lifeCycle"]["state"] == "CUTTING_OVER"
    assert em.store.record(None, SID).current["lifeCycle"]["state"] == "CUTOVER"
    status, _ = await call(em, "FinalizeCutover", {"sourceServerID": SID})
    assert status == 409
    fake_clock.advance(4.9)
    assert (await visible(em))["lifeCycle"]["state"] == "CUTTING_OVER"
    fake_clock.advance(0.1)
    assert (await visible(em))["lifeCycle"]["state"] == "CUTOVER"


async def test_lifecycle_filter_uses_visible_state(fake_clock: Any) -> None:
    """Describe's lifeCycleStates filter matches the visible snapshot, not the true record."""
    em = make(fake_clock, Faults(visibility_lag_s=2.0))
    await call(em, "FinalizeCutover", {"sourceServerID": SID})
    body = {"filters": {"lifeCycleStates": ["CUTOVER"]}}
    assert (await call(em, "DescribeSourceServers", body))[1]["items"] == []
    fake_clock.advance(2)
    assert len((await call(em, "DescribeSourceServers", body))[1]["items"]) == 1


async def test_start_cutover_launches_and_boots_after_delay(fake_clock: Any) -> None:
    """StartCutover answers 202 with a PENDING job; the instance shows once launched (launch 0 s)
    and firstBoot goes WAITING -> SUCCEEDED after the delay."""
    em = make(
        fake_clock, Faults(first_boot_delay_s=10.0), state="READY_FOR_CUTOVER", firstBoot=None
    )
    status, out = await call(em, "StartCutover", {"sourceServerIDs": [SID]})
    assert status == 202 and out["job"]["status"] == "PENDING"
    [p] = out["job"]["participatingServers"]
    assert p == {"sourceServerID": SID, "launchStatus": "PENDING"}
    server = await visible(em)
    assert server["lifeCycle"]["state"] == "CUTTING_OVER"
    launched = server["launchedInstance"]
    assert launched["firstBoot"] == "WAITING"
    assert len(launched["ec2InstanceID"]) == 19
    fake_clock.advance(10)
    assert (await visible(em))["launchedInstance"]["firstBoot"] == "SUCCEEDED"


async def test_first_boot_respects_visibility_lag(fake_clock: Any) -> None:
    """A first boot due at t shows in Describe at t + lag, not when first read."""
    faults = Faults(first_boot_delay_s=1.0, visibility_lag_s=3.0)
    em = make(fake_clock, faults, state="READY_FOR_CUTOVER", firstBoot=None)
    await call(em, "StartCutover", {"sourceServerIDs": [SID]})
    fake_clock.advance(3.5)
    assert (await visible(em))["launchedInstance"]["firstBoot"] == "WAITING"
    fake_clock.advance(0.5)
    assert (await visible(em))["launchedInstance"]["firstBoot"] == "SUCCEEDED"


async def test_start_cutover_is_all_or_nothing(fake_clock: Any) -> None:
    """One refused server fails the whole StartCutover with a per-server errors list."""
    em = make(fake_clock, state="READY_FOR_CUTOVER")
    status, out = await call(em, "StartCutover", {"sourceServerIDs": [SID, SID2]})
    assert status == 409
    assert [e["resourceId"] for e in out["errors"]] == [SID2]
    assert (await visible(em))["lifeCycle"]["state"] == "READY_FOR_CUTOVER"


async def test_stuck_server_accepts_but_never_converges(fake_clock: Any) -> None:
    """A stuck server's FinalizeCutover answers 200 but its state and replication stay put."""
    em = make(fake_clock, stuck=True)
    status, out = await call(em, "FinalizeCutover", {"sourceServerID": SID})
    assert status == 200 and out["lifeCycle"]["state"] == "CUTOVER"
    fake_clock.advance(3600)
    server = await visible(em)
    assert server["lifeCycle"]["state"] == "CUTTING_OVER"
    assert server["dataReplicationInfo"]["dataReplicationState"] == "CONTINUOUS"


async def test_change_life_cycle_state_transitions(fake_clock: Any) -> None:
    """READY_FOR_TEST <-> READY_FOR_CUTOVER are allowed; CUTOVER or the same state is a 409."""
    em = make(fake_clock, state="READY_FOR_TEST")

    async def change(target: str) -> int:
        body = {"sourceServerID": SID, "lifeCycle": {"state": target}}
        return (await call(em, "ChangeServerLifeCycleState", body))[0]

    assert await change("READY_FOR_CUTOVER") == 200
    assert await change("READY_FOR_CUTOVER") == 409
    assert await change("READY_FOR_TEST") == 200
    assert await change("CUTOVER") == 409


async def test_revert_from_cutting_over_records_it(fake_clock: Any) -> None:
    """Reverting a CUTTING_OVER server to READY_FOR_CUTOVER sets lastCutover.reverted."""
    em = make(fake_clock)
    body = {"sourceServerID": SID, "lifeCycle": {"state": "READY_FOR_CUTOVER"}}
    status, out = await call(em, "ChangeServerLifeCycleState", body)
    assert status == 200 and "reverted" in out["lifeCycle"]["lastCutover"]


async def test_archive_only_after_cutover_or_disconnect(fake_clock: Any) -> None:
    """MarkAsArchived refuses CUTTING_OVER and sets isArchived after FinalizeCutover."""
    em = make(fake_clock)
    assert (await call(em, "MarkAsArchived", {"sourceServerID": SID}))[0] == 409
    await call(em, "FinalizeCutover", {"sourceServerID": SID})
    status, out = await call(em, "MarkAsArchived", {"sourceServerID": SID})
    assert status == 200 and out["isArchived"] is True


async def test_disconnect_from_service(fake_clock: Any) -> None:
    """DisconnectFromService disconnects replication and lifecycle; a second call is a 409."""
    em = make(fake_clock, state="READY_FOR_CUTOVER")
    status, out = await call(em, "DisconnectFromService", {"sourceServerID": SID})
    assert status == 200
    assert out["lifeCycle"]["state"] == "DISCONNECTED"
    assert out["dataReplicationInfo"]["dataReplicationState"] == "DISCONNECTED"
    assert out["dataReplicationInfo"]["replicatedDisks"][0]["totalStorageBytes"] == 0
    assert (await call(em, "DisconnectFromService", {"sourceServerID": SID}))[0] == 409


async def test_latency_uses_the_injected_sleep(fake_clock: Any) -> None:
    """Latency plus jitter is slept through the injected sleep, within its bounds."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    em = Emulator(faults=Faults(latency_ms=20, jitter_ms=10), clock=fake_clock, sleep=sleep)
    for _ in range(20):
        await call(em, "ListWaves", {})
    assert len(slept) == 20 and all(0.02 <= s <= 0.03 for s in slept)


async def test_slow_server_shows_its_change_later(fake_clock: Any) -> None:
    """A server seeded with slowSeconds shows its finalize that much after the account's lag."""
    em = make(fake_clock, Faults(visibility_lag_s=1.0), slowSeconds=3)
    status, _ = await call(em, "FinalizeCutover", {"sourceServerID": SID})
    assert status == 200
    fake_clock.advance(3.9)
    assert (await visible(em))["lifeCycle"]["state"] == "CUTTING_OVER"
    fake_clock.advance(0.1)
    assert (await visible(em))["lifeCycle"]["state"] == "CUTOVER"
