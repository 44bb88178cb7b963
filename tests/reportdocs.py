"""report.json documents for the HTML report tests: a realistic night, and a hostile one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 3, 7, 1, 30, tzinfo=UTC)
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def at(minutes: float) -> str:
    """T0 plus `minutes`, as report.json writes times."""
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def _server(sid: str, app: str, outcome: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sourceServerID": sid,
        "applicationID": app,
        "name": None,
        "outcome": outcome,
        "reason": None,
        "lifecycle_state": "CUTTING_OVER",
        "replication_state": "CONTINUOUS",
        "first_boot": "SUCCEEDED",
        "ec2InstanceID": None,
        "attempts": 0,
        "error": None,
        "finalized_at": None,
        "converged_at": None,
    }
    return base | extra


def _timeline(*events: tuple[float, str, str | None]) -> list[dict[str, Any]]:
    return [{"at": at(m), "event": e, "detail": d} for m, e, d in events]


def _converged(sid: str, app: str, name: str, start: float) -> dict[str, Any]:
    return _server(
        sid,
        app,
        "finalized",
        name=name,
        lifecycle_state="CUTOVER",
        replication_state="DISCONNECTED",
        ec2InstanceID="i-0" + sid[-16:],
        attempts=1,
        finalized_at=at(start + 22),
        converged_at=at(start + 31),
        timeline=_timeline(
            (start, "launch_requested", None),
            (start + 6, "launched", "i-0" + sid[-16:]),
            (start + 12, "first_boot", "SUCCEEDED"),
            (start + 17, "verified", "2/2 status checks"),
            (start + 20, "approved", "ops-lead"),
            (start + 21, "finalize_sent", None),
            (start + 22, "finalize_accepted", None),
            (start + 31, "converged", None),
            (start + 33, "archived", None),
        ),
    )


def night_doc(with_timeline: bool = True) -> dict[str, Any]:
    """A finished wave of five applications: converged, blocked, failed, timed out, hostile."""
    servers = [
        _converged("s-1000000000000001a", "app-payments", "pay-api-1", 0),
        _converged("s-1000000000000001b", "app-payments", "pay-api-2", 2),
        _converged("s-1000000000000002a", "app-ledger", "ledger-db", 5),
        _server(
            "s-2000000000000001a",
            "app-crm",
            "blocked",
            name="crm-web",
            reason="first boot not SUCCEEDED (WAITING)",
            first_boot="WAITING",
            timeline=_timeline(
                (1, "launch_requested", None),
                (8, "launched", None),
                (44, "blocked", "first boot WAITING after 40 min"),
            ),
        ),
        _server(
            "s-2000000000000001b",
            "app-crm",
            "blocked",
            name="crm-db",
            reason="held back by the application gate (crm-web blocked)",
            timeline=_timeline((1, "launch_requested", None), (9, "launched", None)),
        ),
        _server(
            "s-3000000000000001a",
            "app-hr",
            "failed",
            name="hr-app",
            attempts=3,
            reason="InternalServerException: boom",
            error={"code": "InternalServerException", "message": "boom"},
            timeline=_timeline(
                (3, "launch_requested", None),
                (10, "launched", None),
                (15, "first_boot", "SUCCEEDED"),
                (25, "finalize_sent", None),
                (27, "failed", "InternalServerException after 3 attempts"),
            ),
        ),
        _server(
            "s-4000000000000001a",
            "app-wiki",
            "timed_out",
            name="wiki",
            attempts=1,
            finalized_at=at(30),
            reason="no CUTOVER/DISCONNECTED after 30 min",
            timeline=_timeline(
                (4, "launch_requested", None),
                (11, "launched", None),
                (16, "first_boot", "SUCCEEDED"),
                (29, "finalize_sent", None),
                (30, "finalize_accepted", None),
                (60, "timed_out", "still CUTTING_OVER"),
            ),
        ),
        _server(
            "s-5000000000000001a",
            "app-evil",
            "not_attempted",
            name=HOSTILE,
            reason=HOSTILE,
            error={"code": HOSTILE, "message": "</td></tr></table><h1>x</h1>"},
        ),
    ]
    if not with_timeline:
        for s in servers:
            s.pop("timeline", None)
    summary = {"total": len(servers)} | {
        o: sum(1 for s in servers if s["outcome"] == o)
        for o in (
            "finalized",
            "already_cutover",
            "would_finalize",
            "blocked",
            "failed",
            "timed_out",
            "not_attempted",
        )
    }
    return {
        "schema": "mgn-cutover/report/v1",
        "run_id": "run-20260307-0130",
        "description": "Payments and back office " + HOSTILE,
        "wave": "wave-07",
        "dry_run": False,
        "interrupted": False,
        "started_at": at(0),
        "finished_at": at(61),
        "exit_code": 1,
        "account_error": None,
        "config": {"concurrency": 16, "endpoint_url": "http://127.0.0.1:8765"},
        "endpoint_url": "http://127.0.0.1:8765",
        "applications": [
            {"applicationID": "app-payments", "name": "payments-api", "servers": 2},
            {"applicationID": "app-ledger", "name": "ledger", "servers": 1},
            {"applicationID": "app-crm", "name": "crm", "servers": 2},
            {"applicationID": "app-hr", "name": "hr", "servers": 1},
            {"applicationID": "app-wiki", "name": "wiki", "servers": 1},
            {"applicationID": "app-evil", "name": HOSTILE, "servers": 1},
        ],
        "summary": summary,
        "servers": servers,
    }
