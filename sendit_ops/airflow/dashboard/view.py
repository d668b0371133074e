"""The dashboard page as HTML, rendered on the server from the queries' PHI-free rows.

Why server-rendered: the page reads like a report (totals, batches, held images) and works
without JavaScript; ``static/dashboard.js`` then adds what only the browser can do: times in
the reader's time zone, the throughput chart (inline SVG, no library, nothing fetched from
outside), and links that open Airflow pages in the Airflow UI around the page's frame.

Every value is HTML-escaped; links into the Airflow UI carry ``target="_top"`` and their
UI-relative path in ``data-airflow-path`` (see the script for why both).
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from sendit_ops.core.lifecycle import STATES, State

PAGE_ROWS = 500  # the batches table shows the newest rows; the filters narrow it down


def esc(value: Any) -> str:
    """Escape a value for HTML text and attributes."""
    return html.escape(str(value), quote=True)


def when(ts: float) -> str:
    """A time the script rewrites in the reader's zone; UTC to the second without it."""
    if not ts:
        return ""
    moment = datetime.fromtimestamp(int(ts), UTC)
    return (
        f"<time datetime='{moment.isoformat().replace('+00:00', 'Z')}' data-ts='{int(ts)}'>"
        f"{moment:%Y-%m-%d %H:%M:%S} UTC</time>"
    )


def ui_link(ui_base: str, path: str, text: str, title: str = "") -> str:
    """A link to a page of the Airflow UI (a DAG run, a task's log)."""
    if not path:
        return ""
    tip = f" title='{esc(title)}'" if title else ""
    return (
        f"<a href='{esc(ui_base + path)}' target='_top' data-airflow-path='{esc(path)}'{tip}>"
        f"{esc(text)}</a>"
    )


def _query(filters: dict[str, str], **changes: str | None) -> str:
    merged = {**filters, **changes}
    return "?" + urlencode({k: v for k, v in merged.items() if v})


def _state_line(counts: dict[str, int], filters: dict[str, str]) -> str:
    chips = [
        f"<a href='{esc(_query(filters, state=s))}' class='state {s.lower()}'>{s} {counts[s]}</a>"
        for s in STATES
        if counts.get(s)
    ]
    chips.append(f"<a href='{esc(_query(filters, state=None))}'>all</a>")
    return " · ".join(chips) if len(chips) > 1 else "no batches yet · " + chips[-1]


def _filters_form(filters: dict[str, str], dags: list[str]) -> str:
    def options(values: list[str], chosen: str, everything: str) -> str:
        return f"<option value=''>{everything}</option>" + "".join(
            f"<option{' selected' if v == chosen else ''}>{esc(v)}</option>" for v in values
        )

    return (
        "<form method='get' class='filters' id='filters'>"
        f"<label>DAG <select name='dag_id'>{options(dags, filters.get('dag_id', ''), 'all')}"
        "</select></label>"
        f"<label>state <select name='state'>"
        f"{options(list(STATES), filters.get('state', ''), 'all')}</select></label>"
        f"<label>changed from <input type='date' name='since' "
        f"value='{esc(filters.get('since', ''))}'></label>"
        f"<label>to <input type='date' name='until' value='{esc(filters.get('until', ''))}'>"
        "</label>"
        f"<input type='hidden' name='tz' value='{esc(filters.get('tz', ''))}'>"
        "<button type='submit'>apply</button> <a href='?'>reset</a></form>"
    )


def _totals_table(totals: dict[str, Any], filters: dict[str, str]) -> str:
    head = "".join(f"<th class='num'>{s}</th>" for s in STATES)

    def line(t: dict[str, Any], name: str, dag_id: str | None) -> str:
        cells = []
        for s in STATES:
            v = t["states"].get(s)
            if v:
                tip = f"{v['images']} images, {v['mb']:g} MB"
                href = _query(filters, state=s, dag_id=dag_id or filters.get("dag_id"))
                cells.append(
                    f"<td class='num'><a href='{esc(href)}' title='{esc(tip)}'>"
                    f"{v['batches']}</a></td>"
                )
            else:
                cells.append("<td class='num zero'>0</td>")
        done = t["states"].get("DONE") or {"images": 0, "mb": 0}
        return (
            f"<tr><th>{esc(name)}</th>{''.join(cells)}<td class='num'>{t['batches']}</td>"
            f"<td class='num'>{t['images']}</td><td class='num'>{t['mb']:.1f}</td>"
            f"<td class='num'>{done['images']}</td><td class='num'>{done['mb']:.1f}</td></tr>"
        )

    rows = "".join(line(t, t["dag_id"], t["dag_id"]) for t in totals["dags"])
    if len(totals["dags"]) != 1:
        rows += line(totals["total"], "all DAGs", None)
    return (
        "<table class='totals'><thead><tr><th>DAG</th>"
        f"{head}<th class='num'>batches</th><th class='num'>images</th><th class='num'>MB</th>"
        "<th class='num'>images delivered</th><th class='num'>MB delivered</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _chart(chart: dict[str, Any]) -> str:
    t = chart["total"]
    data = json.dumps(chart, separators=(",", ":")).replace("<", "\\u003c")
    hours = len(chart["buckets"]) * chart["bucket_minutes"] / 60
    return (
        "<figure class='chart'>"
        "<svg id='throughput-chart' role='img' aria-label='throughput of delivered batches' "
        "viewBox='0 0 900 260' preserveAspectRatio='xMidYMid meet'></svg>"
        f"<script type='application/json' id='throughput-data'>{data}</script>"
        f"<figcaption>DONE batches by delivery time, per {chart['bucket_minutes']} min, "
        f"from {when(chart['buckets'][0]['start_ts']) if chart['buckets'] else ''} "
        f"({hours:g} h): {t['batches']} batches, {t['images']} images, {t['mb']:g} MB; "
        f"on average {t['mb_per_min']:g} MB/min and {t['images_per_h']:g} images/h. "
        "Bars: MB/min; line: images/h (averages over each bucket).</figcaption></figure>"
    )


def _running_table(rows: list[dict[str, Any]], ui_base: str) -> str:
    if not rows:
        return "<p class='none'>No batch is queued or being processed.</p>"
    body = "".join(
        f"<tr><td>{esc(r['dag_id'])}</td><td class='id'>{esc(r['batch_id'])}</td>"
        f"<td><span class='state {r['state'].lower()}'>{esc(r['state'])}</span></td>"
        f"<td>{esc(r['label'])}</td>"
        f"<td>{esc(r['last_step'])} {when(r['last_step_ts'])}</td>"
        f"<td>{when(r['changed_ts'])}</td>"
        f"<td>{ui_link(ui_base, r['run_path'], 'run', r['run_id'])}</td></tr>"
        for r in rows
    )
    return (
        "<table class='running'><thead><tr><th>DAG</th><th>batch</th><th>state</th>"
        "<th>stage</th><th>last step finished</th><th>in this state since</th><th></th></tr>"
        f"</thead><tbody>{body}</tbody></table>"
    )


def _held_section(batches: list[dict[str, Any]], ui_base: str) -> str:
    if not batches:
        return "<p class='none'>No batch is held for review.</p>"
    out = []
    for b in batches:
        figures = "".join(
            "<figure class='thumb'>"
            + (
                f"<a href='{esc(h['thumbnail'])}'>"
                f"<img src='{esc(h['thumbnail'])}' alt='masked {esc(h['file'])}' "
                "loading='lazy'></a>"
                if h["thumbnail"]
                else "<div class='nothumb'>no thumbnail</div>"
            )
            + f"<figcaption><b>{esc(h['file'])}</b> {esc(h['reason'])}"
            + (f" · {len(h['boxes'])} masked box(es)" if h["boxes"] else "")
            + (f" · {h['masked_share']:.1%} of the image" if h.get("masked_share") else "")
            + "</figcaption></figure>"
            for h in b["held"]
        )
        decision = b["review"].get("decision")
        out.append(
            f"<article class='held-batch' id='held-{esc(b['batch_id'])}'><h3>"
            + " · ".join(
                x
                for x in (
                    f"<span class='id'>{esc(b['batch_id'])}</span>",
                    esc(b["dag_id"]),
                    f"held {when(b['changed_ts'])}",
                    ui_link(ui_base, b["run_path"], "run", b["run_id"]),
                    ui_link(ui_base, b["log_path"], "log", b["log_task"]),
                )
                if x
            )
            + "</h3>"
            f"<p>{esc('; '.join(b['reasons']))}"
            + (f" (reviewer's decision so far: {esc(decision)})" if decision else "")
            + "</p>"
            f"<div class='thumbs'>{figures}</div>"
            "<p class='hint'>Thumbnails show the masked output as it would leave. Trigger "
            f"{ui_link(ui_base, 'dags/' + quote(b['dag_id'], safe=''), 'the DAG')} with "
            f"<code>release</code> or <code>reject</code> = <code>{esc(b['batch_id'])}</code>."
            "</p></article>"
        )
    return "".join(out)


def _batch_table(rows: list[dict[str, Any]], total: int, ui_base: str) -> str:
    if not rows:
        return "<p class='none'>No batch matches these filters.</p>"
    body = []
    for r in rows:
        links = " · ".join(
            x
            for x in (
                ui_link(ui_base, r["run_path"], "run", r["run_id"]),
                ui_link(ui_base, r["log_path"], "log", f"task {r['log_task']}"),
                f"<a href='#held-{esc(r['batch_id'])}'>held images</a>"
                if r["state"] == State.HELD
                else "",
            )
            if x
        )
        body.append(
            f"<tr data-state='{esc(r['state'])}'><td>{esc(r['dag_id'])}</td>"
            f"<td class='id'>{esc(r['batch_id'])}</td>"
            f"<td><span class='state {r['state'].lower()}'>{esc(r['state'])}</span></td>"
            f"<td class='num'>{r['images']}</td><td class='num'>{r['size_mb']:.2f}</td>"
            f"<td class='reasons'>{esc('; '.join(r['reasons']))}</td>"
            f"<td>{when(r['changed_ts'])}</td><td class='links'>{links}</td></tr>"
        )
    shown = f"newest {len(rows)} of {total}" if total > len(rows) else f"{total}"
    return (
        f"<p class='count'>{shown} batch(es)</p>"
        "<table class='batches' id='batch-table'><thead><tr><th>DAG</th><th>batch</th>"
        "<th>state</th><th class='num'>images</th><th class='num'>MB</th><th>reasons</th>"
        f"<th>last change</th><th>Airflow</th></tr></thead><tbody>{''.join(body)}</tbody>"
        "</table>"
    )


def render(
    *,
    ui_base: str,
    filters: dict[str, str],
    dags: list[str],
    counts: dict[str, int],
    totals: dict[str, Any],
    chart: dict[str, Any],
    running: list[dict[str, Any]],
    held: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    total: int,
    error: str = "",
) -> str:
    """The whole page."""
    banner = f"<p class='error' role='alert'>{esc(error)}</p>" if error else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>sendit batches</title>"
        "<link rel='stylesheet' href='static/dashboard.css'>"
        "<script src='static/dashboard.js' defer></script></head>"
        f"<body data-ui-base='{esc(ui_base)}'>"
        "<header><p class='back'>"
        f"{ui_link(ui_base, 'dags?tags=sendit', '← Airflow: sendit DAGs')}</p>"
        "<h1>sendit batches</h1>"
        f"<p class='states'>{_state_line(counts, filters)}</p>"
        f"{_filters_form(filters, dags)}{banner}"
        "<p class='note'>Times are shown in <span id='tz-name'>UTC</span>. Batch ids are keyed "
        "hashes: nothing here identifies a patient or names a source folder.</p></header>"
        "<main>"
        f"<section id='totals'><h2>Totals</h2>{_totals_table(totals, filters)}</section>"
        f"<section id='throughput'><h2>Throughput</h2>{_chart(chart)}</section>"
        f"<section id='running'><h2>Queued and in progress ({len(running)})</h2>"
        f"{_running_table(running, ui_base)}</section>"
        f"<section id='held'><h2>Held for review ({len(held)})</h2>"
        f"{_held_section(held, ui_base)}</section>"
        f"<section id='batches'><h2>Batches</h2>{_batch_table(rows, total, ui_base)}</section>"
        "</main></body></html>"
    )
