"""The HTML report: escaped, self-contained, and drawn and working in a real headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.report_html import render_html
from tests.cdp import Browser, Page, find_chromium
from tests.reportdocs import HOSTILE, at, night_doc

APPS = ["app-payments", "app-ledger", "app-crm", "app-hr", "app-wiki", "app-evil"]


def test_document_text_is_escaped_everywhere() -> None:
    """A `<script>` in names, reasons, errors and the description stays text: one script tag."""
    page = render_html(night_doc())
    assert HOSTILE not in page
    assert "window.__pwned" in page  # it is there, but escaped
    assert page.count("<script") == 1
    assert "<noscript><p" in page  # without the script: where else every server is
    assert "<img" not in page
    assert "</td></tr></table><h1>" not in page


def test_page_loads_nothing_and_pins_its_script_by_hash() -> None:
    """No external URL is referenced, and the CSP hash is the inline script's own."""
    page = render_html(night_doc())
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    script = page.split("<script>")[1].split("</script>")[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = html.unescape(page.split('Content-Security-Policy" content="')[1].split('"')[0])
    assert f"script-src 'sha256-{digest}'" in csp


def test_endpoint_banner_only_for_a_custom_endpoint() -> None:
    """An emulator endpoint gets the rehearsal banner; an AWS endpoint a milder one; none, none."""
    doc = night_doc()
    assert "REHEARSAL against an emulator" in render_html(doc)
    doc["endpoint_url"] = None
    doc["config"] = {"endpoint_url": "https://mgn.us-east-1.amazonaws.com"}
    page = render_html(doc)
    assert "REHEARSAL" not in page and "Custom AWS endpoint" in page
    doc["config"] = {}
    assert 'id="endpoint-banner"' not in render_html(doc)


def test_dry_run_and_interrupted_banners() -> None:
    """Dry run and interrupted runs say so at the top."""
    doc = night_doc() | {"dry_run": True, "interrupted": True}
    page = render_html(doc)
    assert 'id="dry-run-banner"' in page and 'id="interrupted-banner"' in page
    assert 'id="dry-run-banner"' not in render_html(night_doc())


def test_v1_report_without_timeline_draws_lanes_from_finalize_times() -> None:
    """Without `timeline`, a lane runs from finalized_at to converged_at."""
    doc = night_doc(with_timeline=False)
    del doc["applications"]
    page = render_html(doc)
    # Three finalized and one timed out: each server's row carries its two events, for the
    # browser to draw in the lane and in the server's row (test_browser_draws_a_large_wave).
    assert 'data-app="app-crm"' in page
    events = [m[1] for rows in _lane_rows(page) for row in rows for m in row[4]]
    assert sorted(events) == ["converged"] * 3 + ["finalize_accepted"] * 4


def _lane_rows(page: str) -> list[list[list[Any]]]:
    """Each lane's server rows, as the page carries them for its script to draw."""
    found = re.findall(r'<template class="rows">(.*?)</template>', page, re.S)
    return [json.loads(html.unescape(data)) for data in found]


def _table_rows(page: str) -> list[list[Any]]:
    """The server table's rows, as the page carries them for its script to draw."""
    [data] = re.findall(r'<template id="server-rows">(.*?)</template>', page, re.S)
    rows: list[list[Any]] = json.loads(html.unescape(data))
    return rows


@pytest.mark.parametrize("doc", [{}, {"servers": "nope", "summary": 3}, {"servers": [1, None]}])
def test_odd_documents_still_render(doc: dict[str, Any]) -> None:
    """Missing or ill-typed fields never make rendering fail."""
    assert "<table" in render_html(doc)


# --- in the browser --------------------------------------------------------------------------


def test_missing_chromium_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without chromium the browser tests skip, unless CI is set: then they fail."""
    import tests.cdp

    monkeypatch.setattr(tests.cdp, "CHROMIUM_PATHS", ("/nonexistent/chromium",))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        find_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium is missing and CI is set"):
        find_chromium()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless chromium for this module's tests."""
    binary = find_chromium()
    chromium = Browser(binary, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield chromium
    finally:
        chromium.close()


async def _open(browser: Browser, page: Page, doc: dict[str, Any], folder: Path) -> None:
    path = folder / "report.html"
    path.write_text(render_html(doc), encoding="utf-8")
    await page.open(path)
    assert await page.js("document.body.dataset.ready") == "true", page.errors


async def _visible_servers(page: Page) -> list[str]:
    return list(
        await page.js(
            "Array.from(document.querySelectorAll('#server-table tbody tr'))"
            ".filter(r => !r.hidden).map(r => r.cells[1].querySelector('code').textContent)"
        )
    )


async def test_browser_draws_a_lane_per_application_without_errors(
    browser: Browser, tmp_path: Path
) -> None:
    """Chromium shows one SVG lane per application with its marks, and logs no error."""
    async with browser.page() as page:
        await _open(browser, page, night_doc(), tmp_path)
        lanes = await page.js(
            "Array.from(document.querySelectorAll('#timeline svg.lane')).map(g => ({"
            "app: g.dataset.app, spans: g.querySelectorAll('rect.span').length,"
            "marks: g.querySelectorAll('g.mark').length,"
            "width: g.getBoundingClientRect().width}))"
        )
        assert [lane["app"] for lane in lanes] == APPS
        by_app = {lane["app"]: lane for lane in lanes}
        assert by_app["app-payments"]["marks"] == 18  # nine events for each of two servers
        assert by_app["app-crm"]["marks"] == 6  # five events and crm-db's stop mark
        assert all(by_app[a]["spans"] == 1 for a in APPS[:5])
        assert by_app["app-evil"]["spans"] == 0  # no timed event: a text says why
        assert all(lane["width"] > 0 for lane in lanes)
        assert await page.js("document.querySelectorAll('#server-table tbody tr').length") == 8
        assert await page.js("document.scripts.length") == 1
        assert await page.js("typeof window.__pwned") == "undefined"
        assert await page.js("document.getElementById('endpoint-banner') !== null")
        assert page.errors == []


async def test_browser_opens_an_application_to_its_servers(
    browser: Browser, tmp_path: Path
) -> None:
    """A click on a lane shows one row per server on the same axis; another click hides them."""
    rows_shown = (
        "Array.from(document.querySelectorAll('details[data-app=\"app-crm\"] g.server-row'))"
        ".filter(g => g.checkVisibility()).map(g => ({"
        "id: g.dataset.server, marks: g.querySelectorAll('g.mark').length,"
        "stop: g.querySelectorAll('g.mark.stop').length}))"
    )
    async with browser.page() as page:
        await _open(browser, page, night_doc(), tmp_path)
        assert await page.js(rows_shown) == []
        await page.click("details[data-app='app-crm'] > summary")
        assert await page.js(rows_shown) == [
            {"id": "s-2000000000000001a", "marks": 3, "stop": 0},  # ends with its blocked event
            {"id": "s-2000000000000001b", "marks": 3, "stop": 1},  # stopped after launch
        ]
        lane_x, row_x = await page.js(
            "[document.querySelector('svg.lane[data-app=\"app-crm\"] g.mark use'),"
            " document.querySelector('details[data-app=\"app-crm\"] g.server-row g.mark use')]"
            ".map(u => Math.round(u.getBoundingClientRect().left))"
        )
        assert lane_x == row_x  # both launch_requested at 01:31: the same x on the page
        await page.click("details[data-app='app-crm'] > summary")
        assert await page.js(rows_shown) == []
        assert page.errors == []


async def test_browser_draws_each_server_row_as_text_from_the_page_data(
    browser: Browser, tmp_path: Path
) -> None:
    """The table rows and a lane's server rows, drawn by the script: the cells' texts and sort
    keys, times in UTC with the full time on hover, and hostile names shown as text, never run."""
    cells = (
        "Array.from(document.querySelectorAll('#server-table tbody tr')).map(r => "
        "Array.from(r.cells).map(c => [c.textContent, c.dataset.v || null, c.title || null]))"
    )
    async with browser.page() as page:
        await _open(browser, page, night_doc(), tmp_path)
        rows = await page.js(cells)
        assert len(rows) == 8
        pay = rows[0]
        assert pay[0] == ["payments-apiapp-payments", "payments-api", None]  # name, then ID
        assert pay[1] == ["pay-api-1s-1000000000000001a", "pay-api-1", None]
        assert pay[2][0] == "finalized"
        assert pay[3][0] == pay[4][0] == "-"
        assert pay[5] == [
            "lifecycle CUTOVERreplication DISCONNECTEDfirst boot SUCCEEDED",
            "CUTOVER",
            None,
        ]
        assert pay[7] == ["1", "1", None]
        assert pay[8] == ["01:52:00", "2026-03-07T01:52:00+00:00", "2026-03-07T01:52:00+00:00"]
        hr = rows[5]
        assert hr[4][0] == "InternalServerException: boom" and hr[8][0] == "-"
        evil = rows[7]
        assert evil[1][0] == HOSTILE + "s-5000000000000001a"  # the name, as text
        assert evil[3][0] == HOSTILE
        await page.click("details[data-app='app-evil'] > summary")
        row = await page.js(
            "(function () { var g = document.querySelector("
            "'details[data-app=\"app-evil\"] g.server-row');"
            " return [g.querySelector('text.sname title').textContent,"
            " g.querySelector('text.nolane').textContent]; })()"
        )
        assert row[0] == f"{HOSTILE} (s-5000000000000001a)"
        assert row[1].startswith("stopped before any timed event: <script>")
        assert await page.js("typeof window.__pwned") == "undefined"
        assert await page.js("document.querySelectorAll('img').length") == 0
        assert page.errors == []


async def test_browser_filters_by_text_and_outcome(browser: Browser, tmp_path: Path) -> None:
    """Typing in the filter box and choosing an outcome hide the other rows and update the count."""
    async with browser.page() as page:
        await _open(browser, page, night_doc(), tmp_path)
        await page.type_into("#filter", "CRM")
        assert await _visible_servers(page) == ["s-2000000000000001a", "s-2000000000000001b"]
        assert await page.js("document.getElementById('shown').textContent") == "2 of 8 servers"
        await page.js("document.getElementById('filter').value = ''")
        await page.js(
            "var s = document.getElementById('outcome'); s.value = '__problems';"
            "s.dispatchEvent(new Event('change'))"
        )
        assert len(await _visible_servers(page)) == 5
        await page.type_into("#filter", "boom")
        assert await _visible_servers(page) == ["s-3000000000000001a"]
        await page.click("#attention .app-link[data-filter='app-wiki']")
        assert await _visible_servers(page) == ["s-4000000000000001a"]
        assert page.errors == []


async def test_browser_sorts_on_header_clicks(browser: Browser, tmp_path: Path) -> None:
    """A header click sorts by its column, a second click reverses; numbers sort as numbers."""
    doc = night_doc()
    doc["servers"][0]["attempts"] = 10  # "10" sorts before "3" as text, after it as a number
    doc["servers"][-1]["attempts"] = None  # shown as "-", sorted first
    async with browser.page() as page:
        await _open(browser, page, doc, tmp_path)
        attempts = "#server-table thead th:nth-child(8)"
        await page.click(attempts)
        column = (
            "Array.from(document.querySelectorAll('#server-table tbody tr'))"
            ".map(r => r.cells[7].textContent)"
        )
        assert await page.js(column) == ["-", "0", "0", "1", "1", "1", "3", "10"]
        assert await page.js(f"document.querySelector('{attempts}').ariaSort") == "ascending"
        await page.click(attempts)
        assert await page.js(column) == ["10", "3", "1", "1", "1", "0", "0", "-"]
        await page.click("#server-table thead th:nth-child(3)")
        outcomes = await page.js(
            "Array.from(document.querySelectorAll('#server-table tbody tr'))"
            ".map(r => r.dataset.outcome)"
        )
        assert outcomes == sorted(outcomes)
        assert page.errors == []


async def test_browser_reports_a_broken_page(browser: Browser, tmp_path: Path) -> None:
    """The harness sees console errors, uncaught exceptions and CSP refusals (tests can fail)."""
    path = tmp_path / "broken.html"
    path.write_text("<script>console.error('seen'); undefinedFunction();</script>")
    blocked = tmp_path / "blocked.html"
    blocked.write_text(
        '<meta http-equiv="Content-Security-Policy" content="script-src \'none\'">'
        "<script>window.ran = 1;</script>"
    )
    async with browser.page() as page:
        await page.open(path)
        assert len(page.errors) == 2, page.errors
        await page.open(blocked)  # a script the CSP refuses: an error too
        assert len(page.errors) == 1 and "Content Security Policy" in page.errors[0], page.errors


async def test_browser_draws_a_large_wave(browser: Browser, tmp_path: Path) -> None:
    """A wave of 39 applications and 351 servers (v1, no timeline) draws every lane, no errors."""
    servers = [
        {
            "sourceServerID": f"s-{i:017x}",
            "applicationID": f"app-{i % 39:02d}",
            "name": f"host-{i}",
            "outcome": "finalized" if i % 13 else "blocked",
            "attempts": 1,
            "finalized_at": at(i / 10),
            "converged_at": at(i / 10 + 5) if i % 13 else None,
        }
        for i in range(351)
    ]
    doc = {"wave": "wave-02", "exit_code": 1, "started_at": at(0), "servers": servers}
    async with browser.page() as page:
        await _open(browser, page, doc, tmp_path)
        assert await page.js("document.querySelectorAll('#timeline svg.lane').length") == 39
        assert await page.js("document.querySelectorAll('#timeline svg.lane g.mark').length") > 600
        await page.js(
            "document.querySelectorAll('details.lane-block > summary').forEach(s => s.click())"
        )
        assert await page.js("document.querySelectorAll('g.server-row').length") == 351
        marks = "document.querySelectorAll('g.server-row g.mark.e-{}').length"
        assert await page.js(marks.format("finalize_accepted")) == 351
        assert await page.js(marks.format("converged")) == 351 - 27  # every 13th: blocked
        assert await page.js("document.querySelectorAll('g.server-row g.mark.stop').length") == 27
        await page.type_into("#filter", "host-13")
        assert await page.js("document.getElementById('shown').textContent") == (
            "11 of 351 servers"  # host-13 and host-130..139
        )
        assert page.errors == []


def test_renders_what_render_json_writes_today() -> None:
    """The v1 report.json from orchestrator.report draws: lanes from finalize times, every row."""
    from orchestrator.outcome import Outcome, RunRecord, ServerResult
    from orchestrator.report import render_json

    record = RunRecord(
        wave="wave-01",
        dry_run=False,
        started_at=at(0),
        finished_at=at(40),
        exit_code=1,
        interrupted=True,
        config={"endpoint_url": "http://127.0.0.1:4566", "concurrency": 4},
        servers=[
            ServerResult(
                "s-1",
                "app-a",
                name="web",
                outcome=Outcome.FINALIZED,
                attempts=1,
                finalized_at=at(10),
                converged_at=at(20),
            ),
            ServerResult(
                "s-2",
                "app-b",
                name=HOSTILE,
                outcome=Outcome.FAILED,
                attempts=3,
                error_code="InternalServerException",
                error_message=HOSTILE,
            ),
        ],
    )
    page = render_html(json.loads(render_json(record)))
    assert 'data-app="app-a"' in page and 'data-app="app-b"' in page
    assert [row[3] for row in _table_rows(page)] == ["s-1", "s-2"]
    assert 'id="endpoint-banner"' in page and 'id="interrupted-banner"' in page
    assert HOSTILE not in page
    assert "InternalServerException" in page
