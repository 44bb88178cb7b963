"""`export-plan`: turn a wave kept in MGN (waves -> applications -> servers) into a plan file."""

from __future__ import annotations

import re

from orchestrator.errors import InputError
from orchestrator.mgn import MgnClient
from orchestrator.planfile import dump_wave

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_wave_name(name: str) -> str:
    """A plan-safe wave name from MGN's free-text wave name."""
    cleaned = _SAFE_NAME.sub("-", name).strip("-.")[:64]
    return cleaned if cleaned and cleaned[0].isalnum() else f"wave-{cleaned}".strip("-")[:64]


async def export_plan(client: MgnClient, mgn_wave: str, name: str | None = None) -> str:
    """The plan file text for MGN's wave `mgn_wave` (a name or a wave ID).

    Raises InputError when no MGN wave has that name or ID, or when several share the name.
    """
    waves = await client.list_waves()
    matches = [w for w in waves if mgn_wave in (w.get("waveID"), w.get("name"))]
    if not matches:
        known = ", ".join(sorted(f"{w.get('name')} ({w.get('waveID')})" for w in waves)) or "none"
        raise InputError(f"--mgn-wave: no MGN wave named {mgn_wave!r} (MGN has: {known})")
    if len(matches) > 1:
        ids = ", ".join(str(w.get("waveID")) for w in matches)
        raise InputError(f"--mgn-wave: {len(matches)} MGN waves are named {mgn_wave!r}: {ids}")
    wave = matches[0]
    wave_id = str(wave["waveID"])
    apps = await client.list_applications([wave_id])
    app_ids = [str(a["applicationID"]) for a in apps if a.get("applicationID")]
    servers = await client.describe_applications(app_ids) if app_ids else []
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
    if not applications:
        raise InputError(f"--mgn-wave: MGN wave {mgn_wave!r} has no applications with servers")
    return dump_wave(
        name or safe_wave_name(str(wave.get("name") or wave_id)),
        applications=applications,
        description=wave.get("description") or f"exported from MGN wave {wave_id}",
        account_id=client.settings.account_id,
        region=client.settings.region,
    )
