"""Tonight's wave from a folder of plans, where another wave's broken file does not stop it.

`plan.load_waves` refuses every file if one is bad: right for `validate`, wrong for the night,
when a typo in next month's wave would silently cancel tonight's (cron mails only stdout). Here
a file that cannot be read is left out when it is not tonight's wave's file, and becomes a loud
warning; the cross-wave checks (a wave declared twice, a server in two waves) still cover every
file that could be read. Errors in tonight's wave's own file still refuse the run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import Diagnostic, PlanError
from orchestrator.plan import PLAN_SUFFIXES, LoadResult, Wave, load_waves, select_wave
from orchestrator.yamlsource import find_yaml_files

# The wave a file declares, read from its text: a file that does not parse may still say it.
_WAVE_LINE = re.compile(r"""^wave:\s*["']?([A-Za-z0-9][A-Za-z0-9._-]{0,63})["']?\s*(#.*)?$""", re.M)


@dataclass(frozen=True)
class Tonight:
    """The wave, the plans' warnings, and the other waves' files that had to be skipped."""

    wave: Wave
    warnings: tuple[Diagnostic, ...]
    skipped: tuple[Diagnostic, ...]  # one per skipped file: what was wrong with it


def declared_wave(path: Path) -> str | None:
    """The wave name a file's text declares, if one can be read at all."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    match = _WAVE_LINE.search(text)
    return match.group(1) if match else None


def load_tonight(paths: Sequence[Path], name: str) -> Tonight:
    """The wave `name` from the plan files under `paths`, other waves' broken files skipped.

    Raises PlanError when tonight's wave cannot be read, is not found, or clashes with a wave
    that could be read (declared twice, a server planned by both).
    """
    try:
        result = load_waves(paths)
    except PlanError as err:
        return _without_broken(paths, name, err)
    return Tonight(select_wave(result, name), result.warnings, ())


def _without_broken(paths: Sequence[Path], name: str, err: PlanError) -> Tonight:
    files, _ = find_yaml_files(paths, PLAN_SUFFIXES)
    by_path = {str(f): f for f in files}
    broken: dict[str, list[Diagnostic]] = {}
    for diagnostic in err.diagnostics:
        if diagnostic.path not in by_path:  # not a file's problem (an argument): refuse
            raise err
        broken.setdefault(diagnostic.path, []).append(diagnostic)
    declared = {path: declared_wave(by_path[path]) for path in broken}
    ours = {p for p, wave in declared.items() if wave is None or wave.casefold() == name.casefold()}
    if ours:  # tonight's file, or one that might be: never guess; its problems first
        first = [d for d in err.diagnostics if d.path in ours]
        raise PlanError(first + [d for d in err.diagnostics if d.path not in ours]) from err
    readable = [f for f in files if str(f) not in broken]
    result: LoadResult = load_waves(readable) if readable else LoadResult(())
    wave = select_wave(result, name)
    skipped = tuple(
        Diagnostic(
            path,
            0,
            0,
            f"plan file of wave {declared[path]} has errors, skipped: "
            + "; ".join(d.message for d in found[:3])
            + (f" (and {len(found) - 3} more)" if len(found) > 3 else ""),
            severity="warning",
        )
        for path, found in broken.items()
    )
    return Tonight(wave, result.warnings, skipped)
