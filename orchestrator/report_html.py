"""The report as one self-contained HTML page, drawn from the parsed report.json alone.

`render_html(doc)` needs nothing but the document, so `mgn-cutover report` can redraw a page from
an old report.json. The page loads nothing: inline CSS, one inline script pinned by a
Content-Security-Policy hash, SVG drawn here. Every value from the document is HTML-escaped
(names come from MGN tags); the script never inserts markup, it only reads and reorders the table.
Fields added after schema v1 (`run_id`, `applications`, per-server `timeline`, ...) are drawn
when present; without a timeline, lanes are built from `finalized_at` and `converged_at`.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from orchestrator.report import exit_meaning

# Outcomes that need no action; the rest make their application a problem.
OK_OUTCOMES = frozenset({"finalized", "already_cutover", "would_finalize"})
CONVERGED_OUTCOMES = frozenset({"finalized", "already_cutover"})
OUTCOME_ORDER = (
    "failed",
    "blocked",
    "timed_out",
    "not_attempted",
    "would_finalize",
    "finalized",
    "already_cutover",
)
# Events that say where and why a server stopped short of CUTOVER.
STOP_EVENTS = frozenset(
    {"blocked", "failed", "not_attempted", "timed_out", "unconfirmed", "held", "reverted"}
)
# Each timeline event: its glyph (an SVG symbol below) and a label for the legend.
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
_AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")

# Geometry of the timeline, in SVG user units (the SVG scales to the page width).
_WIDTH = 1200
_LABEL_W = 320
_PLOT_X0, _PLOT_X1 = 340, 1170
_AXIS_H = 34
_LANE_H = 38
_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)


@dataclass(frozen=True)
class Mark:
    """One event of one server, placed on the timeline."""

    at: datetime
    event: str
    server: str
    detail: str | None


@dataclass
class Lane:
    """One application: its servers, their events, and what became of it."""

    app_id: str
    name: str | None
    servers: list[Mapping[str, Any]] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    status: str | None = None

    @property
    def first(self) -> datetime | None:
        return min((m.at for m in self.marks), default=None)

    @property
    def last(self) -> datetime | None:
        return max((m.at for m in self.marks), default=None)


def render_html(doc: Mapping[str, Any]) -> str:
    """The report page for a parsed report.json document.

    Never raises for odd content: missing or ill-typed fields are drawn as "-" or left out.
    """
    servers = [s for s in _list(doc.get("servers")) if isinstance(s, Mapping)]
    lanes = _lanes(doc, servers)
    wave = _text(doc.get("wave")) or "?"
    body = "\n".join(
        [
            f"<header><h1>mgn-cutover report: wave {_e(wave)}</h1>{_subtitle(doc)}</header>",
            _banners(doc),
            _summary(doc, servers),
            _attention(lanes, bool(doc.get("dry_run"))),
            _timeline(doc, lanes),
            _table(servers, lanes),
            _footer(doc),
        ]
    )
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{script_hash}'"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>mgn-cutover: wave {_e(wave)}</title><style>{_CSS}</style></head>\n"
        f"<body>\n{body}\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )


# --- reading the document -------------------------------------------------------------------


def _e(value: object) -> str:
    """HTML-escaped text (quotes too, so it is safe in attributes); None as empty."""
    return "" if value is None else html.escape(str(value), quote=True)


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _parse_time(value: object) -> datetime | None:
    """An ISO-8601 time as an aware UTC datetime, or None if absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _outcome(server: Mapping[str, Any]) -> str:
    return _text(server.get("outcome")) or "unknown"


def _css_token(value: str) -> str:
    """A value safe as part of a CSS class name: letters, digits, `_` only."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in value)


def _server_label(server: Mapping[str, Any]) -> str:
    sid = _text(server.get("sourceServerID")) or "?"
    name = _text(server.get("name"))
    return f"{name} ({sid})" if name else sid


def _server_marks(server: Mapping[str, Any]) -> list[Mark]:
    """The server's timeline, or one built from finalized_at / converged_at when it has none."""
    label = _server_label(server)
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
        at = _parse_time(entry.get("at"))
        event = _text(entry.get("event"))
        if at is not None and event is not None:
            marks.append(Mark(at, event, label, _text(entry.get("detail"))))
    return sorted(marks, key=lambda m: m.at)


def _lanes(doc: Mapping[str, Any], servers: Sequence[Mapping[str, Any]]) -> list[Lane]:
    """One lane per application, in the document's order of applications, then of servers."""
    lanes: dict[str, Lane] = {}
    for app in _list(doc.get("applications")):
        if isinstance(app, Mapping) and _text(app.get("applicationID")):
            app_id = str(app["applicationID"])
            lanes[app_id] = Lane(app_id, _text(app.get("name")), status=_text(app.get("status")))
    for server in servers:
        app_id = _text(server.get("applicationID")) or "(no application)"
        lane = lanes.setdefault(app_id, Lane(app_id, None))
        lane.name = lane.name or _text(server.get("application_name"))
        lane.servers.append(server)
        lane.marks.extend(_server_marks(server))
    dry_run = bool(doc.get("dry_run"))
    for lane in lanes.values():
        lane.marks.sort(key=lambda m: m.at)
        lane.status = lane.status or _app_status(lane.servers, dry_run)
    return list(lanes.values())


def _app_status(servers: Sequence[Mapping[str, Any]], dry_run: bool) -> str:
    outcomes = {_outcome(s) for s in servers}
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


def _is_problem(lane: Lane) -> bool:
    return any(_outcome(s) not in OK_OUTCOMES for s in lane.servers)


def _stop_reason(lane: Lane) -> str | None:
    """Why the application stopped short: the first problem server's reason, and how many more."""
    problems = [s for s in lane.servers if _outcome(s) not in OK_OUTCOMES]
    if not problems:
        return None
    first = problems[0]
    error = first.get("error") if isinstance(first.get("error"), Mapping) else None
    why = _text(first.get("reason")) or (
        ": ".join(x for x in (_text(error.get("code")), _text(error.get("message"))) if x)
        if error
        else None
    )
    text = f"{_server_label(first)}: {_outcome(first)}" + (f", {why}" if why else "")
    more = len(problems) - 1
    return text + (f" (+{more} more)" if more else "")


# --- sections -------------------------------------------------------------------------------


def _fmt_time(value: object, with_date: bool = True) -> str:
    at = _parse_time(value)
    if at is None:
        return _text(value) or "-"
    return at.strftime("%Y-%m-%d %H:%M:%S UTC" if with_date else "%H:%M:%S")


def _duration(start: object, end: object) -> str | None:
    t0, t1 = _parse_time(start), _parse_time(end)
    if t0 is None or t1 is None or t1 < t0:
        return None
    minutes, seconds = divmod(int((t1 - t0).total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s"


def _subtitle(doc: Mapping[str, Any]) -> str:
    parts = []
    if _text(doc.get("description")):
        parts.append(f'<span class="desc">{_e(doc.get("description"))}</span>')
    if _text(doc.get("run_id")):
        parts.append(f'<span class="muted">run {_e(doc.get("run_id"))}</span>')
    return f'<p class="sub">{" · ".join(parts)}</p>' if parts else ""


def _endpoint_url(doc: Mapping[str, Any]) -> str | None:
    config = doc.get("config")
    from_config = config.get("endpoint_url") if isinstance(config, Mapping) else None
    return _text(doc.get("endpoint_url")) or _text(from_config)


def _banners(doc: Mapping[str, Any]) -> str:
    out = []
    endpoint = _endpoint_url(doc)
    if endpoint:
        host = (urlsplit(endpoint).hostname or "").lower()
        if host.endswith(_AWS_HOST_SUFFIXES):
            out.append(
                f'<div class="banner warn" id="endpoint-banner">Custom AWS endpoint: '
                f"<code>{_e(endpoint)}</code></div>"
            )
        else:
            out.append(
                '<div class="banner rehearsal" id="endpoint-banner"><strong>REHEARSAL against '
                "an emulator or another non-AWS endpoint</strong>: nothing here happened in AWS. "
                f"Endpoint: <code>{_e(endpoint)}</code></div>"
            )
    if doc.get("dry_run"):
        out.append(
            '<div class="banner info" id="dry-run-banner"><strong>DRY RUN</strong>: no '
            "FinalizeCutover was sent; outcomes say what a run would do.</div>"
        )
    if doc.get("interrupted"):
        out.append(
            '<div class="banner bad" id="interrupted-banner"><strong>INTERRUPTED</strong>: the '
            "run stopped before every server had an outcome. Rerunning is safe.</div>"
        )
    if _text(doc.get("account_error")):
        out.append(
            '<div class="banner bad"><strong>Account error</strong>: '
            f"{_e(doc.get('account_error'))}. Fix the credentials or permissions, then rerun.</div>"
        )
    schema = _text(doc.get("schema"))
    if schema is not None and not schema.startswith("mgn-cutover/report/v1"):
        out.append(
            f'<div class="banner warn">Unknown report schema <code>{_e(schema)}</code>: '
            "drawn as well as this version can.</div>"
        )
    return "\n".join(out)


def _summary(doc: Mapping[str, Any], servers: Sequence[Mapping[str, Any]]) -> str:
    exit_code = doc.get("exit_code")
    if isinstance(exit_code, int) and not isinstance(exit_code, bool):
        meaning = exit_meaning(exit_code, bool(doc.get("dry_run")))
    else:
        meaning = "unknown"
    cls = "good" if exit_code == 0 else "bad"
    rows = [
        ("Started", _fmt_time(doc.get("started_at"))),
        ("Finished", _fmt_time(doc.get("finished_at"))),
        ("Duration", _duration(doc.get("started_at"), doc.get("finished_at")) or "-"),
    ]
    facts = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    facts += (
        f'<dt>Exit code</dt><dd><span class="exit {cls}" id="exit-code">{_e(exit_code)}</span> '
        f"{_e(meaning)}</dd>"
    )
    counts = _counts(doc, servers)
    total = counts.pop("total", len(servers))
    chips = "".join(
        f'<li class="chip o-{_css_token(name)}{"" if n else " zero"}" '
        f'data-outcome="{_e(name)}">'
        f'<span class="n">{_e(n)}</span> {_e(name.replace("_", " "))}</li>'
        for name, n in counts.items()
    )
    return (
        '<section id="summary"><h2>Summary</h2><div class="summary">'
        f'<dl class="facts">{facts}</dl><div><p class="total"><strong>{_e(total)}</strong> '
        f'servers</p><ul class="chips" id="counts">{chips}</ul></div></div></section>'
    )


def _counts(doc: Mapping[str, Any], servers: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """The document's summary when it has one, else counts of the servers' outcomes."""
    summary = doc.get("summary")
    if isinstance(summary, Mapping) and summary:
        return {str(k): v for k, v in summary.items() if isinstance(v, int)}
    counts: dict[str, int] = {"total": len(servers)}
    for server in servers:
        counts[_outcome(server)] = counts.get(_outcome(server), 0) + 1
    return counts


def _attention(lanes: Sequence[Lane], dry_run: bool) -> str:
    problems = [lane for lane in lanes if _is_problem(lane)]
    if not problems:
        text = "every application is ready" if dry_run else "no application needs attention"
        return f'<section id="attention"><p class="all-good">✔ {_e(text)}.</p></section>'
    items = "".join(
        f'<li><a href="#servers" class="app-link" data-filter="{_e(lane.app_id)}">'
        f"{_e(lane.name or lane.app_id)}</a> "
        f"{f'<code>{_e(lane.app_id)}</code> ' if lane.name else ''}"
        f'<span class="status s-{_css_token(lane.status or "")}">{_e(lane.status)}</span>: '
        f"{_e(_stop_reason(lane))}</li>"
        for lane in problems
    )
    return (
        f'<section id="attention"><h2>Needs attention ({len(problems)} of {len(lanes)} '
        f"applications)</h2><ul>{items}</ul></section>"
    )


def _timeline(doc: Mapping[str, Any], lanes: Sequence[Lane]) -> str:
    times = [m.at for lane in lanes for m in lane.marks]
    bounds = [_parse_time(doc.get("started_at")), _parse_time(doc.get("finished_at"))]
    times += [t for t in bounds if t is not None]
    legend = _legend(lane.marks for lane in lanes)
    if not lanes:
        return '<section id="timeline"><h2>Timeline</h2><p>No applications.</p></section>'
    if not times:
        note = '<p class="muted">No event has a time: nothing to draw on a time axis.</p>'
    else:
        note = ""
    t0 = min(times) if times else datetime.now(UTC)
    span_s = max((max(times) - t0).total_seconds(), 60.0) if times else 60.0
    scale = _Scale(t0, span_s)
    height = _AXIS_H + _LANE_H * len(lanes) + 8
    parts = [
        f'<svg id="timeline-svg" viewBox="0 0 {_WIDTH} {height}" width="100%" '
        f'role="img" aria-label="timeline of the night per application">',
        _GLYPH_DEFS,
        _axis(scale, height),
    ]
    for index, lane in enumerate(lanes):
        parts.append(_lane_svg(lane, index, scale))
    for label, at in (("start", bounds[0]), ("end", bounds[1])):
        if at is not None:
            x = scale.x(at)
            parts.append(
                f'<line class="runmark" x1="{x:.1f}" x2="{x:.1f}" y1="{_AXIS_H - 6}" '
                f'y2="{height - 4}"><title>run {label} {_e(_fmt_time(at.isoformat()))}</title>'
                "</line>"
            )
    parts.append("</svg>")
    return (
        '<section id="timeline"><h2>Timeline of the night (UTC)</h2>'
        f'{note}{legend}<div class="svgwrap">{"".join(parts)}</div></section>'
    )


@dataclass(frozen=True)
class _Scale:
    t0: datetime
    span_s: float

    def x(self, at: datetime) -> float:
        frac = (at - self.t0).total_seconds() / self.span_s
        return _PLOT_X0 + (_PLOT_X1 - _PLOT_X0) * min(max(frac, 0.0), 1.0)


def _axis(scale: _Scale, height: int) -> str:
    step = next((s for s in _TICK_STEPS_S if scale.span_s / s <= 10), 43200)
    first = scale.t0.timestamp() // step * step + step
    fmt = "%H:%M:%S" if step < 60 else "%H:%M"
    out = [f'<g class="axis"><text x="{_PLOT_X0}" y="12" class="axlabel">time (UTC)</text>']
    tick = first
    while tick <= scale.t0.timestamp() + scale.span_s:
        at = datetime.fromtimestamp(tick, UTC)
        x = scale.x(at)
        out.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{_AXIS_H - 4}" y2="{height - 4}"/>'
            f'<text x="{x:.1f}" y="26" text-anchor="middle">{at.strftime(fmt)}</text>'
        )
        tick += step
    out.append("</g>")
    return "".join(out)


def _lane_svg(lane: Lane, index: int, scale: _Scale) -> str:
    y = _AXIS_H + index * _LANE_H
    mid = y + _LANE_H / 2
    status = lane.status or ""
    title = lane.name or lane.app_id
    n_ok = sum(1 for s in lane.servers if _outcome(s) in CONVERGED_OUTCOMES)
    status_line = f"{status} · {n_ok} of {len(lane.servers)} cut over"
    reason = _stop_reason(lane)
    out = [
        f'<g class="lane s-{_css_token(status)}" data-app="{_e(lane.app_id)}">',
        f'<rect class="band" x="0" y="{y}" width="{_WIDTH}" height="{_LANE_H}"/>',
        f'<text class="lname" x="8" y="{y + 15}">{_e(_clip(title, 40))}'
        f"<title>{_e(title)} ({_e(lane.app_id)})</title></text>",
        f'<text class="lstatus" x="8" y="{y + 30}">{_e(_clip(status_line, 48))}'
        f"<title>{_e(reason or status_line)}</title></text>",
    ]
    first, last = lane.first, lane.last
    if first is not None and last is not None:
        x0, x1 = scale.x(first), scale.x(last)
        out.append(
            f'<rect class="span" x="{x0:.1f}" y="{mid - 5}" width="{max(x1 - x0, 3):.1f}" '
            f'height="10" rx="5"><title>{_e(title)}: {_fmt_time(first.isoformat(), False)} to '
            f"{_fmt_time(last.isoformat(), False)} UTC</title></rect>"
        )
        for mark in lane.marks:
            out.append(_mark_svg(mark, scale.x(mark.at), mid))
        out.extend(_stop_marks(lane, scale, mid))
    elif reason:
        out.append(
            f'<text class="nolane" x="{_PLOT_X0}" y="{mid + 4}">stopped before any timed event: '
            f"{_e(_clip(reason, 80))}<title>{_e(reason)}</title></text>"
        )
    else:
        out.append(f'<text class="nolane" x="{_PLOT_X0}" y="{mid + 4}">no timed events</text>')
    out.append("</g>")
    return "".join(out)


def _mark_svg(mark: Mark, x: float, y: float) -> str:
    glyph = EVENT_GLYPHS.get(mark.event, ("g-dot", mark.event))[0]
    tip = f"{mark.server}: {mark.event.replace('_', ' ')} at {mark.at:%H:%M:%S} UTC"
    if mark.detail:
        tip += f" ({mark.detail})"
    return (
        f'<g class="mark e-{_css_token(mark.event)}"><title>{_e(tip)}</title>'
        f'<use href="#{glyph}" x="{x:.1f}" y="{y:.1f}"/></g>'
    )


def _stop_marks(lane: Lane, scale: _Scale, y: float) -> list[str]:
    """A red marker where each problem server's last event is, unless a stop event is there."""
    out = []
    for server in lane.servers:
        if _outcome(server) in OK_OUTCOMES:
            continue
        marks = _server_marks(server)
        if not marks or marks[-1].event in STOP_EVENTS:
            continue
        last = marks[-1]
        why = _text(server.get("reason")) or _outcome(server)
        tip = f"{last.server}: stopped after {last.event.replace('_', ' ')}: {why}"
        out.append(
            f'<g class="mark stop"><title>{_e(tip)}</title>'
            f'<use href="#g-stop" x="{scale.x(last.at) + 9:.1f}" y="{y:.1f}"/></g>'
        )
    return out


def _legend(groups: Iterable[Sequence[Mark]]) -> str:
    seen = {m.event for marks in groups for m in marks}
    items = [(e, g) for e, g in EVENT_GLYPHS.items() if e in seen]
    items += [(e, ("g-dot", e)) for e in sorted(seen - EVENT_GLYPHS.keys())]
    if not items:
        return ""
    cells = "".join(
        f'<li><svg width="16" height="16" viewBox="-8 -8 16 16" aria-hidden="true">'
        f'<use href="#{glyph}"/></svg>{_e(label.replace("_", " "))}</li>'
        for _, (glyph, label) in items
    )
    return f'<ul class="legend">{cells}</ul>'


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Application", "text"),
    ("Server", "text"),
    ("Outcome", "text"),
    ("Reason", "text"),
    ("Error", "text"),
    ("MGN state", "text"),
    ("EC2 instance", "text"),
    ("Attempts", "num"),
    ("Finalized", "text"),
    ("Converged", "text"),
)


def _table(servers: Sequence[Mapping[str, Any]], lanes: Sequence[Lane]) -> str:
    names = {lane.app_id: lane.name for lane in lanes}
    present = {_outcome(s) for s in servers}
    ordered = [o for o in OUTCOME_ORDER if o in present] + sorted(present - set(OUTCOME_ORDER))
    options = "".join(
        f'<option value="{_e(o)}">{_e(o.replace("_", " "))}</option>' for o in ordered
    )
    heads = "".join(
        f'<th data-type="{kind}" tabindex="0" aria-sort="none">{_e(label)}</th>'
        for label, kind in _COLUMNS
    )
    rows = "".join(_row(s, names) for s in servers)
    return (
        '<section id="servers"><h2>Servers</h2><div class="controls">'
        '<input id="filter" type="search" placeholder="Filter: name, ID, reason, error…" '
        'aria-label="filter servers" autocomplete="off">'
        '<select id="outcome" aria-label="outcome"><option value="">every outcome</option>'
        f'<option value="__problems">needs attention</option>{options}</select>'
        f'<span id="shown" class="muted">{len(servers)} of {len(servers)} servers</span></div>'
        f'<div class="tablewrap"><table id="server-table"><thead><tr>{heads}</tr></thead>'
        f"<tbody>{rows}</tbody></table></div></section>"
    )


def _row(server: Mapping[str, Any], app_names: Mapping[str, str | None]) -> str:
    outcome = _outcome(server)
    app_id = _text(server.get("applicationID")) or "(no application)"
    app_name = _text(server.get("application_name")) or app_names.get(app_id)
    error = server.get("error")
    error_text = (
        ": ".join(x for x in (_text(error.get("code")), _text(error.get("message"))) if x)
        if isinstance(error, Mapping)
        else _text(error)
    )
    attempts = server.get("attempts")
    cells = [
        _two_line(app_name, app_id),
        _two_line(_text(server.get("name")), _text(server.get("sourceServerID")) or "?"),
        f'<td><span class="badge o-{_css_token(outcome)}">{_e(outcome)}</span></td>',
        _cell(server.get("reason")),
        _cell(error_text),
        _state_cell(server),
        _cell(server.get("ec2InstanceID"), "nw"),
        f'<td class="num" data-v="{_e(attempts if isinstance(attempts, int) else "")}">'
        f"{_e(attempts if attempts is not None else '-')}</td>",
        _time_cell(server.get("finalized_at")),
        _time_cell(server.get("converged_at")),
    ]
    problem = "problem" if outcome not in OK_OUTCOMES else "ok"
    return f'<tr class="{problem}" data-outcome="{_e(outcome)}">{"".join(cells)}</tr>'


def _state_cell(server: Mapping[str, Any]) -> str:
    """Lifecycle, replication and first boot, one per line (sorted by lifecycle)."""
    parts = [
        (label, _text(server.get(key)))
        for label, key in (
            ("lifecycle", "lifecycle_state"),
            ("replication", "replication_state"),
            ("first boot", "first_boot"),
        )
    ]
    lines = "<br>".join(
        f'<span class="muted">{label}</span> {_e(value)}' for label, value in parts if value
    )
    return f'<td class="state" data-v="{_e(parts[0][1] or "")}">{lines or "-"}</td>'


def _cell(value: object, cls: str = "") -> str:
    text = _text(value)
    return f'<td class="{cls}">{_e(text)}</td>' if text else '<td class="muted">-</td>'


def _two_line(name: str | None, ident: str) -> str:
    if not name:
        return f'<td data-v="{_e(ident)}"><code>{_e(ident)}</code></td>'
    return f'<td data-v="{_e(name)}">{_e(name)}<br><code>{_e(ident)}</code></td>'


def _time_cell(value: object) -> str:
    at = _parse_time(value)
    if at is None:
        return _cell(value)
    iso = at.isoformat()
    return f'<td class="nw" data-v="{_e(iso)}" title="{_e(iso)}">{at:%H:%M:%S}</td>'


def _footer(doc: Mapping[str, Any]) -> str:
    config = doc.get("config")
    settings = ""
    if isinstance(config, Mapping) and config:
        rows = "".join(
            f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in sorted(config.items())
        )
        settings = (
            f"<details><summary>Settings of this run</summary><table>{rows}</table></details>"
        )
    covered = [str(a) for a in _list(doc.get("covered_applications"))]
    scope = (
        f'<p class="muted">Applications covered by this run: {_e(", ".join(covered))}</p>'
        if covered
        else ""
    )
    return (
        f'<footer>{scope}{settings}<p class="muted">Report schema {_e(doc.get("schema"))}; '
        "drawn from report.json by mgn-cutover. Times are UTC.</p></footer>"
    )


# --- static parts ---------------------------------------------------------------------------

_GLYPH_DEFS = """<defs>
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

_CSS = """
:root{--fg:#1b1f24;--muted:#5b6570;--bg:#fff;--band:#f5f7f9;--line:#d7dde3;
--green:#1a7f37;--red:#c62828;--amber:#b26a00;--blue:#1f5fbf;--grey:#8a949e}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg);margin:0 auto;padding:16px 24px 40px;max-width:1500px}
h1{font-size:22px;margin:0}h2{font-size:17px;margin:22px 0 8px}
.sub{margin:2px 0 0;color:var(--muted)}.muted{color:var(--muted)}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
.banner{padding:10px 14px;border-radius:6px;margin:10px 0;font-size:15px;border:2px solid}
.banner.rehearsal{background:repeating-linear-gradient(135deg,#fff4cc 0 14px,#ffe79a 14px 28px);
border-color:#b26a00;font-size:17px}
.banner.warn{background:#fff8e1;border-color:#e0a800}
.banner.info{background:#e8f0fe;border-color:#1f5fbf}
.banner.bad{background:#fdecea;border-color:var(--red)}
.summary{display:flex;gap:40px;flex-wrap:wrap;align-items:flex-start}
.facts{display:grid;grid-template-columns:auto 1fr;gap:4px 14px;margin:0}
.facts dt{color:var(--muted)}.facts dd{margin:0}
.exit{display:inline-block;min-width:26px;text-align:center;border-radius:4px;color:#fff;
font-weight:700;padding:0 6px}.exit.good{background:var(--green)}.exit.bad{background:var(--red)}
.total{margin:0 0 6px}
.chips{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:6px}
.chip{border-radius:14px;padding:3px 12px;border:1px solid var(--line);background:var(--band)}
.chip .n{font-weight:700;font-size:16px}.chip.zero{opacity:.45}
.o-finalized,.o-already_cutover{border-color:var(--green)}
.chip.o-finalized,.chip.o-already_cutover{background:#e6f4ea}
.chip.o-failed:not(.zero),.chip.o-blocked:not(.zero){background:#fdecea;border-color:var(--red)}
.chip.o-timed_out:not(.zero),.chip.o-not_attempted:not(.zero){background:#fff4e0;
border-color:var(--amber)}
.all-good{font-size:16px;color:var(--green);font-weight:600}
#attention ul{margin:0;padding-left:20px}#attention li{margin:3px 0}
.status{font-weight:600}.s-failed,.s-blocked{color:var(--red)}
.s-timed_out,.s-not_attempted{color:var(--amber)}.s-converged{color:var(--green)}
.legend{list-style:none;padding:0;margin:4px 0 6px;display:flex;flex-wrap:wrap;gap:4px 14px;
font-size:12px;color:var(--muted)}
.legend li{display:flex;align-items:center;gap:4px}
.svgwrap{border:1px solid var(--line);border-radius:6px;overflow-x:auto}
#timeline-svg{display:block;min-width:900px;font-size:12px}
#timeline-svg text{fill:var(--fg)}
.axis text{fill:var(--muted);font-size:11px}.axis .axlabel{font-style:italic}
.grid{stroke:var(--line);stroke-width:1}
.runmark{stroke:#5b6570;stroke-dasharray:4 3;stroke-width:1.2}
.lane .band{fill:transparent}.lane:nth-of-type(even) .band{fill:var(--band)}
.lane:hover .band{fill:#eaf1fb}
.lname{font-weight:600;font-size:13px}.lstatus{font-size:11px}
.lane.s-failed .lstatus,.lane.s-blocked .lstatus{fill:var(--red)!important;font-weight:600}
.lane.s-timed_out .lstatus,.lane.s-not_attempted .lstatus{fill:var(--amber)!important}
.lane.s-converged .lstatus{fill:var(--green)!important}
.span{fill:#9fb8d9}.lane.s-converged .span{fill:#8fcf9f}
.lane.s-failed .span,.lane.s-blocked .span{fill:#f1a7a7}
.lane.s-timed_out .span,.lane.s-not_attempted .span{fill:#f5cf8a}
.nolane{fill:var(--red)!important;font-size:12px}
.gl-grey{fill:var(--grey)}.gl-ring{fill:#fff;stroke:var(--blue);stroke-width:2}
.gl-blue{fill:var(--blue)}.gl-teal{fill:#00897b}.gl-purple{fill:#7b3fb5}.gl-dark{fill:#263238}
.gl-green{fill:var(--green)}.gl-tick{fill:none;stroke:#fff;stroke-width:2}
.gl-orange{fill:#e65100}.gl-red{fill:var(--red)}.gl-amber{fill:var(--amber)}
.gl-x{fill:none;stroke:#fff;stroke-width:2.2}
.gl-skip{fill:#fff;stroke:var(--amber);stroke-width:2}.gl-skipx{stroke:var(--amber);stroke-width:2}
.controls{display:flex;gap:10px;align-items:center;margin-bottom:8px;flex-wrap:wrap}
#filter{font-size:14px;padding:6px 10px;width:340px;border:1px solid #aab4be;border-radius:5px}
#outcome{font-size:14px;padding:5px}
.tablewrap{overflow-x:auto}
#server-table{border-collapse:collapse;width:100%;font-size:13px}
#server-table th{position:sticky;top:0;background:#eef1f4;text-align:left;padding:6px 8px;
cursor:pointer;user-select:none;white-space:nowrap;border-bottom:2px solid var(--line)}
#server-table th[aria-sort=ascending]::after{content:" ▲"}
#server-table th[aria-sort=descending]::after{content:" ▼"}
#server-table td{padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top;
overflow-wrap:anywhere;min-width:70px}
#server-table tr.problem td:first-child{box-shadow:inset 4px 0 0 var(--red)}
#server-table td.num{text-align:right}
#server-table td.state{white-space:nowrap;font-size:12px}
#server-table code,#server-table td.nw{white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
background:#eceff1;white-space:nowrap}
.badge.o-finalized,.badge.o-already_cutover{background:#e6f4ea;color:var(--green)}
.badge.o-failed,.badge.o-blocked{background:#fdecea;color:var(--red)}
.badge.o-timed_out,.badge.o-not_attempted{background:#fff4e0;color:var(--amber)}
.badge.o-would_finalize{background:#e8f0fe;color:var(--blue)}
footer{margin-top:28px;font-size:12px}footer table{font-size:12px;border-collapse:collapse}
footer th{text-align:left;padding:1px 10px 1px 0;font-weight:500;color:var(--muted)}
@media print{.controls{display:none}.svgwrap{overflow:visible}}
"""

# Reads and reorders the table rendered above; never inserts markup from the document.
_SCRIPT = """
(function () {
  'use strict';
  var table = document.getElementById('server-table');
  var input = document.getElementById('filter');
  var select = document.getElementById('outcome');
  var shown = document.getElementById('shown');
  if (!table || !input || !select || !shown) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var ok = {finalized: 1, already_cutover: 1, would_finalize: 1};
  var texts = new WeakMap();
  rows.forEach(function (row) { texts.set(row, row.textContent.toLowerCase()); });
  function apply() {
    var needle = input.value.trim().toLowerCase();
    var want = select.value;
    var count = 0;
    rows.forEach(function (row) {
      var outcome = row.dataset.outcome;
      var match = (!needle || texts.get(row).indexOf(needle) !== -1) &&
        (!want || (want === '__problems' ? !ok[outcome] : outcome === want));
      row.hidden = !match;
      if (match) { count += 1; }
    });
    shown.textContent = count + ' of ' + rows.length + ' servers';
  }
  function key(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell.hasAttribute('data-v') ? cell.getAttribute('data-v') : cell.textContent;
    if (numeric) { var n = parseFloat(raw); return isNaN(n) ? -Infinity : n; }
    return raw.trim().toLowerCase();
  }
  function sortBy(th) {
    var index = th.cellIndex;
    var numeric = th.dataset.type === 'num';
    var descending = th.getAttribute('aria-sort') === 'ascending';
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) {
      c.setAttribute('aria-sort', 'none');
    });
    th.setAttribute('aria-sort', descending ? 'descending' : 'ascending');
    var sorted = rows.slice().sort(function (a, b) {
      var x = key(a, index, numeric), y = key(b, index, numeric);
      var order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    });
    sorted.forEach(function (row) { body.appendChild(row); });
  }
  input.addEventListener('input', apply);
  select.addEventListener('change', apply);
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
    th.addEventListener('click', function () { sortBy(th); });
    th.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); sortBy(th); }
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll('.app-link'), function (a) {
    a.addEventListener('click', function () {
      input.value = a.dataset.filter; select.value = ''; apply();
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll('#timeline-svg .lane'), function (g) {
    g.addEventListener('click', function () {
      input.value = g.dataset.app; select.value = ''; apply();
      table.scrollIntoView({behavior: 'smooth'});
    });
  });
  document.body.dataset.ready = 'true';
  apply();
})();
"""
