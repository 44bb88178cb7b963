"""Wave plans: YAML files of source servers grouped by applicationID, parsed into frozen types.

One file declares one wave:

    wave: wave-01
    description: Payments stack          # optional
    accountID: "111122223333"            # optional: the default of every application
    region: us-east-1                    # optional: the default of every application
    applications:
      - applicationID: app-0a1b2c3d4e5f6a7b8
        name: payments                   # optional
        accountID: "444455556666"        # optional: this application's own account
        region: eu-west-1                # optional: and region
        sourceServerIDs: [s-0a1b2c3d4e5f6a7b8]

Each application lands in one target, (accountID, region): its own values, else the wave's,
else (at run time) the settings'. A wave may span several targets (`Wave.by_target`).

`load_waves` reads files and folders and reports every problem of every file at once;
`dump_wave` writes a file that loads back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import Diagnostic, PlanError
from orchestrator.validation import (
    ACCOUNT_ID_RE,
    APPLICATION_ID_RE,
    REGION_RE,
    SOURCE_SERVER_ID_RE,
    Sink,
    check_keys,
    describe,
    did_you_mean,
    is_null,
    known_regions,
    matching_string,
    optional_string,
    quote,
)
from orchestrator.yamlsource import (
    Document,
    Map,
    Node,
    Scalar,
    Seq,
    find_yaml_files,
    read_yaml,
)

PLAN_SUFFIXES = (".yaml", ".yml")
WAVE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
WAVE_KEYS = ("wave", "description", "accountID", "region", "applications")
APPLICATION_KEYS = ("applicationID", "name", "accountID", "region", "sourceServerIDs")
# MGN quotas: beyond these a wave cannot run as planned, but the file is still well formed.
MAX_SERVERS_PER_WAVE = 4000  # non-archived source servers per account
MAX_APPLICATIONS_PER_WAVE = 1000
MAX_SERVERS_PER_APPLICATION = 200
WAVE_NAME_RULE = '1-64 letters, digits, ".", "_" or "-", starting with a letter or digit'
APP_ID = "an MGN application ID (app- and 17 letters or digits)"
SERVER_ID = "a source server ID (s- and 17 letters or digits)"


@dataclass(frozen=True, order=True)
class Target:
    """Where an application's servers live: an (account, region); None leaves it to settings."""

    account_id: str | None = None
    region: str | None = None

    def as_tuple(self) -> tuple[str | None, str | None]:
        return (self.account_id, self.region)

    def __str__(self) -> str:
        return f"{self.account_id or '(default account)'}/{self.region or '(default region)'}"


@dataclass(frozen=True)
class Server:
    """One planned source server."""

    source_server_id: str
    application_id: str
    line: int = 0
    col: int = field(default=0, compare=False)  # for messages only


@dataclass(frozen=True)
class Application:
    """An application: finalized whole or not at all."""

    application_id: str
    name: str | None
    servers: tuple[Server, ...]
    line: int = 0
    # The application's own accountID and region (None: the wave's; `Wave.target_of`).
    account_id: str | None = None
    region: str | None = None
    account_id_at: tuple[int, int] = field(default=(0, 0), compare=False)  # for messages
    region_at: tuple[int, int] = field(default=(0, 0), compare=False)

    @property
    def server_ids(self) -> tuple[str, ...]:
        return tuple(s.source_server_id for s in self.servers)


@dataclass(frozen=True)
class Wave:
    """One wave: the unit a run locks, finalizes and reports on."""

    name: str
    applications: tuple[Application, ...]
    description: str | None = None
    account_id: str | None = None
    region: str | None = None
    source: Path = Path("-")
    line: int = 0  # where the name is written, for messages
    col: int = 0
    account_id_at: tuple[int, int] = (0, 0)  # (line, col) of accountID, for messages
    region_at: tuple[int, int] = (0, 0)

    @property
    def servers(self) -> tuple[Server, ...]:
        return tuple(s for app in self.applications for s in app.servers)

    @property
    def server_ids(self) -> tuple[str, ...]:
        return tuple(s.source_server_id for s in self.servers)

    def target_of(self, app: Application) -> Target:
        """The application's (account, region): its own values, else the wave's."""
        return Target(app.account_id or self.account_id, app.region or self.region)

    @property
    def targets(self) -> tuple[Target, ...]:
        """The wave's distinct (account, region) targets, in plan order."""
        return tuple(dict.fromkeys(self.target_of(app) for app in self.applications))

    def by_target(self) -> dict[Target, tuple[Application, ...]]:
        """The wave's applications grouped by (account, region), in plan order."""
        groups: dict[Target, list[Application]] = {}
        for app in self.applications:
            groups.setdefault(self.target_of(app), []).append(app)
        return {target: tuple(apps) for target, apps in groups.items()}

    def application_of(self, server_id: str) -> Application | None:
        """The planned application holding `server_id`, or None."""
        for app in self.applications:
            if server_id in app.server_ids:
                return app
        return None


@dataclass(frozen=True)
class LoadResult:
    """The waves of every plan file loaded, and warnings that did not stop the load."""

    waves: tuple[Wave, ...]
    warnings: tuple[Diagnostic, ...] = ()


def load_waves(paths: Sequence[Path]) -> LoadResult:
    """Load every plan file named, or found (``*.yaml``, ``*.yml``) in the folders named.

    Raises PlanError carrying every error of every file: unreadable or malformed files, bad keys,
    types or IDs, duplicates, a wave name declared twice and a source server named by two waves.
    Raises nothing else.
    """
    files, diagnostics = find_yaml_files(paths, PLAN_SUFFIXES)
    waves: list[Wave] = []
    for path in files:
        wave, found = read_wave(read_yaml(path), path)
        diagnostics.extend(found)
        if wave is not None:
            waves.append(wave)
    diagnostics.extend(_duplicate_names(waves))
    diagnostics.extend(_servers_in_two_waves(waves))
    errors = [d for d in diagnostics if d.severity == "error"]
    if errors:
        raise PlanError(errors)
    return LoadResult(tuple(waves), tuple(d for d in diagnostics if d.severity != "error"))


def select_wave(waves: LoadResult | Iterable[Wave], name: str) -> Wave:
    """The wave called `name`.

    Raises PlanError listing the waves that exist when none is called `name`.
    """
    candidates = waves.waves if isinstance(waves, LoadResult) else tuple(waves)
    for wave in candidates:
        if wave.name == name:
            return wave
    names = ", ".join(w.name for w in candidates) or "none"
    message = f"no wave named {quote(name)} in the plan files (waves found: {names})"
    raise PlanError([Diagnostic("--wave", 0, 0, message)])


def _duplicate_names(waves: Sequence[Wave]) -> list[Diagnostic]:
    """A wave name declared twice, or twice up to case (report folders would collide)."""
    diagnostics: list[Diagnostic] = []
    first: dict[str, Wave] = {}
    for wave in waves:
        other = first.setdefault(wave.name.casefold(), wave)
        if other is wave:
            continue
        where = f"{other.source}:{other.line}:{other.col}"
        if other.name == wave.name:
            message = f"wave: wave {wave.name} is also declared in {where}"
        else:
            message = (
                f"wave: wave {wave.name} differs only in case from wave {other.name} in "
                f"{where}; their report folders would collide"
            )
        diagnostics.append(Diagnostic(str(wave.source), wave.line, wave.col, message))
    return diagnostics


def _servers_in_two_waves(waves: Sequence[Wave]) -> list[Diagnostic]:
    """A source server named by two waves: each occurrence is reported, naming the other.

    Two waves would each finalize it; whichever runs second meets a server it did not plan.
    """
    seen: dict[str, list[tuple[Wave, Server]]] = {}
    for wave in waves:
        for srv in wave.servers:
            seen.setdefault(srv.source_server_id, []).append((wave, srv))
    diagnostics: list[Diagnostic] = []
    for server_id, places in seen.items():
        # A wave declared twice is refused already: its copies are not "two waves".
        if len({wave.name.casefold() for wave, _ in places}) < 2:
            continue
        for wave, srv in places:
            others = "; ".join(
                f"{other.source}:{other_srv.line}:{other_srv.col} in wave {other.name}"
                for other, other_srv in places
                if other.name.casefold() != wave.name.casefold()
            )
            message = f"source server {server_id} of wave {wave.name} is also planned at {others}"
            diagnostics.append(Diagnostic(str(wave.source), srv.line, srv.col, message))
    return sorted(diagnostics, key=lambda d: (d.path, d.line, d.col))


def read_wave(doc: Document, path: Path) -> tuple[Wave | None, list[Diagnostic]]:
    """Check one parsed file against the plan schema: the Wave if it is valid, and diagnostics."""
    sink = Sink(doc.path)
    sink.extend(doc.diagnostics)
    wave = _WaveReader(sink, path).read(doc.root)
    # File order; whole-file problems (line 0) last.
    found = sorted(sink.diagnostics, key=lambda d: (d.line <= 0, d.line, d.col))
    return (wave if not sink.has_errors else None), found


class _WaveReader:
    """Walks one file's nodes, collecting every problem rather than stopping at the first."""

    def __init__(self, sink: Sink, path: Path) -> None:
        self.sink = sink
        self.path = path
        self.app_lines: dict[str, int] = {}
        self.server_seen: dict[str, tuple[int, str]] = {}

    def read(self, root: Node | None) -> Wave | None:
        if root is None:
            if not self.sink.has_errors:
                self.sink.error(1, 1, "file is empty: a plan needs the keys wave and applications")
            return None
        if not isinstance(root, Map):
            expected = "a plan file must be a mapping with the keys wave and applications"
            self.sink.at(root, f"{expected}, got {describe(root)}")
            return None
        check_keys(self.sink, root, WAVE_KEYS, ("wave", "applications"))
        name_node = root.get("wave")
        name = self._wave_name(name_node)
        description = optional_string(self.sink, root, "description")
        account_node, region_node = root.get("accountID"), root.get("region")
        account_id = self._account_id(account_node)
        region = self._region(region_node)
        apps = self._applications(root.get("applications"), name)
        if name is None or name_node is None or self.sink.has_errors:
            return None
        wave = Wave(
            name,
            apps,
            description,
            account_id,
            region,
            self.path,
            name_node.line,
            name_node.col,
            account_id_at=_at(account_node),
            region_at=_at(region_node),
        )
        self._quota_warnings(wave)
        return wave

    def _quota_warnings(self, wave: Wave) -> None:
        count = len(wave.servers)
        if count > MAX_SERVERS_PER_WAVE:
            limit = f"MGN allows {MAX_SERVERS_PER_WAVE:,} non-archived per account"
            self._warn(wave, f"wave {wave.name} has {count:,} source servers; {limit}")
        if len(wave.applications) > MAX_APPLICATIONS_PER_WAVE:
            limit = f"MGN allows {MAX_APPLICATIONS_PER_WAVE:,} per wave"
            self._warn(
                wave, f"wave {wave.name} has {len(wave.applications):,} applications; {limit}"
            )

    def _warn(self, at: Node | Wave, message: str) -> None:
        self.sink.warning(at.line, at.col, message)

    def _wave_name(self, node: Node | None) -> str | None:
        # The pattern also keeps out "." and "..": the name becomes a report folder.
        what = f"a safe wave name ({WAVE_NAME_RULE}; it names the report folder)"
        return None if node is None else self._match(node, "wave", WAVE_NAME_RE, what)

    def _account_id(self, node: Node | None, field: str = "accountID") -> str | None:
        if node is None or is_null(node):
            return None
        if isinstance(node, Scalar) and isinstance(node.value, int | float):
            hint = f'; write accountID: "{node.text}"' if ACCOUNT_ID_RE.fullmatch(node.text) else ""
            expected = f"{field}: expected a quoted string of 12 digits"
            self.sink.at(node, f"{expected}, got {describe(node)} (a leading 0 is lost){hint}")
            return None
        return self._match(node, field, ACCOUNT_ID_RE, "an AWS account ID (12 digits)")

    def _region(self, node: Node | None, field: str = "region") -> str | None:
        if node is None or is_null(node):
            return None
        region = self._match(node, field, REGION_RE, "an AWS region (like us-east-1)")
        if region is not None and region not in known_regions():
            guess = did_you_mean(region, sorted(known_regions()))
            hint = f"; did you mean {quote(guess)}?" if guess else ""
            self.sink.at(node, f"{field}: {quote(region)} is not a region botocore knows{hint}")
            return None
        return region

    def _match(
        self, node: Node, field: str, pattern: re.Pattern[str], what: str, expected: str = ""
    ) -> str | None:
        return matching_string(self.sink, node, field, pattern, what, expected)

    def _applications(self, node: Node | None, wave: str | None) -> tuple[Application, ...]:
        if node is None:
            return ()
        if not isinstance(node, Seq):
            self.sink.at(
                node, f"applications: expected a list of applications, got {describe(node)}"
            )
            return ()
        if not node.items:
            self.sink.at(node, f"applications: wave {quote(wave or '')} has no applications")
        apps = (self._application(item, f"applications[{i}]") for i, item in enumerate(node.items))
        return tuple(app for app in apps if app is not None)

    def _application(self, node: Node, where: str) -> Application | None:
        if self.sink.full:
            return None
        if not isinstance(node, Map):
            self.sink.at(
                node,
                f"{where}: expected a mapping with the keys applicationID and "
                f"sourceServerIDs, got {describe(node)}",
            )
            return None
        check_keys(self.sink, node, APPLICATION_KEYS, ("applicationID", "sourceServerIDs"), where)
        app_id = self._application_id(node.get("applicationID"), where)
        name = optional_string(self.sink, node, "name", where)
        account_node, region_node = node.get("accountID"), node.get("region")
        account_id = self._account_id(account_node, f"{where}.accountID")
        region = self._region(region_node, f"{where}.region")
        servers_node = node.get("sourceServerIDs")
        servers = self._servers(servers_node, f"{where}.sourceServerIDs", app_id)
        if app_id is None:
            return None
        if servers_node is not None and len(servers) > MAX_SERVERS_PER_APPLICATION:
            limit = f"MGN allows {MAX_SERVERS_PER_APPLICATION} per application"
            self._warn(servers_node, f"application {app_id} has {len(servers)} servers; {limit}")
        return Application(
            app_id,
            name,
            servers,
            node.line,
            account_id=account_id,
            region=region,
            account_id_at=_at(account_node),
            region_at=_at(region_node),
        )

    def _application_id(self, node: Node | None, where: str) -> str | None:
        field = f"{where}.applicationID"
        app_id = (
            None
            if node is None
            else self._match(node, field, APPLICATION_ID_RE, APP_ID, "an application ID")
        )
        if node is None or app_id is None:
            return None
        first = self.app_lines.get(app_id)
        if first is not None:
            self.sink.at(
                node, f"{field}: application {app_id} is listed twice (first at line {first})"
            )
        self.app_lines.setdefault(app_id, node.line)
        return app_id

    def _servers(self, node: Node | None, field: str, app_id: str | None) -> tuple[Server, ...]:
        if node is None:
            return ()
        if not isinstance(node, Seq):
            self.sink.at(
                node, f"{field}: expected a list of source server IDs, got {describe(node)}"
            )
            return ()
        if not node.items:
            self.sink.at(node, f"{field}: application {app_id or '?'} has no source servers")
        servers: list[Server] = []
        for i, item in enumerate(node.items):
            server_id = self._server_id(item, f"{field}[{i}]", app_id)
            if server_id is not None:
                servers.append(Server(server_id, app_id or "", item.line, item.col))
        return tuple(servers)

    def _server_id(self, node: Node, field: str, app_id: str | None) -> str | None:
        server_id = self._match(node, field, SOURCE_SERVER_ID_RE, SERVER_ID, "a source server ID")
        if server_id is None:
            return None
        first = self.server_seen.get(server_id)
        if first is not None:
            where = f"first at line {first[0]}, in application {first[1]}"
            self.sink.at(node, f"{field}: source server {server_id} is listed twice ({where})")
            return None
        self.server_seen[server_id] = (node.line, app_id or "?")
        return server_id


def _at(node: Node | None) -> tuple[int, int]:
    return (0, 0) if node is None else (node.line, node.col)
