"""Read one YAML file into located nodes: every mapping, list and scalar keeps its line and column.

Only plain data gets through. The reader works on the parser's event stream and builds its own
nodes, so YAML's composer never runs: an anchor or alias stops the file at the first one and
nothing is ever expanded ("billion laughs" costs one event). Also refused: files over a size cap
(checked with stat before reading), bytes that are not UTF-8, tags other than YAML's standard
scalar and collection tags, duplicate keys, non-scalar keys, more than one document, nesting
deeper than MAX_DEPTH and more than MAX_NODES nodes. Problems come back as diagnostics in the
Document; nothing here raises on bad input.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from orchestrator.errors import Diagnostic

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 250_000
MAX_DIAGNOSTICS = 100

# libyaml when present: several times faster than the pure-Python parser.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STD = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_STD}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_SEQ_TAGS = {None, "!", f"{_STD}seq"}
_MAP_TAGS = {None, "!", f"{_STD}map"}
_CONSTRUCTOR = SafeConstructor()
_RESOLVER: Any = Resolver()  # its methods are untyped
_CONSTRUCTORS: dict[str, Callable[[yaml.ScalarNode], object]] = {
    f"{_STD}null": _CONSTRUCTOR.construct_yaml_null,
    f"{_STD}bool": _CONSTRUCTOR.construct_yaml_bool,
    f"{_STD}int": _CONSTRUCTOR.construct_yaml_int,
    f"{_STD}float": _CONSTRUCTOR.construct_yaml_float,
    f"{_STD}timestamp": _CONSTRUCTOR.construct_yaml_timestamp,
}


@dataclass(frozen=True, slots=True)
class Scalar:
    """A scalar: its Python value (str, int, float, bool, None or date), as written, and where."""

    value: object
    text: str
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Seq:
    """A list of nodes."""

    items: tuple[Node, ...]
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Map:
    """A mapping with string keys, in file order, without duplicates."""

    items: tuple[tuple[Scalar, Node], ...]
    line: int
    col: int

    def get(self, key: str) -> Node | None:
        for k, v in self.items:
            if k.text == key:
                return v
        return None


Node = Scalar | Seq | Map


@dataclass(frozen=True)
class Document:
    """One file's content (`root` is None when empty or unreadable) and what was wrong with it."""

    path: str
    root: Node | None
    diagnostics: tuple[Diagnostic, ...]


class _Stop(Exception):
    """Internal: a problem after which the rest of the file cannot be trusted."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line, self.col, self.message = line, col, message


def read_yaml(path: Path, *, max_bytes: int = MAX_FILE_BYTES) -> Document:
    """Read and parse `path`, refusing it before reading when it is over `max_bytes`.

    Never raises for a bad path or bad content: every problem is a diagnostic.
    """
    path = Path(path)  # callers may hand over a plain string
    name = str(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            return _refused(name, "is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            return _refused(name, "is not a regular file")
        if info.st_size > max_bytes:
            return _refused(name, _too_big(info.st_size, max_bytes))
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)  # the file may have grown since stat
    except FileNotFoundError:
        return _refused(name, "no such file or directory")
    except (OSError, ValueError) as exc:
        return _refused(name, f"cannot read: {getattr(exc, 'strerror', None) or exc}")
    if len(data) > max_bytes:
        return _refused(name, _too_big(len(data), max_bytes))
    return parse_yaml(data, name)


def find_yaml_files(
    paths: Sequence[Path], suffixes: Sequence[str]
) -> tuple[list[Path], list[Diagnostic]]:
    """The files named, and those with one of `suffixes` in the folders named, once each.

    A folder contributes its files sorted by name, skipping hidden ones. Never raises: a folder
    that cannot be listed or holds no such file is a diagnostic; a missing file is left for
    read_yaml to report.
    """
    diagnostics: list[Diagnostic] = []
    if not paths:
        diagnostics.append(Diagnostic("-", 0, 0, "no file or folder given"))
    files: list[Path] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        for file in _expand(path, suffixes, diagnostics):
            key = _identity(file)
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files, diagnostics


def _expand(path: Path, suffixes: Sequence[str], diagnostics: list[Diagnostic]) -> list[Path]:
    try:
        if not path.is_dir():
            return [path]
        found = [
            p
            for p in sorted(path.iterdir(), key=lambda p: p.name)
            if p.suffix.lower() in suffixes and not p.name.startswith(".") and p.is_file()
        ]
    except (OSError, ValueError) as exc:
        message = f"cannot list folder: {getattr(exc, 'strerror', None) or exc}"
        diagnostics.append(Diagnostic(str(path), 0, 0, message))
        return []
    if not found:
        patterns = ", ".join(f"*{s}" for s in suffixes)
        diagnostics.append(Diagnostic(str(path), 0, 0, f"no files ({patterns}) in this folder"))
    return found


def _identity(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):
        return path.absolute()


def parse_yaml(data: bytes, path: str) -> Document:
    """Parse UTF-8 `data` (named `path` in diagnostics) into located nodes.

    Never raises for bad content: every problem is a diagnostic.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data, exc.start)
        problem = f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} is invalid"
        return Document(path, None, (Diagnostic(path, line, col, problem),))
    text = text.removeprefix("\ufeff")  # so columns on line 1 match what editors show
    builder = _Builder(path)
    try:
        _parse_into(builder, text)
    except _Stop as stop:
        builder.add(stop.line, stop.col, stop.message)
        builder.root = None
    except yaml.reader.ReaderError as exc:
        builder.add(*_reader_error_location(exc, text), f"invalid YAML: {_reader_problem(exc)}")
        builder.root = None
    except yaml.MarkedYAMLError as exc:
        builder.add(*_mark_of(exc), f"invalid YAML: {_marked_problem(exc)}")
        builder.root = None
    except yaml.YAMLError as exc:
        builder.add(1, 1, f"invalid YAML: {exc}")
        builder.root = None
    return Document(path, builder.root, tuple(builder.diagnostics))


def _parse_into(builder: _Builder, text: str) -> None:
    loader = _Loader(text)  # the pure-Python reader may already refuse the text here
    try:
        builder.run(_events(loader))
    finally:
        loader.dispose()


def _events(loader: Any) -> Iterator[yaml.Event]:
    while True:
        event = loader.get_event()
        yield event
        if isinstance(event, yaml.StreamEndEvent):
            return


@dataclass(slots=True)
class _Frame:
    is_map: bool
    line: int
    col: int
    items: list[Any] = field(default_factory=list)
    key: Scalar | None = None
    skip_value: bool = False
    seen: dict[str, int] = field(default_factory=dict)


class _Builder:
    """Turns parser events into nodes, refusing what a plain-data file has no use for."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.diagnostics: list[Diagnostic] = []
        self.root: Node | None = None
        self.stack: list[_Frame] = []
        self.nodes = 0
        self.documents = 0

    def add(self, line: int, col: int, message: str) -> None:
        self.diagnostics.append(Diagnostic(self.path, line, col, message))

    def run(self, events: Iterator[yaml.Event]) -> None:
        for event in events:
            mark = event.start_mark
            line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
            if isinstance(event, yaml.AliasEvent):
                raise _Stop(line, col, _anchor_message("alias", f"*{event.anchor}"))
            if isinstance(event, yaml.NodeEvent):
                self._check_node_event(event, line, col)
            if isinstance(event, yaml.ScalarEvent):
                self._attach(self._scalar(event, line, col))
            elif isinstance(event, yaml.CollectionStartEvent):
                if len(self.stack) >= MAX_DEPTH:
                    raise _Stop(line, col, f"nested deeper than {MAX_DEPTH} levels")
                self.stack.append(_Frame(isinstance(event, yaml.MappingStartEvent), line, col))
            elif isinstance(event, yaml.CollectionEndEvent):
                self._attach(self._close(self.stack.pop()))
            elif isinstance(event, yaml.DocumentStartEvent):
                self.documents += 1
                if self.documents > 1:
                    raise _Stop(line, col, "more than one YAML document; use one per file")

    def _check_node_event(self, event: yaml.NodeEvent, line: int, col: int) -> None:
        if event.anchor is not None:
            raise _Stop(line, col, _anchor_message("anchor", f"&{event.anchor}"))
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Stop(line, col, f"more than {MAX_NODES:,} values: too large to be plain data")
        tag: str | None = getattr(event, "tag", None)  # not declared on NodeEvent
        if isinstance(event, yaml.ScalarEvent):
            allowed = tag is None or tag == "!" or tag in _SCALAR_TAGS
        else:
            allowed = tag in (_MAP_TAGS if isinstance(event, yaml.MappingStartEvent) else _SEQ_TAGS)
        if not allowed:
            shown = str(tag).replace(_STD, "!!")
            raise _Stop(line, col, f"YAML tag {_short(shown)} is not allowed: plain data only")

    def _scalar(self, event: yaml.ScalarEvent, line: int, col: int) -> Scalar:
        text = event.value
        tag = event.tag
        if tag is None or tag == "!":
            tag = _RESOLVER.resolve(yaml.ScalarNode, text, event.implicit)
        construct = _CONSTRUCTORS.get(tag)
        if construct is None:  # strings, and YAML 1.1 oddities such as "<<" or "="
            return Scalar(text, text, line, col)
        try:
            return Scalar(construct(yaml.ScalarNode(tag, text)), text, line, col)
        except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError):
            self._error(line, col, f"cannot read {_short(text)} as {tag.replace(_STD, '!!')}")
            return Scalar(text, text, line, col)

    def _attach(self, node: Node) -> None:
        if not self.stack:
            self.root = node
            return
        frame = self.stack[-1]
        if not frame.is_map:
            frame.items.append(node)
        elif frame.key is None and not frame.skip_value:
            self._take_key(frame, node)
        else:
            if not frame.skip_value and frame.key is not None:
                frame.items.append((frame.key, node))
            frame.key, frame.skip_value = None, False

    def _take_key(self, frame: _Frame, node: Node) -> None:
        if not isinstance(node, Scalar):
            self._error(node.line, node.col, "mapping keys must be plain strings")
            frame.skip_value = True
        elif node.text in frame.seen:
            first = frame.seen[node.text]
            self._error(
                node.line, node.col, f"duplicate key {_short(node.text)} (first at line {first})"
            )
            frame.skip_value = True
        else:
            frame.seen[node.text] = node.line
            frame.key = node

    def _close(self, frame: _Frame) -> Node:
        if frame.is_map:
            return Map(tuple(frame.items), frame.line, frame.col)
        return Seq(tuple(frame.items), frame.line, frame.col)

    def _error(self, line: int, col: int, message: str) -> None:
        self.add(line, col, message)
        if len(self.diagnostics) >= MAX_DIAGNOSTICS:
            raise _Stop(line, col, "too many errors; stopped reading this file")


def _refused(path: str, message: str) -> Document:
    return Document(path, None, (Diagnostic(path, 0, 0, message),))


def _too_big(size: int, max_bytes: int) -> str:
    return f"file is {size:,} bytes, over the {max_bytes:,}-byte limit"


def _short(text: str) -> str:
    cut = text if len(text) <= 60 else text[:60] + "..."
    return json.dumps(cut, ensure_ascii=False)


def _anchor_message(kind: str, name: str) -> str:
    return (
        f"YAML anchors and aliases are not allowed (found {kind} {_short(name)}); write values out"
    )


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of byte `offset`."""
    start = data.rfind(b"\n", 0, offset) + 1
    col = len(data[start:offset].decode("utf-8", errors="replace")) + 1
    return data.count(b"\n", 0, offset) + 1, col


def _mark_of(exc: yaml.MarkedYAMLError) -> tuple[int, int]:
    mark = exc.problem_mark or exc.context_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def _marked_problem(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "cannot parse"
    return f"{problem} ({exc.context})" if exc.context else problem


def _reader_problem(exc: yaml.reader.ReaderError) -> str:
    if isinstance(exc.character, int):
        return f"character U+{exc.character:04X} is not allowed ({exc.reason})"
    return str(exc.reason)


def _reader_error_location(exc: yaml.reader.ReaderError, text: str) -> tuple[int, int]:
    # libyaml reports a UTF-8 byte offset, the pure-Python reader a character index.
    data = text.encode("utf-8")
    offset = exc.position
    if _Loader is yaml.SafeLoader:
        offset = len(text[: exc.position].encode("utf-8"))
    return _line_col(data, min(max(offset, 0), len(data)))
