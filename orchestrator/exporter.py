"""`export-plan`: turn a wave kept in MGN (waves -> applications -> servers) into a plan file.

Every read is retried under the run's policy (a `Retrier`): one 5xx does not end the export.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from orchestrator.config import Config
from orchestrator.errors import InputError
from orchestrator.mgn import MgnClient
from orchestrator.planfile import dump_wave
from orchestrator.retry import Retrier

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_wave_name(name: str) -> str:
    """A plan-safe wave name from MGN's free-text wave name."""
    cleaned = _SAFE_NAME.sub("-", name).strip("-.")[:64]
    return cleaned if cleaned and cleaned[0].isalnum() else f"wave-{cleaned}".strip("-")[:64]


async def export_plan(
    client: MgnClient, mgn_wave: str, reads: Retrier, name: str | None = None
) -> str:
    """The plan file text for MGN's wave `mgn_wave` (a name or a wave ID), each read retried
    under `reads`.

    Raises InputError when no MGN wave has that name or ID, or when several share the name;
    MgnError (RetryableError once retries are exhausted) or AccountError from the reads.
    """
    waves = await reads.call(client.list_waves)
    matches = _matching(waves, mgn_wave)
    if not matches:
        known = ", ".join(sorted(f"{w.get('name')} ({w.get('waveID')})" for w in waves)) or "none"
        raise InputError(f"--mgn-wave: no MGN wave named {mgn_wave!r} (MGN has: {known})")
    wave = matches[0]
    wave_id = str(wave["waveID"])
    applications = await _applications(client, wave_id, reads)
    if not applications:
        raise InputError(f"--mgn-wave: MGN wave {mgn_wave!r} has no applications with servers")
    return dump_wave(
        name or safe_wave_name(str(wave.get("name") or wave_id)),
        applications=applications,
        description=wave.get("description") or f"exported from MGN wave {wave_id}",
        account_id=client.settings.account_id,
        region=client.settings.region,
    )


def _matching(waves: list[dict[str, Any]], mgn_wave: str) -> list[dict[str, Any]]:
    """The waves named (or with the ID) `mgn_wave`. Raises InputError when several share it."""
    matches = [w for w in waves if mgn_wave in (w.get("waveID"), w.get("name"))]
    if len(matches) > 1:
        ids = ", ".join(str(w.get("waveID")) for w in matches)
        raise InputError(f"--mgn-wave: {len(matches)} MGN waves are named {mgn_wave!r}: {ids}")
    return matches


async def export_all_accounts(
    manager: MgnClient,
    open_client: Callable[[str, str | None], AbstractAsyncContextManager[MgnClient]],
    mgn_wave: str,
    regions: Sequence[str | None],
    reads: Retrier,
    name: str | None = None,
) -> str:
    """One plan of MGN's wave `mgn_wave` as it is in every account ListManagedAccounts lists
    (through `manager`'s global view) and every region given, each application with its own
    accountID and region.

    Raises InputError when no account has the wave, or one has several by that name;
    MgnError (RetryableError once `reads` gives up) or AccountError from the reads.
    """
    accounts = sorted(await reads.call(manager.managed_accounts))
    found: list[tuple[str, str | None, dict[str, Any], list[tuple[Any, ...]]]] = []
    for account in accounts:
        for region in regions:
            async with open_client(account, region) as client:
                matches = _matching(await reads.call(client.list_waves), mgn_wave)
                if matches:
                    apps = await _applications(client, str(matches[0]["waveID"]), reads)
                    found.append((account, region, matches[0], apps))
    applications = [(*app, account, region) for account, region, _, apps in found for app in apps]
    if not applications:
        where = f"{len(accounts)} accounts x {len(regions)} regions"
        raise InputError(f"--mgn-wave: no MGN wave {mgn_wave!r} with servers in {where}")
    first = found[0][2]
    return dump_wave(
        name or safe_wave_name(str(first.get("name") or first["waveID"])),
        applications=applications,
        description=first.get("description")
        or f"exported from MGN wave {mgn_wave!r} in {len(found)} account-regions",
    )


async def _applications(client: MgnClient, wave_id: str, reads: Retrier) -> list[tuple[Any, ...]]:
    """(applicationID, name, server IDs) of the wave's applications that have servers."""
    apps = await reads.call(lambda: client.list_applications([wave_id]))
    app_ids = [str(a["applicationID"]) for a in apps if a.get("applicationID")]
    servers = await reads.call(lambda: client.describe_applications(app_ids)) if app_ids else []
    members: dict[str, list[str]] = {a: [] for a in app_ids}
    for item in servers:
        app_id, server_id = item.get("applicationID"), item.get("sourceServerID")
        if isinstance(app_id, str) and app_id in members and isinstance(server_id, str):
            members[app_id].append(server_id)
    applications = [
        (str(a["applicationID"]), a.get("name"), sorted(members[str(a["applicationID"])]))
        for a in apps
        if a.get("applicationID") and members.get(str(a["applicationID"]))
    ]
    return applications


async def export_everywhere(
    config: Config, mgn_wave: str, name: str | None, regions: Sequence[str]
) -> str:
    """`export-plan --all-accounts`: export_all_accounts with each account reached as
    `account_access` says, the manager being the caller's own account in the first region."""
    from orchestrator import access
    from orchestrator.gateway import read_retrier
    from orchestrator.plan import Target

    where: list[str | None] = list(regions) or [config.region]

    @contextlib.asynccontextmanager
    async def open_client(account: str, region: str | None) -> AsyncIterator[MgnClient]:
        route = access.route(config, Target(account, region), pool=10)
        session = await access.open_session(route, config, f"export-{safe_wave_name(mgn_wave)}")
        async with MgnClient(route.settings, session=session) as client:
            yield client

    manager_route = access.route(config, Target(None, where[0]), pool=10)
    async with MgnClient(manager_route.settings) as manager:
        reads = read_retrier(config)
        return await export_all_accounts(manager, open_client, mgn_wave, where, reads, name)
