"""The batches dashboard (sendit's status page), served by Airflow's API server as a plugin.

``/sendit/`` shows the batches of every sendit DAG (state, images, size, reasons, last
change) and ``/sendit/api/batches`` returns them as paginated JSON (``state``, ``dag_id``,
``offset``, ``limit``). Both need a user who may see the Airflow UI (browser session cookie or
bearer token). Nothing identifying is shown: batch ids are keyed hashes, reasons name rules
and tags; source folder paths are never included.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import requires_access_view
from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse

from sendit_ops.dag_factory import parse_time_setting, read_input_folders
from sendit_ops.ledger import STATES, Ledger
from sendit_ops.settings import default_home

app = FastAPI(
    title="sendit batches", dependencies=[Depends(requires_access_view(AccessView.WEBSITE))]
)


def _row(dag_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    changed = summary["changed"]
    return {
        "dag_id": dag_id,
        "batch_id": summary["key"],
        "state": summary["state"],
        "images": summary["images"],
        "images_found": summary["images_found"],
        "size_mb": round(summary["bytes_in"] / 1e6, 3),
        "reasons": json.loads(summary["reasons"] or "[]"),
        "warnings": summary["warnings"],
        "run_id": summary["run_id"],
        "changed": datetime.fromtimestamp(changed, UTC).isoformat() if changed else "",
        "object": summary["object_name"],
    }


def _ledger_rows(ledger: Ledger, state: str | None) -> list[dict[str, Any]]:
    """A ledger's rows, from the database's dashboard columns (no record is parsed, no
    cache is needed: the database is the one place a state changes)."""
    if not ledger.has_database():
        return []  # no run wrote a record yet
    return [_row(ledger.dag_id, s) for s in ledger.summaries(state)]


def batch_rows(state: str | None = None, dag_id: str | None = None) -> list[dict[str, Any]]:
    """Every batch record of the configured DAGs as PHI-free rows, newest change first."""
    rows = []
    for folder in read_input_folders():
        if dag_id and folder.dag_id != dag_id:
            continue
        work_root = parse_time_setting(folder, "work_root", default_home() / "work")
        url = parse_time_setting(folder, "ledger_url", None)
        rows += _ledger_rows(Ledger(work_root, folder.dag_id, url), state)
    return sorted(rows, key=lambda r: r["changed"], reverse=True)


@app.get("/api/batches")
def api_batches(
    state: str | None = Query(None, description=f"one of {', '.join(STATES)}"),
    dag_id: str | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Batches as JSON, paginated (as sendit's /api/batches)."""
    rows = batch_rows(state, dag_id)
    return {
        "total": len(rows),
        "offset": offset,
        "limit": limit,
        "batches": rows[offset : offset + limit],
    }


@app.get("/", response_class=HTMLResponse)
def page(state: str | None = None) -> str:
    """The dashboard page."""
    rows = batch_rows(state)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    summary = (
        " · ".join(f'<a href="?state={s}">{s} {counts[s]}</a>' for s in STATES if s in counts)
        or "no batches yet"
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (
                r["dag_id"],
                r["batch_id"],
                r["state"],
                r["images"],
                r["size_mb"],
                "; ".join(r["reasons"]),
                r["changed"],
            )
        )
        + "</tr>"
        for r in rows[:500]
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>sendit batches</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .6em;"
        "border-bottom:1px solid #ddd;text-align:left}</style></head><body>"
        f"<h1>sendit batches</h1><p>{summary} · <a href='?'>all</a></p>"
        "<table><tr><th>DAG</th><th>batch</th><th>state</th><th>images</th><th>MB</th>"
        f"<th>reasons</th><th>last change</th></tr>{body}</table></body></html>"
    )
