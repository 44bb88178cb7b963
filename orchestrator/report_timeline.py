"""The night's timeline for the HTML report: one lane per application, one row per server.

Read from a parsed report.json: each server's `timeline` events, or, for reports written before
timelines (schema v1), its `finalized_at` and `converged_at`. Drawn as SVG: one `<svg>` per
application lane inside a `<details>`, so opening it shows that application's servers, one row
each, on the same time axis (every SVG shares one viewBox width, so x positions line up).

The axis, the legend and each lane's frame (name, status, grid) are drawn here. The events are
drawn by the page's script (`report_script`), from each lane's server rows carried as data in a
`<template>`: the lane's track when the page loads, a server's own row when its lane is first
opened. Drawing every server's marks in Python cost more than all the rest of the report, and
most rows are never opened (a wave of 40,000 servers drew a 94 MB page). The data is JSON inside
the template, HTML-escaped, and the script builds each element with `createElementNS` and
`textContent`: it never parses markup. Everything from the document drawn here is HTML-escaped.
"""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator import rowmemo

# Outcomes that need no action; the rest make their application a problem.
OK_OUTCOMES = frozenset({"finalized", "already_cutover", "would_finalize"})
CONVERGED_OUTCOMES = frozenset({"finalized", "already_cutover"})
OUTCOME_ORDER = (
    "failed",
    "blocked",
    "timed_out",
    "accepted",
    "not_attempted",
    "would_finalize",
    "finalized",
    "already_cutover",
)
# Events that say where and why a server stopped short of CUTOVER.
STOP_EVENTS = frozenset(
    {"blocked", "failed", "not_attempted", "timed_out", "unconfirmed", "held", "reverted"}
)
# Each timeline event: its glyph (an SVG symbol in GLYPH_DEFS) and a label for the legend.
EVENT_GLYPHS: dict[str, tuple[str, str]] = {
    "checked": ("g-dot", "checked"),
    "launch_requested": ("g-ring", "launch requested"),
    "launched": ("g-disc", "launched"),
    "first_boot": ("g-diamond", "first boot"),
    "verified": ("g-tri", "verified"),
    "approved": ("g-square", "approved"),
    "finalize_sent": ("g-bar", "finalize sent"),
    "finalize_accepted": ("g-bar2", "finalize accepted"),
    "converged": ("g-check", "converged"),
    "already_cutover": ("g-check", "already cut over"),
    "archived": ("g-archive", "archived"),
    "reverted": ("g-revert", "reverted"),
    "held": ("g-pause", "held"),
    "blocked": ("g-stop", "blocked"),
    "failed": ("g-stop", "failed"),
    "timed_out": ("g-clock", "timed out"),
    "unconfirmed": ("g-clock", "unconfirmed"),
    "not_attempted": ("g-skip", "not attempted"),
}

# Geometry, in SVG user units; every SVG is 1200 wide and scales to the page width.
_WIDTH = 1200
_PLOT_X0, _PLOT_X1 = 340, 1170
_AXIS_H = 30
_LANE_H = 38
_ROW_H = 24
# What the page's script (`report_script`) needs of it to draw marks and rows alike.
SCRIPT_GEOMETRY = {"width": _WIDTH, "x0": _PLOT_X0, "x1": _PLOT_X1, "row": _ROW_H, "lane": _LANE_H}
_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)


# --- reading the document -------------------------------------------------------------------


def esc(value: object) -> str:
    """HTML-escaped text (quotes too, so it is safe in attributes); None as empty."""
    return "" if value is None else html.escape(str(value), quote=True)


def text_of(value: object) -> str | None:
    """A document value as text; None for null or empty."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 time as an aware UTC datetime, or None if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)  # MGN's and our own `...Z` times, directly
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if parsed.tzinfo is UTC:
        return parsed
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def outcome_of(server: Mapping[str, Any]) -> str:
    """The server's outcome, "unknown" if missing."""
    return text_of(server.get("outcome")) or "unknown"


@functools.lru_cache(maxsize=1024)
def css_token(value: str) -> str:
    """A value safe as part of a CSS class name: letters, digits, `_` only (the few event and
    outcome names repeat: cached)."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in value)


def server_label(server: Mapping[str, Any]) -> str:
    """`name (sourceServerID)`, or the ID alone."""
    sid = text_of(server.get("sourceServerID")) or "?"
    name = text_of(server.get("name"))
    return f"{name} ({sid})" if name else sid


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)  # a few per server
class Mark:
    """One event of one server, placed on the timeline."""

    at: datetime
    event: str
    detail: str | None


@dataclass
class Lane:
    """One application: its servers, their events, and what became of it."""

    app_id: str
    name: str | None
    servers: list[Mapping[str, Any]] = field(default_factory=list)
    server_marks: list[list[Mark]] = field(default_factory=list)  # each server's, in order
    status: str | None = None


def server_marks(server: Mapping[str, Any]) -> list[Mark]:
    """The server's timeline in time order, or one from finalized_at / converged_at without it."""
    raw = server.get("timeline")
    if isinstance(raw, list):
        entries = [e for e in raw if isinstance(e, Mapping)]
    else:
        entries = [
            {"at": server.get("finalized_at"), "event": "finalize_accepted"},
            {"at": server.get("converged_at"), "event": "converged"},
        ]
    marks = []
    for entry in entries:
        at = parse_time(entry.get("at"))
        event = text_of(entry.get("event"))
        if at is not None and event is not None:
            marks.append(Mark(at, event, text_of(entry.get("detail"))))
    return sorted(marks, key=lambda m: m.at)


def _marks_of(server: Mapping[str, Any]) -> list[Mark]:
    """`server_marks`, kept in the row memo if any (callers must not change the list)."""
    return rowmemo.of_document_row("marks", server, lambda: server_marks(server))


def build_lanes(doc: Mapping[str, Any], servers: Sequence[Mapping[str, Any]]) -> list[Lane]:
    """One lane per application, in the document's order of applications, then of servers."""
    lanes: dict[str, Lane] = {}
    apps = doc.get("applications")
    for app in apps if isinstance(apps, list) else []:
        if isinstance(app, Mapping) and text_of(app.get("applicationID")):
            app_id = str(app["applicationID"])
            lanes[app_id] = Lane(
                app_id, text_of(app.get("name")), status=text_of(app.get("status"))
            )
    for server in servers:
        app_id = text_of(server.get("applicationID")) or "(no application)"
        lane = lanes.setdefault(app_id, Lane(app_id, None))
        lane.name = lane.name or text_of(server.get("application_name"))
        lane.servers.append(server)
        lane.server_marks.append(_marks_of(server))
    dry_run = bool(doc.get("dry_run"))
    for lane in lanes.values():
        lane.status = lane.status or _app_status(lane.servers, dry_run)
    return list(lanes.values())


def _app_status(servers: Sequence[Mapping[str, Any]], dry_run: bool) -> str:
    outcomes = {outcome_of(s) for s in servers}
    if not outcomes:
        return "no servers"
    if outcomes <= CONVERGED_OUTCOMES:
        return "converged"
    if dry_run and outcomes <= OK_OUTCOMES:
        return "ready"
    for outcome in OUTCOME_ORDER:
        if outcome in outcomes:
            return outcome
    return sorted(outcomes)[0]


def is_problem(lane: Lane) -> bool:
    """True when a server of the application did not end where the wave wants it."""
    return any(outcome_of(s) not in OK_OUTCOMES for s in lane.servers)


def error_text(server: Mapping[str, Any]) -> str | None:
    """The server's error as `code: message` (or as the document gives it); None without one."""
    error = server.get("error")
    if isinstance(error, Mapping):
        parts = (text_of(error.get("code")), text_of(error.get("message")))
        return ": ".join(x for x in parts if x) or None
    return text_of(error)


def server_reason(server: Mapping[str, Any]) -> str | None:
    """The server's reason, or its error as `code: message`."""
    return text_of(server.get("reason")) or error_text(server)


def template_json(value: Any) -> str:
    """`value` as compact JSON, escaped to sit as the text of a `<template>` the page's script
    reads (`content.textContent`): no markup can start inside it."""
    return html.escape(json.dumps(value, ensure_ascii=False, separators=(",", ":")), quote=False)


def stop_reason(lane: Lane) -> str | None:
    """Why the application stopped short: the first problem server's reason, and how many more."""
    problems = [s for s in lane.servers if outcome_of(s) not in OK_OUTCOMES]
    if not problems:
        return None
    first = problems[0]
    why = server_reason(first)
    text = f"{server_label(first)}: {outcome_of(first)}" + (f", {why}" if why else "")
    more = len(problems) - 1
    return text + (f" (+{more} more)" if more else "")


# --- drawing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scale:
    t0: datetime
    span_s: float
    ticks: tuple[tuple[float, str], ...] = ()
    run_marks: tuple[tuple[float, str], ...] = ()

    def x(self, at: datetime) -> float:
        frac = (at - self.t0).total_seconds() / self.span_s
        return _PLOT_X0 + (_PLOT_X1 - _PLOT_X0) * min(max(frac, 0.0), 1.0)


def timeline_parts(
    lanes: Sequence[Lane], started_at: datetime | None, finished_at: datetime | None
) -> Iterator[str]:
    """The timeline section: legend, axis, and a lane per application that opens to its
    servers; in pieces, one per lane, to be written as they come (40,000 servers draw a
    timeline of tens of MB)."""
    if not lanes:
        yield '<section id="timeline"><h2>Timeline</h2><p>No applications.</p></section>'
        return
    bounds = [t for t in (started_at, finished_at) if t is not None]
    times = [m.at for lane in lanes for marks in lane.server_marks for m in marks] + bounds
    note = (
        "" if times else '<p class="muted">No event has a time: nothing to draw on a time axis.</p>'
    )
    scale = _make_scale(times, started_at, finished_at)
    del times
    yield (
        '<section id="timeline"><h2>Timeline of the night (UTC)</h2>'
        '<p class="muted hint">Open an application to see its servers; hover a mark for '
        f"details.</p>{note}{_legend(marks for lane in lanes for marks in lane.server_marks)}"
        f'<svg width="0" height="0" class="defs" aria-hidden="true">{GLYPH_DEFS}</svg>'
        f'<div class="tl" data-t0="{scale.t0.timestamp() * 1000:.3f}" '
        f'data-span="{scale.span_s:.3f}">{_axis(scale)}'
    )
    for lane in lanes:
        yield _lane_block(lane, scale)
    yield "</div></section>"


def _make_scale(
    times: Sequence[datetime], started_at: datetime | None, finished_at: datetime | None
) -> _Scale:
    t0 = min(times) if times else datetime.now(UTC)
    span_s = max((max(times) - t0).total_seconds(), 60.0) if times else 60.0
    base = _Scale(t0, span_s)
    step = next((s for s in _TICK_STEPS_S if span_s / s <= 10), 43200)
    fmt = "%H:%M:%S" if step < 60 else "%H:%M"
    ticks = []
    tick = t0.timestamp() // step * step + step
    while tick <= t0.timestamp() + span_s:
        at = datetime.fromtimestamp(tick, UTC)
        ticks.append((base.x(at), at.strftime(fmt)))
        tick += step
    run_marks = [
        (base.x(at), f"run {label} {at:%H:%M:%S} UTC")
        for label, at in (("start", started_at), ("end", finished_at))
        if at is not None
    ]
    return _Scale(t0, span_s, tuple(ticks), tuple(run_marks))


def _svg_open(height: int, cls: str, extra: str = "") -> str:
    return (
        f'<svg class="{cls}" viewBox="0 0 {_WIDTH} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet"{extra}>'
    )


def _axis(scale: _Scale) -> str:
    labels = "".join(
        f'<text x="{x:.1f}" y="20" text-anchor="middle">{esc(label)}</text>'
        for x, label in scale.ticks
    )
    return (
        f'{_svg_open(_AXIS_H, "axis")}<text x="{_PLOT_X0}" y="20" text-anchor="end" '
        f'class="axlabel" dx="-8">time (UTC)</text>{labels}</svg>'
    )


def _background(scale: _Scale, height: int) -> str:
    """Tick gridlines and the run's start/end lines, drawn in every lane so they look whole."""
    grid = "".join(
        f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height}"/>'
        for x, _ in scale.ticks
    )
    runs = "".join(
        f'<line class="runmark" x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{height}">'
        f"<title>{esc(tip)}</title></line>"
        for x, tip in scale.run_marks
    )
    return grid + runs


def _lane_block(lane: Lane, scale: _Scale) -> str:
    status = lane.status or ""
    title = lane.name or lane.app_id
    n_ok = sum(1 for s in lane.servers if outcome_of(s) in CONVERGED_OUTCOMES)
    status_line = f"{status} · {n_ok} of {len(lane.servers)} cut over"
    reason = stop_reason(lane)
    parts = [
        f'<details class="lane-block s-{css_token(status)}" data-app="{esc(lane.app_id)}">',
        "<summary>",
        _svg_open(
            _LANE_H,
            f"lane s-{css_token(status)}",
            f' data-app="{esc(lane.app_id)}" data-title="{esc(title)}"'
            + (f' data-why="{esc(reason)}"' if reason else ""),
        ),
        _background(scale, _LANE_H),
        f'<text class="lname" x="22" y="16">{esc(clip(title, 38))}'
        f"<title>{esc(title)} ({esc(lane.app_id)})</title></text>",
        '<text class="twisty closed" x="6" y="16">▸</text>'
        '<text class="twisty open" x="6" y="16">▾</text>',
        f'<text class="lstatus" x="22" y="31">{esc(clip(status_line, 46))}'
        f"<title>{esc(reason or status_line)}</title></text>",
        "</svg></summary>",
        _rows_data(lane, scale),
        "</details>",
    ]
    return "".join(parts)


def _rows_data(lane: Lane, scale: _Scale) -> str:
    """The lane's server rows as data for the page's script (`report_script`), one per server:
    [ID, label, outcome, reason (problem servers only), [[offset s, event, detail], ...]]."""
    if not lane.servers:
        return ""
    rows = [
        timeline_row(server, marks, scale.t0)
        for server, marks in zip(lane.servers, lane.server_marks, strict=True)
    ]
    # A JSON list is its items' texts joined by commas; escaping goes character by character.
    return f'<template class="rows">[{",".join(rows)}]</template>'


def _row_data(server: Mapping[str, Any], marks: Sequence[Mark], t0: datetime) -> str:
    outcome = outcome_of(server)
    row = [
        text_of(server.get("sourceServerID")) or "",
        server_label(server),
        outcome,
        server_reason(server) if outcome not in OK_OUTCOMES else None,
        # Seconds from the axis' start, to the millisecond.
        [[round((m.at - t0).total_seconds(), 3), m.event, m.detail] for m in marks],
    ]
    return template_json(row)


def timeline_row(server: Mapping[str, Any], marks: Sequence[Mark], t0: datetime) -> str:
    """One server's row of data (`_rows_data`), kept in the row memo if any: its marks are
    the memo's own for the row (`build_lanes`), so the row and the axis' start are all it
    depends on."""
    return rowmemo.of_document_row("timeline", server, lambda: _row_data(server, marks, t0), t0)


def prepare_timeline_rows(servers: Sequence[Mapping[str, Any]], started_at: object) -> None:
    """Render these report.json rows' timeline pieces into the current memo, as a page whose
    axis starts at `started_at` (the usual case: no mark before the run's start) would."""
    t0 = parse_time(started_at)
    if rowmemo.current() is None or t0 is None:
        return
    for server in servers:
        timeline_row(server, _marks_of(server), t0)


def _legend(groups: Iterable[Sequence[Mark]]) -> str:
    seen = {m.event for marks in groups for m in marks}
    items = [(e, g) for e, g in EVENT_GLYPHS.items() if e in seen]
    items += [(e, ("g-dot", e)) for e in sorted(seen - EVENT_GLYPHS.keys())]
    if not items:
        return ""
    cells = "".join(
        f'<li><svg width="16" height="16" viewBox="-8 -8 16 16" aria-hidden="true">'
        f'<use href="#{glyph}"/></svg>{esc(label.replace("_", " "))}</li>'
        for _, (glyph, label) in items
    )
    return f'<ul class="legend">{cells}</ul>'


GLYPH_DEFS = """<defs>
<symbol id="g-dot" overflow="visible"><circle r="3" class="gl-grey"/></symbol>
<symbol id="g-ring" overflow="visible"><circle r="5" class="gl-ring"/></symbol>
<symbol id="g-disc" overflow="visible"><circle r="5" class="gl-blue"/></symbol>
<symbol id="g-diamond" overflow="visible"><path d="M0-7L7 0 0 7-7 0Z" class="gl-blue"/></symbol>
<symbol id="g-tri" overflow="visible"><path d="M0-7L6.5 5H-6.5Z" class="gl-teal"/></symbol>
<symbol id="g-square" overflow="visible"><rect x="-5" y="-5" width="10" height="10"
 class="gl-purple"/></symbol>
<symbol id="g-bar" overflow="visible"><rect x="-2" y="-9" width="4" height="18"
 class="gl-dark"/></symbol>
<symbol id="g-bar2" overflow="visible"><rect x="-2" y="-9" width="4" height="18"
 class="gl-dark"/><rect x="3" y="-9" width="2" height="18" class="gl-dark"/></symbol>
<symbol id="g-check" overflow="visible"><circle r="7" class="gl-green"/>
<path d="M-3.5 0L-1 3 4-3" class="gl-tick"/></symbol>
<symbol id="g-archive" overflow="visible"><rect x="-5" y="-5" width="10" height="10"
 class="gl-grey"/></symbol>
<symbol id="g-revert" overflow="visible"><path d="M0 7L6.5-5H-6.5Z" class="gl-orange"/></symbol>
<symbol id="g-pause" overflow="visible"><rect x="-5" y="-6" width="3.5" height="12"
 class="gl-orange"/><rect x="1.5" y="-6" width="3.5" height="12" class="gl-orange"/></symbol>
<symbol id="g-stop" overflow="visible"><circle r="8" class="gl-red"/>
<path d="M-3.5-3.5L3.5 3.5M3.5-3.5L-3.5 3.5" class="gl-x"/></symbol>
<symbol id="g-clock" overflow="visible"><circle r="7" class="gl-amber"/>
<path d="M0-4V0H3.5" class="gl-x"/></symbol>
<symbol id="g-skip" overflow="visible"><circle r="6" class="gl-skip"/>
<path d="M-4 4L4-4" class="gl-skipx"/></symbol>
</defs>"""

# `content-visibility:auto` on each lane (and on the server table, report_html): the browser lays
# out only what is near the screen. A page of 40,000 servers opened in ~11 s instead of ~48 s in
# headless Chromium here; printing lays out everything.
TIMELINE_CSS = """
.legend{list-style:none;padding:0;margin:4px 0 6px;display:flex;flex-wrap:wrap;gap:4px 14px;
font-size:12px;color:var(--muted)}
.legend li{display:flex;align-items:center;gap:4px}
.hint{margin:0;font-size:12px}
svg.defs{position:absolute}
.tl{border:1px solid var(--line);border-radius:6px;overflow-x:auto}
.tl svg{display:block;min-width:900px;font-size:12px}
.tl svg text{fill:var(--fg)}
.tl svg.axis{border-bottom:1px solid var(--line)}
svg.axis text{fill:var(--muted);font-size:11px}svg.axis .axlabel{font-style:italic}
.grid{stroke:var(--line);stroke-width:1}
.runmark{stroke:#5b6570;stroke-dasharray:4 3;stroke-width:1.2}
.lane-block:nth-of-type(even)>summary{background:var(--band)}
.lane-block{content-visibility:auto;contain-intrinsic-size:auto 38px}
.lane-block>summary{list-style:none;cursor:pointer}
.lane-block>summary::-webkit-details-marker{display:none}
.lane-block>summary:hover{background:#eaf1fb}
.lane-block[open]>summary{border-bottom:1px dashed var(--line)}
.lane-block[open] .twisty.closed,.lane-block:not([open]) .twisty.open{display:none}
.twisty{fill:var(--muted)!important}
svg.servers{background:#fbfcfd;border-bottom:1px solid var(--line)}
.sname{font-size:12px}.soutcome{font-size:11px;fill:var(--muted)!important}
.o-failed .soutcome,.o-blocked .soutcome{fill:var(--red)!important}
.o-timed_out .soutcome,.o-not_attempted .soutcome,.o-accepted .soutcome{fill:var(--amber)!important}
.o-finalized .soutcome,.o-already_cutover .soutcome{fill:var(--green)!important}
.lname{font-weight:600;font-size:13px}.lstatus{font-size:11px}
.lane.s-failed .lstatus,.lane.s-blocked .lstatus{fill:var(--red)!important;font-weight:600}
.lane.s-partially_cut_over .lstatus{fill:var(--red)!important;font-weight:700}
.lane.s-timed_out .lstatus,.lane.s-not_attempted .lstatus{fill:var(--amber)!important}
.lane.s-converged .lstatus{fill:var(--green)!important}
.span{fill:#9fb8d9}.s-converged .span,.o-finalized .span,.o-already_cutover .span{fill:#8fcf9f}
.s-failed .span,.s-blocked .span{fill:#f1a7a7}
.s-timed_out .span,.s-not_attempted .span{fill:#f5cf8a}
.server-row.o-failed .span,.server-row.o-blocked .span{fill:#f1a7a7}
.server-row.o-timed_out .span,.server-row.o-not_attempted .span{fill:#f5cf8a}
.nolane{fill:var(--red)!important;font-size:12px}.nolane.quiet{fill:var(--muted)!important}
.gl-grey{fill:var(--grey)}.gl-ring{fill:#fff;stroke:var(--blue);stroke-width:2}
.gl-blue{fill:var(--blue)}.gl-teal{fill:#00897b}.gl-purple{fill:#7b3fb5}.gl-dark{fill:#263238}
.gl-green{fill:var(--green)}.gl-tick{fill:none;stroke:#fff;stroke-width:2}
.gl-orange{fill:#e65100}.gl-red{fill:var(--red)}.gl-amber{fill:var(--amber)}
.gl-x{fill:none;stroke:#fff;stroke-width:2.2}
.gl-skip{fill:#fff;stroke:var(--amber);stroke-width:2}.gl-skipx{stroke:var(--amber);stroke-width:2}
@media print{.tl{overflow:visible}.lane-block,.tablewrap{content-visibility:visible}}
"""
