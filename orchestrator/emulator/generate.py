"""Generated data: N servers over M applications in waves, and servers ready for finalize.

`generate()` is deterministic for its seed: the same arguments give the same IDs, hostnames
(`pay-web-03`), OS, disks, lag and tags. `seed_ready()` seeds wave plans' servers in the state a
FinalizeCutover wants (CUTTING_OVER, replication CONTINUOUS, firstBoot SUCCEEDED).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from orchestrator.emulator import state
from orchestrator.emulator.errors import FixtureError
from orchestrator.emulator.seed import (
    ACCOUNT_ID,
    APP_ID,
    APP_NAMES,
    GIB,
    ROLES,
    SERVER_ID,
    hex_id,
    put_app,
    put_server,
    put_wave,
)
from orchestrator.emulator.store import Store

APPS_PER_WAVE = 10
# Lifecycle states whose servers have a launched cutover (or test) instance.
LAUNCHED_STATES = frozenset({"CUTTING_OVER", "CUTOVER", "TESTING"})


def _state_list(n: int, mix: Mapping[str, float], rng: random.Random) -> list[str]:
    """`n` states in the proportions of `mix` (largest remainder), shuffled by `rng`."""
    unknown = sorted(set(mix) - set(state.LIFECYCLE_STATES))
    if unknown or any(f < 0 for f in mix.values()) or sum(mix.values()) <= 0:
        raise FixtureError(f"invalid state mix {dict(mix)!r}")
    total = sum(mix.values())
    exact = {s: n * f / total for s, f in mix.items()}
    counts = Counter({s: math.floor(x) for s, x in exact.items()})
    by_remainder = sorted(mix, key=lambda s: (-(exact[s] - counts[s]), s))
    for s in by_remainder[: n - sum(counts.values())]:
        counts[s] += 1
    states = [s for s in mix for _ in range(counts[s])]
    rng.shuffle(states)
    return states


def generate(
    store: Store,
    *,
    servers: int,
    applications: int | None = None,
    seed: int = 0,
    states: Mapping[str, float] | None = None,
    first_boot: str = "SUCCEEDED",
    account_id: str | None = None,
    apps_per_wave: int = APPS_PER_WAVE,
) -> list[str]:
    """Seed `servers` servers over `applications` applications (default: one per 10 servers),
    grouped in waves of `apps_per_wave`; returns the server IDs. FixtureError when impossible.
    """
    if applications is None:
        applications = max(1, servers // 10) if servers > 0 else 0
    if servers < 0 or applications < 0 or (servers and not applications):
        raise FixtureError("generate: need servers >= 0 and at least one application for them")
    rng = random.Random(seed)
    mix = states or {"CUTTING_OVER": 1.0}
    life_states = _state_list(servers, mix, rng)
    app_ids = [hex_id(rng, "app-") for _ in range(applications)]
    app_names = []
    for i in range(applications):
        name, prefix = APP_NAMES[i % len(APP_NAMES)]
        series = i // len(APP_NAMES)
        app_names.append((f"{name}-{series + 1}" if series else name, f"{prefix}{series or ''}"))
    for w in range(math.ceil(applications / apps_per_wave)):
        wave_id = hex_id(rng, "wave-")
        put_wave(store, account_id, wave_id, f"wave-{w + 1:02d}")
        for i in range(w * apps_per_wave, min(applications, (w + 1) * apps_per_wave)):
            put_app(store, account_id, app_ids[i], app_names[i][0], wave_id)
    per_role: Counter[tuple[int, str]] = Counter()
    ids = []
    for i, life in enumerate(life_states):
        app_index = i * applications // servers
        role = ROLES[rng.randrange(len(ROLES))]
        per_role[(app_index, role)] += 1
        name, prefix = app_names[app_index]
        hostname = f"{prefix}-{role}-{per_role[(app_index, role)]:02d}"
        sid = hex_id(rng, "s-")
        disks = [{"deviceName": "/dev/xvda", "totalStorageBytes": rng.choice((50, 100, 200)) * GIB}]
        disks += [
            {
                "deviceName": f"/dev/xvd{chr(98 + d)}",
                "totalStorageBytes": rng.randint(1, 20) * 100 * GIB,
            }
            for d in range(rng.randrange(3))
        ]
        spec: dict[str, Any] = {
            "sourceServerID": sid,
            "applicationID": app_ids[app_index],
            "hostname": hostname,
            "state": life,
            "firstBoot": first_boot if life in LAUNCHED_STATES else None,
            "accountID": account_id,
            "disks": disks,
            "tags": {"Name": hostname, "Application": name, "Environment": "production"},
        }
        put_server(store, spec, random.Random(f"{seed}:{sid}"))
        ids.append(sid)
    return ids


def _derived_id(prefix: str, text: str) -> str:
    return prefix + hashlib.sha256(text.encode()).hexdigest()[:17]


def seed_ready(
    store: Store,
    groups: Iterable[tuple[str, Sequence[str]]],
    account_id: str | None = None,
    wave_name: str | None = None,
    life_state: str = "CUTTING_OVER",
) -> int:
    """Seed each (applicationID, [sourceServerIDs]) ready for FinalizeCutover (or, with
    `life_state` READY_FOR_CUTOVER, ready for StartCutover); returns the count.

    With `wave_name`, the applications join an MGN wave of that name. FixtureError on bad IDs.
    """
    pairs = [(app, list(sids)) for app, sids in groups]
    bad = [a for a, _ in pairs if not APP_ID.match(a)]
    bad += [s for _, sids in pairs for s in sids if not SERVER_ID.match(s)]
    if account_id is not None and not ACCOUNT_ID.match(account_id):
        bad.append(account_id)
    if bad:
        raise FixtureError(f"seed_ready: invalid IDs: {', '.join(map(repr, bad[:20]))}")
    wave_id = None
    if wave_name is not None:
        wave_id = _derived_id("wave-", f"{account_id}:{wave_name}")
        put_wave(store, account_id, wave_id, wave_name)
    count = 0
    for app_id, sids in pairs:
        put_app(store, account_id, app_id, None, wave_id)
        for sid in sids:
            spec = {
                "sourceServerID": sid,
                "applicationID": app_id,
                "state": life_state,
                "replicationState": "CONTINUOUS",
                "firstBoot": "SUCCEEDED" if life_state in LAUNCHED_STATES else None,
                "accountID": account_id,
            }
            put_server(store, spec, random.Random(sid))
            count += 1
    return count
