"""The dashboard's HTML, rendered on the server by Jinja2 templates (``templates/``) from
the queries' PHI-free rows.

Why server-rendered: the page reads like a report (totals, batches, held images) and works
without JavaScript; ``static/dashboard.js`` then adds what only the browser can do: times in
the reader's time zone, the throughput chart, and links that open Airflow pages in the
Airflow UI around the page's frame.

Why the chart is still drawn by ``dashboard.js`` (an SVG of bars and a line, ~120 lines)
rather than a chart library: Airflow's UI bundles Chart.js inside its hashed React bundle
(``airflow/ui/dist/assets/index-*.js``), which a plugin page cannot load as a library, and
vendoring a second copy (Chart.js ~200 kB, a licence and a version to track) would buy a
chart this page does not need; the page's Content-Security-Policy allows its own files only.

Autoescaping is on for every template, so no value reaches the page unescaped (attributes
are single-quoted; MarkupSafe escapes ``'`` too). Links into the Airflow UI carry
``target="_top"`` and their UI-relative path in ``data-airflow-path`` (see the script for
why both).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from sendit_ops.core.lifecycle import STATES

PAGE_ROWS = 500  # the batches table shows the newest rows; the filters narrow it down


def _utc(ts: float) -> str:
    return f"{datetime.fromtimestamp(int(ts), UTC):%Y-%m-%d %H:%M:%S}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).isoformat().replace("+00:00", "Z")


def _place(box: list[int], rows: int, columns: int) -> str:
    """Where a box [x0, y0, x1, y1] sits in a rows x columns image, in words ("top left",
    "bottom", "middle"), from its centre's third of the height and of the width."""
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    row = ("top", "", "bottom")[min(2, int(3 * y / max(1, rows)))]
    column = ("left", "", "right")[min(2, int(3 * x / max(1, columns)))]
    return " ".join(p for p in (row, column) if p) or "middle"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("sendit_ops.airflow.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,  # a misspelt name fails the render, not the reader
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(utc=_utc, iso=_iso, urlquote=lambda v: quote(str(v), safe=""), place=_place)
    # JSON inside <script type='application/json'>: "<" escaped so no "</script>" ends it
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "sort_keys": False}
    return env


ENV = _environment()


def query_link(filters: dict[str, str], **changes: str | None) -> str:
    """The page's own address with ``filters`` changed (None drops a filter)."""
    merged = {**filters, **changes}
    return "?" + urlencode({k: v for k, v in merged.items() if v})


def render_template(name: str, **context: Any) -> str:
    """One of the dashboard's templates with ``context`` (autoescaped)."""
    return ENV.get_template(name).render(states=STATES, **context)


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
    notice: str = "",
    refresh: int = 0,
    csrf: str = "",
    reviews: list[dict[str, Any]] | None = None,
    reviewed: str = "",
) -> str:
    """The whole page; ``refresh``: seconds between reloads while batches are in progress
    (0: none)."""
    return render_template(
        "page.html",
        ui_base=ui_base,
        filters=filters,
        query=lambda **changes: query_link(filters, **changes),
        dags=dags,
        counts=counts,
        totals=totals,
        chart=chart,
        running=running,
        held=held,
        rows=rows,
        total=total,
        error=error,
        notice=notice,
        refresh=refresh,
        csrf=csrf,
        reviews=reviews or [],
        reviewed=reviewed,
    )
