"""Wave plans: YAML files of source servers grouped by applicationID, parsed into frozen types."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Server:
    """One planned source server."""

    source_server_id: str
    application_id: str
    line: int = 0


@dataclass(frozen=True)
class Application:
    """An application: finalized whole or not at all."""

    application_id: str
    name: str | None
    servers: tuple[Server, ...]


@dataclass(frozen=True)
class Wave:
    """One wave: the unit a run locks, finalizes and reports on."""

    name: str
    applications: tuple[Application, ...]
    description: str | None = None
    account_id: str | None = None
    region: str | None = None
    source: Path = Path("-")

    @property
    def servers(self) -> tuple[Server, ...]:
        return tuple(s for app in self.applications for s in app.servers)
