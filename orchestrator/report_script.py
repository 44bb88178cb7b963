"""The report page's one inline script, in three parts run in order (`SCRIPT`).

- `_TABLE_ROWS_JS` fills the server table from the rows' data `report_html` puts in a
  `<template>`;
- `_TABLE_SCRIPT` filters and reorders that table;
- `_ROWS_JS` draws each application lane's track when the page loads, and a lane's server rows
  the first time it opens, from each lane's rows' data (`report_timeline`).

Every element is built with createElement / createElementNS and textContent: nothing from the
document is ever parsed as markup. `report_html` pins the script by its hash in the page's
Content-Security-Policy.
"""

from __future__ import annotations

import json

from orchestrator.report_timeline import EVENT_GLYPHS, OK_OUTCOMES, SCRIPT_GEOMETRY, STOP_EVENTS

# OK_OUTCOMES as the page's script tests them (`OK[outcome]`).
OK_JS = json.dumps(dict.fromkeys(sorted(OK_OUTCOMES), 1))

# Draws each lane's track (every server's events, and a stop mark after each problem server's
# last event unless that event says it stopped) when the page loads, and a lane's server rows
# the first time it opens: built with createElementNS and textContent, from the rows' data.
_ROWS_JS = """
(function () {
  'use strict';
  var tl = document.querySelector('#timeline .tl');
  if (!tl) { return; }
  var NS = 'http://www.w3.org/2000/svg';
  var T0 = parseFloat(tl.dataset.t0), SPAN = parseFloat(tl.dataset.span);
  var G = __GEOMETRY__;
  var OK = __OK__, STOPS = __STOPS__, GLYPHS = __GLYPHS__;
  function el(name, attrs, text) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  function titled(node, tip) { node.appendChild(el('title', {}, tip)); return node; }
  function token(v) { return String(v).replace(/[^A-Za-z0-9_]/g, '_'); }
  function clip(t, n) {
    var c = Array.from(t);
    return c.length <= n ? t : c.slice(0, n - 1).join('') + '\\u2026';
  }
  function x(off) {
    return G.x0 + (G.x1 - G.x0) * Math.min(Math.max(off / SPAN, 0), 1);
  }
  function clock(off) { return new Date(T0 + off * 1000).toISOString().slice(11, 19); }
  function spaced(e) { return e.replace(/_/g, ' '); }
  function marksOf(row) {
    return row[4].map(function (m) { return [m[0], m[1], m[2], row[1]]; });
  }
  // The bar from the first to the last event and a mark per event ([offset, event, detail,
  // server label]), or a text saying why there is none.
  function track(svg, marks, mid, title, why, big) {
    if (!marks.length) {
      var text = why ? 'stopped before any timed event: ' + why : 'no timed events';
      var cls = 'nolane' + (why ? '' : ' quiet');
      svg.appendChild(titled(el('text', {'class': cls, x: G.x0, y: mid + 4},
        clip(text, big ? 110 : 120)), text));
      return;
    }
    var half = big ? 5 : 3;
    var first = marks[0][0], last = marks[marks.length - 1][0];
    svg.appendChild(titled(el('rect', {
      'class': 'span', x: x(first).toFixed(1), y: mid - half,
      width: Math.max(x(last) - x(first), 3).toFixed(1), height: 2 * half, rx: half
    }), title + ': ' + clock(first) + ' to ' + clock(last) + ' UTC'));
    marks.forEach(function (m) {
      var tip = m[3] + ': ' + spaced(m[1]) + ' at ' + clock(m[0]) + ' UTC';
      if (m[2]) { tip += ' (' + m[2] + ')'; }
      var g = titled(el('g', {'class': 'mark e-' + token(m[1])}), tip);
      g.appendChild(el('use', {
        href: '#' + (GLYPHS[m[1]] || 'g-dot'), x: x(m[0]).toFixed(1), y: mid.toFixed(1)
      }));
      svg.appendChild(g);
    });
  }
  function stops(svg, rows, mid) {
    rows.forEach(function (row) {
      var end = row[4][row[4].length - 1];
      if (OK[row[2]] || !end || STOPS[end[1]]) { return; }
      var tip = row[1] + ': ' + row[2] + ' after ' + spaced(end[1]) + ': ' + (row[3] || row[2]);
      var g = titled(el('g', {'class': 'mark stop'}), tip);
      g.appendChild(el('use', {
        href: '#g-stop', x: (x(end[0]) + 9).toFixed(1), y: mid.toFixed(1)
      }));
      svg.appendChild(g);
    });
  }
  function background(details, height, svg) {
    details.querySelectorAll(':scope > summary > svg > line').forEach(function (line) {
      var copy = line.cloneNode(true);
      copy.setAttribute('y2', height);
      svg.appendChild(copy);
    });
  }
  function drawRows(details, rows) {
    var height = G.row * rows.length;
    var svg = el('svg', {
      'class': 'servers', viewBox: '0 0 ' + G.width + ' ' + height, width: '100%',
      preserveAspectRatio: 'xMinYMin meet'
    });
    background(details, height, svg);
    rows.forEach(function (row, i) {
      var g = el('g', {
        'class': 'server-row o-' + token(row[2]), 'data-server': row[0],
        transform: 'translate(0 ' + i * G.row + ')'
      });
      g.appendChild(titled(el('text', {'class': 'sname', x: 22, y: 16}, clip(row[1], 36)), row[1]));
      g.appendChild(el('text', {
        'class': 'soutcome', x: G.x0 - 8, y: 16, 'text-anchor': 'end'
      }, row[2]));
      track(g, marksOf(row), G.row / 2, row[1], OK[row[2]] ? null : row[3], false);
      stops(g, [row], G.row / 2);
      svg.appendChild(g);
    });
    details.appendChild(svg);
  }
  tl.querySelectorAll('details.lane-block').forEach(function (details) {
    var lane = details.querySelector(':scope > summary > svg.lane');
    var data = details.querySelector(':scope > template.rows');
    var rows = data ? JSON.parse(data.content.textContent) : [];
    if (data) { data.remove(); }
    if (lane) {
      var marks = [].concat.apply([], rows.map(marksOf));
      marks.sort(function (a, b) { return a[0] - b[0]; });
      track(lane, marks, G.lane / 2, lane.dataset.title, lane.dataset.why || null, true);
      stops(lane, rows, G.lane / 2);
    }
    var drawn = !rows.length;
    function open() { if (!drawn) { drawn = true; drawRows(details, rows); } }
    var summary = details.querySelector(':scope > summary');
    if (summary) { summary.addEventListener('click', open); }
    details.addEventListener('toggle', function () { if (details.open) { open(); } });
  });
})();
"""
_ROWS_SCRIPT = (
    _ROWS_JS.replace("__GEOMETRY__", json.dumps(SCRIPT_GEOMETRY))
    .replace("__OK__", OK_JS)
    .replace("__STOPS__", json.dumps(dict.fromkeys(sorted(STOP_EVENTS), 1)))
    .replace("__GLYPHS__", json.dumps({e: g for e, (g, _) in EVENT_GLYPHS.items()}))
)

# Filters and reorders the table _TABLE_ROWS_JS filled; never inserts markup from the document.
_TABLE_SCRIPT = """
(function () {
  'use strict';
  var table = document.getElementById('server-table');
  var input = document.getElementById('filter');
  var select = document.getElementById('outcome');
  var shown = document.getElementById('shown');
  if (!table || !input || !select || !shown) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var ok = __OK__;
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
  document.body.dataset.ready = 'true';
  apply();
})();
""".replace("__OK__", OK_JS)

# Fills the server table from the rows' data (`_row`), before _TABLE_SCRIPT reads it: cells
# built with createElement and textContent, the markup `_row`'s fields once had in Python.
_TABLE_ROWS_JS = """
(function () {
  'use strict';
  var data = document.getElementById('server-rows');
  var table = document.getElementById('server-table');
  if (!data || !table) { return; }
  var rows = JSON.parse(data.content.textContent);
  data.remove();
  var OK = __OK__;
  var LABELS = [['lifecycle', 7], ['replication', 8], ['first boot', 9]];
  function td(cls, text) {
    var cell = document.createElement('td');
    if (cls) { cell.className = cls; }
    if (text !== undefined) { cell.textContent = text; }
    return cell;
  }
  function plain(value, cls) { return value ? td(cls, value) : td('muted', '-'); }
  function twoLine(name, ident) {
    var cell = td('');
    cell.dataset.v = name || ident;
    if (name) {
      cell.appendChild(document.createTextNode(name));
      cell.appendChild(document.createElement('br'));
    }
    var code = document.createElement('code');
    code.textContent = ident;
    cell.appendChild(code);
    return cell;
  }
  function state(r) {
    var cell = td('state');
    cell.dataset.v = r[7] || '';
    var any = false;
    LABELS.forEach(function (pair) {
      var value = r[pair[1]];
      if (!value) { return; }
      if (any) { cell.appendChild(document.createElement('br')); }
      var label = document.createElement('span');
      label.className = 'muted';
      label.textContent = pair[0];
      cell.appendChild(label);
      cell.appendChild(document.createTextNode(' ' + value));
      any = true;
    });
    if (!any) { cell.textContent = '-'; }
    return cell;
  }
  function time(value) {
    if (!Array.isArray(value)) { return plain(value, ''); }
    var cell = td('nw', value[1]);
    cell.dataset.v = value[0];
    cell.title = value[0];
    return cell;
  }
  var body = document.createDocumentFragment();
  rows.forEach(function (r) {
    var tr = document.createElement('tr');
    tr.className = OK[r[4]] ? 'ok' : 'problem';
    tr.dataset.outcome = r[4];
    var badge = document.createElement('span');
    badge.className = 'badge o-' + String(r[4]).replace(/[^A-Za-z0-9_]/g, '_');
    badge.textContent = r[4];
    var outcome = td('');
    outcome.appendChild(badge);
    var attempts = td('num', r[12]);
    attempts.dataset.v = r[11];
    [twoLine(r[1], r[0]), twoLine(r[2], r[3]), outcome, plain(r[5], ''), plain(r[6], ''),
      state(r), plain(r[10], 'nw'), attempts, time(r[13]), time(r[14])
    ].forEach(function (cell) { tr.appendChild(cell); });
    body.appendChild(tr);
  });
  table.tBodies[0].appendChild(body);
})();
""".replace("__OK__", OK_JS)

# One inline script, pinned by its hash in the page's Content-Security-Policy.
SCRIPT = _TABLE_ROWS_JS + _TABLE_SCRIPT + _ROWS_SCRIPT
