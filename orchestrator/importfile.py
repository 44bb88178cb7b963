"""MGN's import CSV (the file StartImport reads from S3), read offline into located rows.

Every problem of the file is found before anything is sent to MGN: a byte order mark,
semicolons as the separator, missing or unknown columns, bad account IDs and regions, empty
names, a server listed twice in one wave or in two waves. Diagnostics read `file:line:column`,
the column being the CSV field's number (1 is the first column), as a spreadsheet counts them.
Unknown `mgn:launch:*` columns are launch settings the plan does not carry: ignored, with a note.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import Diagnostic, InputError
from orchestrator.validation import (
    ACCOUNT_ID_RE,
    REGION_RE,
    did_you_mean,
    known_regions,
    quote,
)

ACCOUNT = "mgn:account-id"
REGION = "mgn:region"
WAVE = "mgn:wave:name"
WAVE_DESCRIPTION = "mgn:wave:description"
APP = "mgn:app:name"
APP_DESCRIPTION = "mgn:app:description"
USER_ID = "mgn:server:user-provided-id"
FQDN = "mgn:server:fqdn-for-action-framework"
PLATFORM = "mgn:server:platform"
KNOWN_COLUMNS = (
    ACCOUNT,
    REGION,
    WAVE,
    WAVE_DESCRIPTION,
    APP,
    APP_DESCRIPTION,
    USER_ID,
    PLATFORM,
    FQDN,
)
REQUIRED_COLUMNS = (WAVE, APP)
SERVER_COLUMNS = (USER_ID, FQDN)  # at least one names each server
_TAG_COLUMN = re.compile(r"mgn:(wave|app|server):tag:.+")
MAX_CSV_BYTES = 32 * 1024 * 1024
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Cell:
    """One value of the file and where it is written (line of its row, field number)."""

    value: str
    line: int
    col: int


@dataclass(frozen=True)
class Row:
    """One server row: the wave and application it goes in, how MGN knows the server."""

    line: int
    wave: Cell
    application: Cell
    account_id: Cell | None  # None: the column is absent or the cell empty (settings apply)
    region: Cell | None
    user_provided_id: Cell | None
    fqdn: Cell | None
    wave_description: str | None = None

    @property
    def server_key(self) -> Cell:
        """The cell that names the server: the user-provided ID, else the FQDN."""
        found = self.user_provided_id or self.fqdn
        assert found is not None  # a row without either is refused when read
        return found


@dataclass(frozen=True)
class ImportFile:
    """A checked import file: its rows, and notes (ignored columns) that did not stop it."""

    path: Path
    rows: tuple[Row, ...]
    notes: tuple[Diagnostic, ...] = ()


def read_import_file(path: Path) -> ImportFile:
    """Read and check MGN's import CSV at `path`.

    Raises InputError with every problem of the file, each at `file:line:column`.
    """
    where = str(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise InputError([Diagnostic(where, 0, 0, f"cannot read: {exc.strerror or exc}")]) from exc
    if len(data) > MAX_CSV_BYTES:
        raise InputError([Diagnostic(where, 0, 0, f"larger than {MAX_CSV_BYTES:,} bytes")])
    problems: list[Diagnostic] = []
    if data.startswith(BOM):
        message = "the file starts with a byte order mark; save it as UTF-8 without BOM"
        problems.append(Diagnostic(where, 1, 1, message))
        data = data[len(BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError([*problems, Diagnostic(where, line, col, "not UTF-8")]) from exc
    return _Reader(path, problems).read(text)


class _Reader:
    """Walks the rows, collecting every problem rather than stopping at the first."""

    def __init__(self, path: Path, problems: list[Diagnostic]) -> None:
        self.path = path
        self.where = str(path)
        self.problems = problems
        self.notes: list[Diagnostic] = []

    def error(self, line: int, col: int, message: str) -> None:
        self.problems.append(Diagnostic(self.where, line, col, message))

    def read(self, text: str) -> ImportFile:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            self.error(reader.line_num, 0, f"not a CSV file: {exc}")
            raise InputError(self.problems) from exc
        if header is None or not any(cell.strip() for cell in header):
            self.error(1, 1, f"the file is empty: a header row naming {WAVE}, {APP}... comes first")
            raise InputError(self.problems)
        columns = self._header(header)
        rows: list[Row] = []
        line = reader.line_num + 1
        try:
            for fields in reader:
                if any(cell.strip() for cell in fields):
                    row = self._row(columns, fields, line, len(header))
                    if row is not None:
                        rows.append(row)
                line = reader.line_num + 1
        except csv.Error as exc:
            self.error(line, 0, f"malformed CSV: {exc}")
        if not rows and not self.problems:
            self.error(2, 1, "the file has a header but no server rows")
        self._duplicates(rows)
        if self.problems:
            raise InputError(sorted(self.problems, key=lambda d: (d.line, d.col)))
        return ImportFile(self.path, tuple(rows), tuple(self.notes))

    def _header(self, header: Sequence[str]) -> dict[str, int]:
        """Column name -> 0-based index; unknown, duplicate and missing columns reported."""
        if len(header) == 1 and ";" in header[0]:
            message = "the separator is a semicolon; MGN's import file separates with commas"
            self.error(1, 1, message)
            raise InputError(self.problems)
        columns: dict[str, int] = {}
        for index, raw in enumerate(header):
            name = raw.strip()
            col = index + 1
            if name in columns:
                self.error(1, col, f"column {quote(name)} is also column {columns[name] + 1}")
            elif name in KNOWN_COLUMNS or _TAG_COLUMN.fullmatch(name):
                columns[name] = index
            elif name.startswith("mgn:launch:"):
                note = f"column {quote(name)}: launch settings are not part of a plan; ignored"
                self.notes.append(Diagnostic(self.where, 1, col, note, "note"))
            else:
                guess = did_you_mean(name, KNOWN_COLUMNS)
                hint = f"; did you mean {quote(guess)}?" if guess else ""
                self.error(1, col, f"unknown column {quote(name)}{hint}")
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        for name in missing:
            self.error(1, 0, f"missing column {quote(name)}")
        if not any(name in columns for name in SERVER_COLUMNS):
            missing.append(USER_ID)
            self.error(1, 0, f"missing column {quote(USER_ID)} (or {quote(FQDN)}): names servers")
        if missing:  # the rows cannot be read without these
            raise InputError(sorted(self.problems, key=lambda d: (d.line, d.col)))
        return columns

    def _row(
        self, columns: dict[str, int], fields: Sequence[str], line: int, width: int
    ) -> Row | None:
        if len(fields) != width:
            message = f"{len(fields)} fields where the header has {width}"
            self.error(line, min(len(fields), width) + 1, message)
            return None
        before = len(self.problems)

        def cell(name: str) -> Cell | None:
            index = columns.get(name)
            if index is None or not fields[index].strip():
                return None
            return Cell(fields[index].strip(), line, index + 1)

        wave, app = cell(WAVE), cell(APP)
        for name, found in ((WAVE, wave), (APP, app)):
            if found is None:
                self.error(line, columns[name] + 1, f"{name}: empty")
        user_id, fqdn = cell(USER_ID), cell(FQDN)
        if user_id is None and fqdn is None:
            named = [name for name in SERVER_COLUMNS if name in columns]
            self.error(line, columns[named[0]] + 1, f"{' or '.join(named)}: empty")
        account, region = cell(ACCOUNT), cell(REGION)
        if account is not None and not ACCOUNT_ID_RE.fullmatch(account.value):
            message = f"{ACCOUNT}: {quote(account.value)} is not an AWS account ID (12 digits)"
            self.error(line, account.col, message)
        if region is not None and not (
            REGION_RE.fullmatch(region.value) and region.value in known_regions()
        ):
            guess = did_you_mean(region.value, sorted(known_regions()))
            hint = f"; did you mean {quote(guess)}?" if guess else ""
            message = f"{REGION}: {quote(region.value)} is not a region botocore knows{hint}"
            self.error(line, region.col, message)
        if len(self.problems) > before or wave is None or app is None:
            return None
        description = cell(WAVE_DESCRIPTION)
        return Row(
            line,
            wave,
            app,
            account,
            region,
            user_id,
            fqdn,
            description.value if description else None,
        )

    def _duplicates(self, rows: Sequence[Row]) -> None:
        """One server on two rows: in one wave a repeat, in two waves a contradiction."""
        first: dict[tuple[str, str, str], Row] = {}
        for row in rows:
            key = (
                row.account_id.value if row.account_id else "",
                row.region.value if row.region else "",
                row.server_key.value.casefold(),
            )
            other = first.setdefault(key, row)
            if other is row:
                continue
            server = quote(row.server_key.value)
            if other.wave.value == row.wave.value:
                message = f"server {server} is listed twice (first at line {other.line})"
            else:
                message = (
                    f"server {server} is in wave {quote(row.wave.value)} here and in wave "
                    f"{quote(other.wave.value)} at line {other.line}"
                )
                again = (
                    f"server {server} is in wave {quote(other.wave.value)} here and in wave "
                    f"{quote(row.wave.value)} at line {row.line}"
                )
                self.error(other.line, other.server_key.col, again)
            self.error(row.line, row.server_key.col, message)
