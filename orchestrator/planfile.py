"""Writing plan files: the text `export-plan` prints, which always loads back through plan.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import PlanError
from orchestrator.plan import Wave, read_wave
from orchestrator.yamlsource import parse_yaml


def dump_wave(
    wave: Wave | str,
    applications: Iterable[Sequence[Any]] = (),
    *,
    description: str | None = None,
    account_id: str | None = None,
    region: str | None = None,
    header: str | None = None,
) -> str:
    """A plan file's text for `wave` (a Wave, or a name with its applications as tuples).

    `applications` holds ``(application_id, name_or_None, server_ids[, account_id, region])``;
    an application's account or region is written only where it differs from the wave's.
    `header` becomes leading comment lines. Raises PlanError when the text would not load back
    (bad name, ID, or empty).
    """
    if isinstance(wave, Wave):
        name = wave.name
        description, account_id, region = wave.description, wave.account_id, wave.region
        applications = [
            (a.application_id, a.name, a.server_ids, *wave.target_of(a).as_tuple())
            for a in wave.applications
        ]
    else:
        name = wave
    doc: dict[str, object] = {"wave": name}
    optional = (("description", description), ("accountID", account_id), ("region", region))
    doc.update((k, v) for k, v in optional if v is not None)
    doc["applications"] = [_app_doc(app, account_id, region) for app in applications]
    body = yaml.dump(doc, Dumper=_IndentedDumper, sort_keys=False, allow_unicode=True, width=100)
    comment = "".join(f"# {line}".rstrip() + "\n" for line in (header or "").splitlines())
    text = comment + body
    _, found = read_wave(parse_yaml(text.encode("utf-8"), "<dump_wave>"), Path("<dump_wave>"))
    errors = [d for d in found if d.severity == "error"]
    if errors:
        raise PlanError(errors)
    return text


def _app_doc(
    app: Sequence[Any], wave_account: str | None, wave_region: str | None
) -> dict[str, object]:
    app_id, name, server_ids = app[0], app[1], app[2]
    account_id, region = (app[3], app[4]) if len(app) >= 5 else (None, None)
    doc: dict[str, object] = {"applicationID": app_id}
    if name is not None:
        doc["name"] = name
    if account_id is not None and account_id != wave_account:
        doc["accountID"] = account_id
    if region is not None and region != wave_region:
        doc["region"] = region
    doc["sourceServerIDs"] = list(server_ids)
    return doc


class _IndentedDumper(yaml.SafeDumper):
    """Indents list items under their key, as people write plan files by hand."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # PyYAML writes NEL and the Unicode line separators raw in single quotes, and they come back
    # as line breaks; double quotes escape them.
    style = '"' if any(ch in value for ch in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_IndentedDumper.add_representer(str, _represent_str)
