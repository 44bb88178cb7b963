"""Seeding the store: from a fixture, generated for a seed, or ready for finalize from wave plans.

The fixture format (YAML file, or the same structure as a dict / JSON for `POST /_emulator/seed`)
is documented in this folder's README.md, "Fixture format". Every problem is reported at once,
naming where it is (`servers[3].state: invalid value 'DONE'`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from orchestrator.emulator import jobs, state
from orchestrator.emulator.errors import FixtureError
from orchestrator.emulator.model import enum_values, load_model
from orchestrator.emulator.store import DEFAULT_ACCOUNT_ID, Store

SERVER_ID = re.compile(r"^s-[0-9a-zA-Z]{17}$")
APP_ID = re.compile(r"^app-[0-9a-zA-Z]{17}$")
WAVE_ID = re.compile(r"^wave-[0-9a-zA-Z]{17}$")
ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
INSTANCE_ID = re.compile(r"^i-[0-9a-fA-F]{8,}$")
LAG_DURATION = re.compile(r"^P(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
TOP_KEYS = frozenset({"defaults", "servers", "applications", "waves"})
# Keys that give a wave plan away (orchestrator/plan.py's format).
PLAN_KEYS = frozenset({"wave", "region", "description", "accountID"})
REPLICATION_STATES = frozenset(
    [
        "STOPPED",
        "INITIATING",
        "INITIAL_SYNC",
        "BACKLOG",
        "CREATING_SNAPSHOT",
        "CONTINUOUS",
        "PAUSED",
        "RESCAN",
        "STALLED",
        "DISCONNECTED",
        "PENDING_SNAPSHOT_SHIPPING",
        "SHIPPING_SNAPSHOT",
    ]
)
SERVER_KEYS = frozenset(
    [
        "sourceServerID",
        "applicationID",
        "hostname",
        "userProvidedID",
        "fqdnForActionFramework",
        "state",
        "replicationState",
        "firstBoot",
        "ec2InstanceID",
        "archived",
        "accountID",
        "stuck",
        "slowSeconds",
        "disks",
        "tags",
        "lagDuration",
        "dataReplicationError",
        "postLaunchActions",
        "launchFails",
        "bootFails",
        "stuckJob",
    ]
)
APP_NAMES = (
    ("payments", "pay"),
    ("billing", "bill"),
    ("orders", "ord"),
    ("inventory", "inv"),
    ("customer-portal", "cust"),
    ("hr-system", "hr"),
    ("reporting", "rpt"),
    ("search", "srch"),
    ("shipping", "ship"),
    ("identity", "idp"),
    ("analytics", "anl"),
    ("crm", "crm"),
)
ROLES = ("web", "app", "db", "cache", "mq", "batch")
OS_NAMES = (
    "Amazon Linux 2",
    "Red Hat Enterprise Linux 8.6",
    "Ubuntu 22.04.3 LTS",
    "Microsoft Windows Server 2019 Datacenter",
    "SUSE Linux Enterprise Server 15 SP4",
)
GIB = 2**30


def hex_id(rng: random.Random, prefix: str) -> str:
    return f"{prefix}{rng.getrandbits(68):017x}"


def load_fixture(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The fixture as a dict, from a mapping or a YAML/JSON file; FixtureError when unreadable."""
    if isinstance(source, Mapping):
        return dict(source)
    try:
        data = yaml.safe_load(Path(source).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FixtureError(f"{source}: cannot read fixture: {exc}") from exc
    if not isinstance(data, dict):
        raise FixtureError(
            f"{source}: not an emulator fixture: expected a mapping with a `servers` list"
        )
    problems = fixture_shape_problems(data)
    if problems:
        raise FixtureError(f"{source}: not an emulator fixture: {problems}")
    return data


def fixture_shape_problems(data: Mapping[str, Any]) -> str | None:
    """What makes `data` not a fixture at all (unknown top-level keys, no servers), or None."""
    unknown = sorted(set(data) - TOP_KEYS, key=str)
    if unknown:
        hint = ""
        apps = data.get("applications")
        has_plan_apps = isinstance(apps, list) and any(
            isinstance(a, Mapping) and "sourceServerIDs" in a for a in apps
        )
        if set(unknown) & PLAN_KEYS or has_plan_apps:
            hint = "; this looks like a wave plan: pass it with --plan, not --fixture"
        return (
            f"unknown top-level key(s) {', '.join(map(str, unknown))}"
            f" (a fixture has {', '.join(sorted(TOP_KEYS))}){hint}"
        )
    if not isinstance(data.get("servers"), list):
        return "no `servers` list"
    return None


def seed_fixture(store: Store, fixture: Mapping[str, Any]) -> int:
    """Add a fixture's servers, applications and waves; returns how many servers were seeded."""
    shape = fixture_shape_problems(fixture)
    if shape is not None:
        raise FixtureError(f"invalid fixture: {shape}")
    problems: list[str] = []
    defaults = dict(fixture.get("defaults") or {})
    built = []
    for i, raw in enumerate(fixture.get("servers") or []):
        spec = {**defaults, **dict(raw)} if isinstance(raw, Mapping) else raw
        found = _check_server(spec, f"servers[{i}]")
        if not found:
            # Each server's generated details depend on its ID only, not on the fixture.
            server = build_server(store, spec, random.Random(spec["sourceServerID"]))
            found = _shape_problems(server, f"servers[{i}]")
            built.append((spec, server))
        problems.extend(found)
    for i, app in enumerate(fixture.get("applications") or []):
        problems.extend(_check_ids(app, f"applications[{i}]", {"applicationID": APP_ID}))
    for i, wave in enumerate(fixture.get("waves") or []):
        problems.extend(_check_ids(wave, f"waves[{i}]", {"waveID": WAVE_ID}))
    if problems:
        raise FixtureError("invalid fixture:\n  " + "\n  ".join(problems))
    for wave in fixture.get("waves") or []:
        put_wave(store, wave.get("accountID"), wave["waveID"], wave.get("name"))
        for app_id in wave.get("applicationIDs") or []:
            put_app(store, wave.get("accountID"), app_id, None, wave["waveID"])
    for app in fixture.get("applications") or []:
        put_app(
            store, app.get("accountID"), app["applicationID"], app.get("name"), app.get("waveID")
        )
    for spec, server in built:
        _store_server(store, spec, server)
    return len(built)


def _check_ids(item: Any, where: str, ids: Mapping[str, re.Pattern[str]]) -> list[str]:
    if not isinstance(item, Mapping):
        return [f"{where}: expected a mapping"]
    out = []
    for key, pattern in ids.items():
        value = item.get(key)
        if not isinstance(value, str) or not pattern.match(value):
            out.append(f"{where}.{key}: {value!r} does not match {pattern.pattern}")
    account = item.get("accountID")
    if account is not None and not (isinstance(account, str) and ACCOUNT_ID.match(account)):
        out.append(f"{where}.accountID: {account!r} is not 12 digits (quote it in YAML)")
    return out


def _check_server(spec: Any, where: str) -> list[str]:
    out = _check_ids(spec, where, {"sourceServerID": SERVER_ID})
    if not isinstance(spec, Mapping):
        return out
    out += [f"{where}.{k}: unknown key" for k in sorted(set(spec) - SERVER_KEYS)]
    rules: list[tuple[str, Any]] = [
        ("applicationID", lambda v: isinstance(v, str) and APP_ID.match(v)),
        ("state", lambda v: v in state.LIFECYCLE_STATES),
        ("replicationState", lambda v: v in REPLICATION_STATES),
        ("firstBoot", lambda v: v in state.FIRST_BOOT_STATES),
        ("ec2InstanceID", lambda v: isinstance(v, str) and INSTANCE_ID.match(v)),
        ("archived", lambda v: isinstance(v, bool)),
        ("stuck", lambda v: isinstance(v, bool)),
        (
            "slowSeconds",
            lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 3600,
        ),
        ("hostname", lambda v: isinstance(v, str) and 0 < len(v) <= 200),
        ("userProvidedID", lambda v: isinstance(v, str) and 0 < len(v) <= 128),
        ("fqdnForActionFramework", lambda v: isinstance(v, str) and 0 < len(v) <= 255),
        ("tags", lambda v: isinstance(v, Mapping) and all(isinstance(x, str) for x in v.values())),
        ("disks", _disks_ok),
        ("lagDuration", lambda v: isinstance(v, str) and len(v) > 1 and LAG_DURATION.match(v)),
        ("dataReplicationError", _replication_error_ok),
        ("launchFails", lambda v: isinstance(v, bool)),
        ("bootFails", lambda v: isinstance(v, bool)),
        ("stuckJob", lambda v: isinstance(v, bool)),
    ]
    for key, ok in rules:
        value = spec.get(key)
        if value is not None and not ok(value):
            out.append(f"{where}.{key}: invalid value {value!r}")
    if spec.get("postLaunchActions") is not None:
        out += jobs.check_actions(spec["postLaunchActions"], f"{where}.postLaunchActions")
    return out


def _replication_error_ok(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and set(value) <= {"error", "rawError"}
        and value.get("error") in enum_values("DataReplicationErrorString")
        and isinstance(value.get("rawError", ""), str)
    )


def _disks_ok(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(d, Mapping)
        and isinstance(d.get("deviceName"), str)
        and isinstance(d.get("totalStorageBytes"), int)
        and d["totalStorageBytes"] >= 0
        for d in value
    )


def put_wave(store: Store, account_id: str | None, wave_id: str, name: str | None) -> None:
    account = account_id or DEFAULT_ACCOUNT_ID
    now = state.iso(store.wall())
    store.put_wave(
        account_id,
        {
            "waveID": wave_id,
            "arn": f"arn:aws:mgn:{state.REGION}:{account}:wave/{wave_id}",
            "name": name or wave_id,
            "isArchived": False,
            "creationDateTime": now,
            "lastModifiedDateTime": now,
            "tags": {},
        },
    )


def put_app(
    store: Store, account_id: str | None, app_id: str, name: str | None, wave_id: str | None
) -> None:
    existing = store.account(account_id).applications.get(app_id)
    account = account_id or DEFAULT_ACCOUNT_ID
    now = state.iso(store.wall())
    app: dict[str, Any] = {
        "applicationID": app_id,
        "arn": f"arn:aws:mgn:{state.REGION}:{account}:application/{app_id}",
        "name": name or (existing or {}).get("name") or app_id,
        "isArchived": False,
        "creationDateTime": now,
        "lastModifiedDateTime": now,
        "tags": {},
    }
    wave = wave_id or (existing or {}).get("waveID")
    if wave:
        app["waveID"] = wave
    store.put_application(account_id, app)


def _shape_problems(server: dict[str, Any], where: str) -> list[str]:
    # FinalizeCutover's output shape is SourceServer: refuse records MGN could never return.
    found = load_model().output_errors("FinalizeCutover", server)
    return [f"{where}: breaks MGN's SourceServer shape at {name}: {msg}" for name, msg in found[:5]]


def put_server(store: Store, spec: Mapping[str, Any], rng: random.Random) -> None:
    """Build and add one server from a checked spec; FixtureError if it breaks the model."""
    server = build_server(store, spec, rng)
    problems = _shape_problems(server, spec["sourceServerID"])
    if problems:
        raise FixtureError("; ".join(problems))
    _store_server(store, spec, server)


def _store_server(store: Store, spec: Mapping[str, Any], server: dict[str, Any]) -> None:
    account_id = spec.get("accountID")
    app_id = spec.get("applicationID")
    if app_id is not None and app_id not in store.account(account_id).applications:
        put_app(store, account_id, app_id, None, None)
    rec = store.put_server(
        account_id,
        server,
        stuck=bool(spec.get("stuck", False)),
        slow_s=float(spec.get("slowSeconds", 0)),
    )
    actions = spec.get("postLaunchActions")
    rec.actions = None if actions is None else tuple(dict(a) for a in actions)
    rec.launch_fails = bool(spec.get("launchFails", False))
    rec.boot_fails = bool(spec.get("bootFails", False))
    rec.stuck_job = bool(spec.get("stuckJob", False))


def build_server(store: Store, spec: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """The SourceServer record a checked spec describes, details drawn from `rng`."""
    account_id = spec.get("accountID")
    sid = spec["sourceServerID"]
    life = spec.get("state") or "CUTTING_OVER"
    app_id = spec.get("applicationID")
    first_boot = spec.get("firstBoot")
    hostname = spec.get("hostname") or f"host-{sid[-6:]}"
    disks = spec.get("disks") or [{"deviceName": "/dev/xvda", "totalStorageBytes": 100 * GIB}]
    now = store.wall()
    cores = rng.choice((2, 4, 8, 16))
    server = state.new_source_server(
        account_id=account_id or DEFAULT_ACCOUNT_ID,
        server_id=sid,
        hostname=hostname,
        state=life,
        replication_state=spec.get("replicationState")
        or state.DEFAULT_REPLICATION.get(life, "CONTINUOUS"),
        added_ts=now - 86400 * rng.randint(3, 60),
        now_ts=now,
        application_id=app_id,
        first_boot=first_boot,
        ec2_instance_id=spec.get("ec2InstanceID") or (hex_id(rng, "i-") if first_boot else None),
        job_id=hex_id(rng, "mgnjob-") if first_boot else None,
        archived=bool(spec.get("archived", False)),
        disks=disks,
        tags=spec.get("tags") or {"Name": hostname},
        lag_s=rng.randint(1, 20),
        os_name=rng.choice(OS_NAMES),
        cores=cores,
        ram_bytes=cores * 4 * GIB,
    )
    for key in ("userProvidedID", "fqdnForActionFramework"):  # as MGN's import file sets them
        if spec.get(key) is not None:
            server[key] = spec[key]
    info = server["dataReplicationInfo"]
    if "lagDuration" in spec:
        if spec["lagDuration"] is None:
            info.pop("lagDuration", None)
        else:
            info["lagDuration"] = spec["lagDuration"]
    if spec.get("dataReplicationError") is not None:
        info["dataReplicationError"] = dict(spec["dataReplicationError"])
    return server
