"""The report as one self-contained HTML page, drawn from the parsed report.json alone.

`render_html(doc)` needs nothing but the document, so `mgn-cutover report` can redraw a page from
an old report.json. The page loads nothing: inline CSS, one inline script pinned by a
Content-Security-Policy hash, the timeline's SVG from `report_timeline`. Every value from the
document is HTML-escaped (names come from MGN tags). The script filters and reorders the table
and draws an application's server rows on the timeline when it is first opened, from data the
page carries (`report_script`); it builds elements, it never inserts markup.
Fields added after schema v1 (`run_id`, `applications`, per-server `timeline`, ...) are drawn
when present; without a timeline, lanes are built from `finalized_at` and `converged_at`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from orchestrator import rowmemo
from orchestrator.outcome import exit_meaning
from orchestrator.report_script import SCRIPT
from orchestrator.report_timeline import (
    OUTCOME_ORDER,
    TIMELINE_CSS,
    Lane,
    build_lanes,
    css_token,
    error_text,
    esc,
    is_problem,
    outcome_of,
    parse_time,
    prepare_timeline_rows,
    stop_reason,
    template_json,
    text_of,
    timeline_parts,
)

# Short names for the helpers every section uses.
_e, _text, _outcome, _css_token = esc, text_of, outcome_of, css_token

_AWS_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


def render_html(doc: Mapping[str, Any]) -> str:
    """The report page for a parsed report.json document.

    Never raises for odd content: missing or ill-typed fields are drawn as "-" or left out.
    """
    return "".join(html_parts(doc))


def html_parts(doc: Mapping[str, Any]) -> Iterator[str]:
    """`render_html` in pieces (a lane, a table row), to be written as they come: the page of
    40,000 servers is ~100 MB, never held whole."""
    servers = [s for s in _list(doc.get("servers")) if isinstance(s, Mapping)]
    lanes = build_lanes(doc, servers)
    wave = _text(doc.get("wave")) or "?"
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{script_hash}'"
    )
    yield (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>mgn-cutover: wave {_e(wave)}</title><style>{_CSS}{TIMELINE_CSS}</style></head>\n"
        "<body>\n"
        f"<header><h1>mgn-cutover report: wave {_e(wave)}</h1>{_subtitle(doc)}</header>\n"
        '<noscript><p class="banner warn">This page draws its server table and timeline with its '
        "own inline script, which is off here: report.md and report.csv beside this page hold "
        "every server.</p></noscript>\n"
    )
    yield f"{_banners(doc)}\n{_summary(doc, servers)}\n"
    yield f"{_attention(lanes, bool(doc.get('dry_run')))}\n"
    started, finished = parse_time(doc.get("started_at")), parse_time(doc.get("finished_at"))
    yield from timeline_parts(lanes, started, finished)
    yield "\n"
    yield from _table_parts(servers, lanes)
    yield f"\n{_footer(doc)}\n<script>{SCRIPT}</script>\n</body></html>\n"


# --- reading the document -------------------------------------------------------------------


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


# --- sections -------------------------------------------------------------------------------


def _fmt_time(value: object, with_date: bool = True) -> str:
    at = parse_time(value)
    if at is None:
        return _text(value) or "-"
    return at.strftime("%Y-%m-%d %H:%M:%S UTC" if with_date else "%H:%M:%S")


def _duration(start: object, end: object) -> str | None:
    t0, t1 = parse_time(start), parse_time(end)
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


# What the first page calls an application's status, where the status word alone is too quiet.
_STATUS_LABELS = {"partially_cut_over": "HALF CUT OVER: act now"}


def _attention(lanes: Sequence[Lane], dry_run: bool) -> str:
    problems = [lane for lane in lanes if is_problem(lane)]
    problems.sort(key=lambda lane: lane.status != "partially_cut_over")  # the urgent first
    if not problems:
        text = "every application is ready" if dry_run else "no application needs attention"
        return f'<section id="attention"><p class="all-good">✔ {_e(text)}.</p></section>'
    items = "".join(
        f'<li><a href="#servers" class="app-link" data-filter="{_e(lane.app_id)}">'
        f"{_e(lane.name or lane.app_id)}</a> "
        f"{f'<code>{_e(lane.app_id)}</code> ' if lane.name else ''}"
        f'<span class="status s-{_css_token(lane.status or "")}">'
        f"{_e(_STATUS_LABELS.get(lane.status or '', lane.status))}</span>: "
        f"{_e(stop_reason(lane))}</li>"
        for lane in problems
    )
    return (
        f'<section id="attention"><h2>Needs attention ({len(problems)} of {len(lanes)} '
        f"applications)</h2><ul>{items}</ul></section>"
    )


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


def _table_parts(servers: Sequence[Mapping[str, Any]], lanes: Sequence[Lane]) -> Iterator[str]:
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
    yield (
        '<section id="servers"><h2>Servers</h2><div class="controls">'
        '<input id="filter" type="search" placeholder="Filter: name, ID, reason, error…" '
        'aria-label="filter servers" autocomplete="off">'
        '<select id="outcome" aria-label="outcome"><option value="">every outcome</option>'
        f'<option value="__problems">needs attention</option>{options}</select>'
        f'<span id="shown" class="muted">{len(servers)} of {len(servers)} servers</span></div>'
        f'<div class="tablewrap"><table id="server-table"><thead><tr>{heads}</tr></thead>'
        '<tbody></tbody></table></div><template id="server-rows">['
    )
    # The rows as data for _TABLE_ROWS_JS, in pieces of 1,000 servers (one JSON list in all,
    # which is its items' texts joined by commas).
    for index in range(0, len(servers), 1000):
        chunk = servers[index : index + 1000]
        yield ("," if index else "") + ",".join(_row_json(s, names) for s in chunk)
    yield "]</template></section>"


def _row_json(server: Mapping[str, Any], app_names: Mapping[str, str | None]) -> str:
    """`_row` as the page's data, kept in the row memo if any; the application's name from
    `app_names` is part of the key only for a server without a name of its own."""
    app_id = _text(server.get("applicationID")) or "(no application)"
    named = _text(server.get("application_name")) is not None
    names = {} if named else {app_id: app_names.get(app_id)}
    context = None if named else names[app_id]

    def make() -> str:
        return template_json(_row(server, names))

    return rowmemo.of_document_row("table", server, make, context)


def prepare_html_rows(servers: Sequence[Mapping[str, Any]], started_at: object) -> None:
    """Render these report.json rows' pieces of the page into the current memo (`rowmemo`):
    the table's rows and the timeline's, as the page will draw them."""
    if rowmemo.current() is None:
        return
    for server in servers:
        _row_json(server, {})
    prepare_timeline_rows(servers, started_at)


def _row(server: Mapping[str, Any], app_names: Mapping[str, str | None]) -> list[Any]:
    """One server's table row as _TABLE_ROWS_JS reads it: texts (None: drawn as "-"), the
    attempts' sort value and text, and each time as [ISO, HH:MM:SS] (or the text MGN gave)."""
    outcome = _outcome(server)
    app_id = _text(server.get("applicationID")) or "(no application)"
    app_name = _text(server.get("application_name")) or app_names.get(app_id)
    attempts = server.get("attempts")
    return [
        app_id,
        app_name,
        _text(server.get("name")),
        _text(server.get("sourceServerID")) or "?",
        outcome,
        _text(server.get("reason")),
        error_text(server),
        _text(server.get("lifecycle_state")),
        _text(server.get("replication_state")),
        _text(server.get("first_boot")),
        _text(server.get("ec2InstanceID")),
        attempts if isinstance(attempts, int) else "",
        str(attempts) if attempts is not None else "-",
        _time(server.get("finalized_at")),
        _time(server.get("converged_at")),
    ]


def _time(value: object) -> list[str] | str | None:
    at = parse_time(value)
    if at is None:
        return _text(value)
    return [at.isoformat(), f"{at.hour:02d}:{at.minute:02d}:{at.second:02d}"]


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
.chip.o-timed_out:not(.zero),.chip.o-not_attempted:not(.zero),.chip.o-accepted:not(.zero){
background:#fff4e0;border-color:var(--amber)}
.all-good{font-size:16px;color:var(--green);font-weight:600}
#attention ul{margin:0;padding-left:20px}#attention li{margin:3px 0}
.status{font-weight:600}.s-failed,.s-blocked{color:var(--red)}
.s-timed_out,.s-not_attempted{color:var(--amber)}.s-converged{color:var(--green)}
.s-partially_cut_over{color:var(--red);font-weight:700}
.controls{display:flex;gap:10px;align-items:center;margin-bottom:8px;flex-wrap:wrap}
#filter{font-size:14px;padding:6px 10px;width:340px;border:1px solid #aab4be;border-radius:5px}
#outcome{font-size:14px;padding:5px}
.tablewrap{overflow-x:auto;content-visibility:auto;contain-intrinsic-size:auto 3000px}
#server-table{border-collapse:collapse;width:100%;font-size:13px}
#server-table th{position:sticky;top:0;background:#eef1f4;text-align:left;padding:6px 8px;
cursor:pointer;user-select:none;white-space:nowrap;border-bottom:2px solid var(--line)}
#server-table th[aria-sort=ascending]::after{content:" ▲"}
#server-table th[aria-sort=descending]::after{content:" ▼"}
#server-table td{padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top;
overflow-wrap:break-word;min-width:70px}
#server-table tr.problem td:first-child{box-shadow:inset 4px 0 0 var(--red)}
#server-table td.num{text-align:right}
#server-table td.state{white-space:nowrap;font-size:12px}
#server-table code,#server-table td.nw{white-space:nowrap}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
background:#eceff1;white-space:nowrap}
.badge.o-finalized,.badge.o-already_cutover{background:#e6f4ea;color:var(--green)}
.badge.o-failed,.badge.o-blocked{background:#fdecea;color:var(--red)}
.badge.o-timed_out,.badge.o-not_attempted,.badge.o-accepted{background:#fff4e0;
color:var(--amber)}
.badge.o-would_finalize{background:#e8f0fe;color:var(--blue)}
footer{margin-top:28px;font-size:12px}footer table{font-size:12px;border-collapse:collapse}
footer th{text-align:left;padding:1px 10px 1px 0;font-weight:500;color:var(--muted)}
@media print{.controls{display:none}}
"""
