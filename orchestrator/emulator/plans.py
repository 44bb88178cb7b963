"""Wave plans for `simulate --plan`: which servers to seed ready for finalize.

Plans are read by the orchestrator's own loader (`orchestrator.plan.load_waves`), so a rehearsal
seeds exactly the servers a run would finalize; an invalid plan raises its PlanError (exit 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.plan import load_waves


@dataclass(frozen=True)
class PlannedWave:
    """One wave's servers grouped by application, as `seed_ready` takes them."""

    name: str
    account_id: str | None
    groups: tuple[tuple[str, tuple[str, ...]], ...]


def load_planned_waves(paths: Sequence[Path]) -> list[PlannedWave]:
    """Every wave in the plan files.

    Raises PlanError, with every problem of every file, when a plan is invalid.
    """
    return [
        PlannedWave(
            name=wave.name,
            account_id=wave.account_id,
            groups=tuple((app.application_id, app.server_ids) for app in wave.applications),
        )
        for wave in load_waves(list(paths)).waves
    ]
