"""Each server's rendered pieces, kept by the row's value, so a run renders most of its report
while it waits for its last servers to converge.

At the end of a run the report (report.json's server lines, the CSV and Markdown rows, the HTML
page's row data) and the journal's run record are rendered row by row, ~0.4 s of CPU for 4,000
servers once the run is otherwise done. Most rows are final well before: a server that MGN shows
converged changes no more. `RowMemo` keeps what each row rendered to, keyed by the row's whole
value (every field of its `ServerResult`, its timeline included) plus whatever context the
piece depends on. A row that changed afterwards has another key and is rendered again: the memo
can only save work, never change a byte of what is written. The run renders its settled rows
into it while it waits (`runner`), and the report and the journal's record read from it.

It is used through `using(memo)` (a context variable, so the run's tasks share it) rather than
passed through every renderer, which call this module's `piece`, `document_row` and
`of_document_row`: outside `using` there is no memo, and those just render.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import operator
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

# The rows a memo keeps at most (~6 KB each): a wave's report must never be held whole, and a
# run of 4,000 servers per account in ten accounts has a memory budget (benchmarks/README.md).
# Rows past it are rendered at the end, as without a memo. One account's largest wave fits.
MAX_ROWS = 5_000

_CURRENT: contextvars.ContextVar[RowMemo | None] = contextvars.ContextVar(
    "mgn_cutover_row_memo", default=None
)


def current() -> RowMemo | None:
    """The memo the renderers use now, or None (render everything)."""
    return _CURRENT.get()


def piece(kind: str, row: Any, make: Callable[[], T], context: Hashable = None) -> T:
    """`RowMemo.piece` of the current memo; `make()` when there is none."""
    memo = _CURRENT.get()
    return make() if memo is None else memo.piece(kind, row, make, context)


def document_row(row: Any, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`RowMemo.document_row` of the current memo; `make()` when there is none."""
    memo = _CURRENT.get()
    return make() if memo is None else memo.document_row(row, make)


def of_document_row(
    kind: str, doc: Mapping[str, Any], make: Callable[[], T], context: Hashable = None
) -> T:
    """`RowMemo.of_document_row` of the current memo; `make()` when there is none."""
    memo = _CURRENT.get()
    return make() if memo is None else memo.of_document_row(kind, doc, make, context)


@contextlib.contextmanager
def using(memo: RowMemo | None) -> Iterator[RowMemo | None]:
    """Make `memo` the renderers' memo in this context (and the tasks it starts)."""
    token = _CURRENT.set(memo)
    try:
        yield memo
    finally:
        _CURRENT.reset(token)


class RowMemo:
    """Pieces by row value, kind and context. A piece must be a pure function of the row's
    fields and of the context given with it; rows are values (`ServerResult` is frozen), so a
    row object's key is worked out once."""

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self.max_rows = max_rows
        self._entries: dict[Hashable, dict[Hashable, Any]] = {}  # row key -> its pieces
        # Row objects, and the report.json dicts made from them, by id -> (the object, the
        # row's pieces). Holding the object keeps its id from being reused.
        self._by_id: dict[int, tuple[object, dict[Hashable, Any]]] = {}
        self._fields: Callable[[Any], tuple[Any, ...]] | None = None
        self.hits = 0
        self.misses = 0

    def key(self, row: Any) -> Hashable:
        """The row's whole value: every field of its dataclass, the timeline's entries too."""
        if self._fields is None:
            names = [f.name for f in dataclasses.fields(row) if f.name != "timeline"]
            self._fields = operator.attrgetter(*names)
        timeline = tuple(tuple(entry.items()) for entry in row.timeline)
        return (type(row), self._fields(row), timeline)

    def _pieces_of(self, row: Any) -> dict[Hashable, Any]:
        found = self._by_id.get(id(row))
        if found is not None and found[0] is row:
            return found[1]
        key = self.key(row)
        pieces = self._entries.get(key)
        if pieces is None:
            # Full: this row's pieces are made and not kept (nor its key worked out again).
            full = len(self._entries) >= self.max_rows
            pieces = _NOT_KEPT if full else self._entries.setdefault(key, {})
        self._by_id[id(row)] = (row, pieces)
        return pieces

    def _get(self, pieces: dict[Hashable, Any], slot: Hashable, make: Callable[[], T]) -> T:
        if pieces is _NOT_KEPT:
            self.misses += 1
            return make()
        found = pieces.get(slot, _MISSING)
        if found is not _MISSING:
            self.hits += 1
            return found  # type: ignore[no-any-return]
        self.misses += 1
        made = pieces[slot] = make()
        return made

    def piece(self, kind: str, row: Any, make: Callable[[], T], context: Hashable = None) -> T:
        """`make()`'s value for this row (and context): from the memo, or made and kept."""
        return self._get(self._pieces_of(row), (kind, context), make)

    def document_row(self, row: Any, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The row's report.json form (`make()`), kept so that pieces drawn from it can be
        memoized too (`of_document_row`). Callers must not change the dict."""
        pieces = self._pieces_of(row)
        doc = self._get(pieces, ("document", None), make)
        if pieces is not _NOT_KEPT:
            self._by_id[id(doc)] = (doc, pieces)
        return doc

    def of_document_row(
        self, kind: str, doc: Mapping[str, Any], make: Callable[[], T], context: Hashable = None
    ) -> T:
        """A piece drawn from a report.json row: memoized when the row is one this memo made
        (`document_row`), made afresh otherwise (a document read back from a file)."""
        found = self._by_id.get(id(doc))
        if found is None or found[0] is not doc:
            return make()
        return self._get(found[1], (kind, context), make)

    def __len__(self) -> int:
        """Rows kept."""
        return len(self._entries)


_MISSING: Any = object()
_NOT_KEPT: dict[Hashable, Any] = {}  # the pieces of a row a full memo does not keep: never filled
