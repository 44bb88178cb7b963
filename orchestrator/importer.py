"""`import`: MGN's import CSV -> one wave plan per wave, every name resolved to an ID through MGN.

The file is checked whole first (`importfile`); only a good file is looked up, one
(account, region) at a time: DescribeSourceServers for the servers (a row matches by
userProvidedID, then by hostname or FQDN), ListApplications for the applications (by name). A
name that matches nothing, or more than one, is an error at the row's line and column. The plans
hold IDs only, so nothing irreversible ever depends on a name lookup at run time. Every read is
retried as a run's reads are (`gateway.read_retrier`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import access
from orchestrator.config import Config, flag_overrides, load_config
from orchestrator.errors import AccountError, Diagnostic, ExitCode, InputError
from orchestrator.exporter import safe_wave_name
from orchestrator.gateway import read_retrier
from orchestrator.importfile import APP, ImportFile, Row, read_import_file
from orchestrator.mgn import MgnClient
from orchestrator.plan import Target
from orchestrator.planfile import dump_wave
from orchestrator.retry import Retrier
from orchestrator.validation import quote
from orchestrator.views import ServerIdentity

Connect = Callable[[Target], AbstractAsyncContextManager[MgnClient]]
_LIST_MAX = 5  # names shown when listing what MGN has instead


@dataclass(frozen=True)
class Inventory:
    """What MGN has in one (account, region), indexed by the names rows use."""

    servers: tuple[ServerIdentity, ...]
    applications: tuple[tuple[str, str], ...]  # (applicationID, name)

    def servers_named(self, row: Row) -> tuple[list[ServerIdentity], str]:
        """The servers the row names, and by which of their names they matched."""
        if row.user_provided_id is not None:
            wanted = row.user_provided_id.value
            found = [s for s in self.servers if s.user_provided_id == wanted]
            if found:
                return found, "userProvidedID"
            folded = wanted.casefold()
            found = [s for s in self.servers if folded in _host_names(s)]
            if found or row.fqdn is None:
                return found, "hostname or FQDN"
        assert row.fqdn is not None
        folded = row.fqdn.value.casefold()
        found = [s for s in self.servers if folded in _host_names(s)]
        if not found:  # an FQDN whose host part is the hostname MGN saw
            short = folded.split(".", 1)[0]
            found = [s for s in self.servers if s.hostname and s.hostname.casefold() == short]
        return found, "FQDN or hostname"

    def applications_named(self, name: str) -> list[str]:
        return [app_id for app_id, app_name in self.applications if app_name == name]


def _host_names(server: ServerIdentity) -> set[str]:
    names = (server.hostname, server.fqdn, server.fqdn_for_action_framework)
    return {n.casefold() for n in names if n}


async def take_inventory(client: MgnClient, reads: Retrier) -> Inventory:
    """MGN's servers and applications in the client's (account, region), each read retried
    under `reads` (`gateway.read_retrier`): one 5xx does not end the import.

    Raises MgnError subclasses (RetryableError once retries are exhausted) or AccountError.
    """
    account = client.settings.account_id
    managed = await reads.call(client.managed_accounts) if account is not None else None
    if managed is not None and account not in managed:  # global view
        raise AccountError(
            "NotManaged", f"account {account} is not among the accounts ListManagedAccounts lists"
        )
    servers, apps = await asyncio.gather(
        reads.call(client.identities), reads.call(client.all_applications)
    )
    named = tuple(
        (str(a["applicationID"]), str(a.get("name") or ""))
        for a in apps
        if isinstance(a.get("applicationID"), str)
    )
    return Inventory(tuple(servers), named)


@dataclass
class _PlannedWave:
    name: str
    first: Row
    description: str | None = None
    # (target, applicationID) -> (name, server IDs), in file order
    applications: dict[tuple[Target, str], tuple[str, list[str]]] = field(default_factory=dict)


def target_of(row: Row, config: Config) -> Target:
    """The row's (account, region): its own cells, else the settings'."""
    account = row.account_id.value if row.account_id else config.account_id
    region = row.region.value if row.region else config.region
    return Target(account, region)


async def resolve(
    imported: ImportFile, config: Config, connect: Connect
) -> tuple[dict[str, str], list[Diagnostic]]:
    """Plan texts by wave name, and warnings: every row's server and application resolved to
    IDs through MGN.

    Raises InputError with every row MGN cannot resolve (none, or several matches; an account
    MGN refuses), each at `file:line:column`; AccountError for missing credentials.
    """
    rows_by_target: dict[Target, list[Row]] = {}
    for row in imported.rows:
        rows_by_target.setdefault(target_of(row, config), []).append(row)
    targets = list(rows_by_target)

    reads = read_retrier(config)  # one limiter and policy for every target's reads

    async def inventory(target: Target) -> Inventory | Diagnostic:
        try:
            async with connect(target) as client:
                return await take_inventory(client, reads)
        except AccountError as err:
            if err.code == "CredentialsError":
                raise
            first = rows_by_target[target][0]
            cell = first.account_id or first.wave
            message = f"account {target.account_id or '(default)'}, region {target.region}"
            return Diagnostic(
                str(imported.path), cell.line, cell.col, f"{message}: MGN refused: {err}"
            )

    problems: list[Diagnostic] = []
    for target in list(targets):  # an account no access mode reaches is not asked at all
        why = access.uncovered(config, target.account_id) if target.account_id else None
        if why is not None:
            cell = rows_by_target[target][0].account_id or rows_by_target[target][0].wave
            problems.append(Diagnostic(str(imported.path), cell.line, cell.col, why))
            targets.remove(target)
    found = await asyncio.gather(*(inventory(t) for t in targets))
    problems += [d for d in found if isinstance(d, Diagnostic)]
    inventories = {
        t: inv for t, inv in zip(targets, found, strict=True) if isinstance(inv, Inventory)
    }
    waves = _plan(imported, config, inventories, problems)
    errors = sorted((d for d in problems if d.severity == "error"), key=lambda d: (d.line, d.col))
    if errors:
        raise InputError(errors)
    warnings = [d for d in problems if d.severity != "error"]
    return {w.name: _text(w, imported.path) for w in waves.values()}, warnings


def _plan(
    imported: ImportFile,
    config: Config,
    inventories: dict[Target, Inventory],
    problems: list[Diagnostic],
) -> dict[str, _PlannedWave]:
    where = str(imported.path)
    waves: dict[str, _PlannedWave] = {}
    seen_apps: set[tuple[Target, str]] = set()
    placed: dict[str, int] = {}  # sourceServerID -> the line that named it
    for row in imported.rows:
        target = target_of(row, config)
        inv = inventories.get(target)
        name = safe_wave_name(row.wave.value)
        wave = waves.setdefault(name.casefold(), _PlannedWave(name, row, row.wave_description))
        if wave.first.wave.value != row.wave.value:
            message = (
                f"wave {quote(row.wave.value)} and wave {quote(wave.first.wave.value)} (line "
                f"{wave.first.line}) both become plan {name}; rename one"
            )
            problems.append(Diagnostic(where, row.wave.line, row.wave.col, message))
        if inv is None:
            continue
        app_ids = inv.applications_named(row.application.value)
        place = f"in account {target.account_id or '(default)'}, region {target.region}"
        if len(app_ids) != 1 and (target, row.application.value) not in seen_apps:
            seen_apps.add((target, row.application.value))
            if app_ids:
                message = f"names {len(app_ids)} MGN applications {place}: {', '.join(app_ids)}"
            else:
                known = _some(name for _, name in inv.applications)
                message = f"no MGN application has this name {place} (MGN has: {known})"
            cell = row.application
            problems.append(
                Diagnostic(where, cell.line, cell.col, f"{APP} {quote(cell.value)}: {message}")
            )
        servers, how = inv.servers_named(row)
        key = row.server_key
        if len(servers) != 1:
            if servers:
                ids = ", ".join(s.source_server_id for s in servers)
                message = f"matches {len(servers)} source servers {place} by {how}: {ids}"
            else:
                message = f"no source server {place} has this userProvidedID, hostname or FQDN"
            problems.append(Diagnostic(where, key.line, key.col, f"{quote(key.value)}: {message}"))
        if len(app_ids) != 1 or len(servers) != 1:
            continue
        app_id, server = app_ids[0], servers[0]
        if server.application_id is not None and server.application_id != app_id:
            note = (
                f"{quote(key.value)} ({server.source_server_id}) is in MGN application "
                f"{server.application_id}, the file puts it in {app_id}: pre-flight will block "
                "it until MGN agrees"
            )
            problems.append(Diagnostic(where, key.line, key.col, note, "warning"))
        _, members = wave.applications.setdefault((target, app_id), (row.application.value, []))
        first = placed.setdefault(server.source_server_id, row.line)
        if first != row.line:  # two names of one server (its user-provided ID and its FQDN)
            message = f"{quote(key.value)} is {server.source_server_id}, named at line {first} too"
            problems.append(Diagnostic(where, key.line, key.col, message))
            continue
        members.append(server.source_server_id)
    return waves


def _some(names: Iterable[str]) -> str:
    names = sorted(set(names))
    shown = ", ".join(quote(n) for n in names[:_LIST_MAX])
    more = f" and {len(names) - _LIST_MAX} more" if len(names) > _LIST_MAX else ""
    return (shown + more) or "none"


def _text(wave: _PlannedWave, source: Path) -> str:
    targets = {target for target, _ in wave.applications}
    accounts = {t.account_id for t in targets}
    regions = {t.region for t in targets}
    account = next(iter(accounts)) if len(accounts) == 1 else None
    region = next(iter(regions)) if len(regions) == 1 else None
    apps = [
        (app_id, name, ids, target.account_id, target.region)
        for (target, app_id), (name, ids) in wave.applications.items()
    ]
    return dump_wave(
        wave.name,
        apps,
        description=wave.description,
        account_id=account,
        region=region,
        header=f"imported from {source.name} (MGN wave {wave.first.wave.value})",
    )


def write_plans(plans: dict[str, str], out_dir: Path, *, force: bool) -> list[Path]:
    """Write each plan as `out_dir/<wave>.yaml`.

    Raises InputError naming every file that exists already, unless `force`; nothing is written
    then.
    """
    paths = {name: out_dir / f"{name}.yaml" for name in plans}
    existing = [p for p in paths.values() if p.exists()]
    if existing and not force:
        raise InputError(
            [Diagnostic(str(p), 0, 0, "exists; --force overwrites it") for p in existing]
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, path in paths.items():
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(plans[name], encoding="utf-8")
        partial.replace(path)
    return list(paths.values())


def _connect(config: Config, source: Path) -> Connect:
    """Each (account, region) reached as `account_access` says (access.route)."""

    @contextlib.asynccontextmanager
    async def connect(target: Target) -> AsyncIterator[MgnClient]:
        route = access.route(config, target, pool=10)
        session = await access.open_session(route, config, f"import-{source.stem}")
        async with MgnClient(route.settings, session=session) as client:
            yield client

    return connect


def cmd_import(ns: argparse.Namespace, connect: Connect | None = None) -> int:
    """`import FILE.csv --out DIR`: one plan per wave of MGN's import file; exit 0 or 2.

    Raises InputError (the file, a name MGN cannot resolve, a plan that exists), AccountError.
    """
    problems: list[Diagnostic] = []
    config: Config | None = None
    imported: ImportFile | None = None
    try:
        config = load_config(getattr(ns, "config", None), os.environ, flag_overrides(vars(ns)))
    except InputError as err:
        problems.extend(err.diagnostics)
    try:
        imported = read_import_file(ns.file)
    except InputError as err:
        problems.extend(err.diagnostics)
    if problems or config is None or imported is None:
        raise InputError(problems)  # nothing is sent to MGN for a bad file
    for note in imported.notes:
        print(str(note), file=sys.stderr)
    plans, warnings = asyncio.run(
        resolve(imported, config, connect or _connect(config, imported.path))
    )
    for warning in warnings:
        print(str(warning), file=sys.stderr)
    for path in write_plans(plans, ns.out, force=ns.force):
        print(path)
    return ExitCode.OK
