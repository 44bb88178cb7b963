"""Wave plans for `simulate --plan`: which servers to seed ready for finalize.

Uses the orchestrator's own loader (`orchestrator.plan.load_waves`) when it exists; until then
a minimal reader of the same files: each YAML file (or every *.yaml / *.yml in a folder) holds
one wave or a `waves:` list of them::

    wave: wave-01                     # or `name:`
    accountID: "222222222222"         # optional
    applications:
      - applicationID: app-0a1b2c3d4e5f6a7b8
        sourceServerIDs: [s-0a1b2c3d4e5f6a7b8, ...]   # or servers: [{sourceServerID: ...}]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.emulator.errors import FixtureError


@dataclass(frozen=True)
class PlannedWave:
    """One wave's servers grouped by application, as `seed_ready` takes them."""

    name: str
    account_id: str | None
    groups: tuple[tuple[str, tuple[str, ...]], ...]


def load_planned_waves(paths: Sequence[Path]) -> list[PlannedWave]:
    """Every wave in the plan files; FixtureError (or the plan loader's error) when invalid."""
    try:
        from orchestrator.plan import load_waves  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return read_plans_minimally(paths)
    result = load_waves(list(paths))
    return [
        PlannedWave(
            name=str(wave.name),
            account_id=getattr(wave, "account_id", None),
            groups=tuple(
                (str(app.application_id), tuple(str(s.source_server_id) for s in app.servers))
                for app in wave.applications
            ),
        )
        for wave in result.waves
    ]


def read_plans_minimally(paths: Sequence[Path]) -> list[PlannedWave]:
    """Every wave in the plan files, read by the minimal reader; FixtureError when invalid."""
    return [w for path in _plan_files(paths) for w in _read_minimal(path)]


def _plan_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        else:
            files.append(path)
    return files


def _read_minimal(path: Path) -> list[PlannedWave]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FixtureError(f"{path}: cannot read plan: {exc}") from exc
    if not isinstance(data, Mapping):
        raise FixtureError(f"{path}: a plan is a mapping with `wave` and `applications`")
    waves = data.get("waves")
    items = waves if isinstance(waves, list) else [data]
    return [_wave(path, item) for item in items]


def _wave(path: Path, data: Any) -> PlannedWave:
    if not isinstance(data, Mapping):
        raise FixtureError(f"{path}: each wave is a mapping")
    name = data.get("wave") or data.get("name")
    if not isinstance(name, str):
        raise FixtureError(f"{path}: a wave needs a `wave:` name")
    groups = []
    for app in data.get("applications") or []:
        if not isinstance(app, Mapping) or not isinstance(app.get("applicationID"), str):
            raise FixtureError(f"{path}: wave {name}: each application needs an applicationID")
        ids = app.get("sourceServerIDs")
        if ids is None:
            ids = [
                s.get("sourceServerID") for s in app.get("servers") or [] if isinstance(s, Mapping)
            ]
        groups.append((app["applicationID"], tuple(str(s) for s in ids or [])))
    account = data.get("accountID") or data.get("account_id")
    return PlannedWave(name, str(account) if account is not None else None, tuple(groups))
