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
    changed, reasons = summary["changed"], summary["reasons"]
    return {
        "dag_id": dag_id,
        "batch_id": summary["key"],
        "state": summary["state"],
        "images": summary["images"],
        "images_found": summary["images_found"],
        "size_mb": round(summary["bytes_in"] / 1e6, 3),
        "reasons": json.loads(reasons) if reasons and reasons != "[]" else [],
        "warnings": summary["warnings"],
        "run_id": summary["run_id"],
        "changed": datetime.fromtimestamp(changed, UTC).isoformat() if changed else "",
        "object": summary["object_name"],
    }


def _ledgers(dag_id: str | None = None) -> list[Ledger]:
    """The ledgers of the configured DAGs that have a database (no run yet: none)."""
    found = []
    for folder in read_input_folders():
        if dag_id and folder.dag_id != dag_id:
            continue
        work_root = parse_time_setting(folder, "work_root", default_home() / "work")
        url = parse_time_setting(folder, "ledger_url", None)
        ledger = Ledger(work_root, folder.dag_id, url)
        if ledger.has_database():
            found.append(ledger)
    return found


def batch_rows(
    state: str | None = None, dag_id: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """The newest ``limit`` batch records (all by default) of the configured DAGs as
    PHI-free rows, newest change first: queried from the ledgers' databases (indexed by
    state and change time), no cache of their own."""
    rows = [
        _row(ledger.dag_id, summary)
        for ledger in _ledgers(dag_id)
        for summary in ledger.summaries(state, limit)
    ]
    rows.sort(key=lambda r: r["changed"], reverse=True)
    return rows if limit is None else rows[:limit]


def batch_counts(dag_id: str | None = None) -> dict[str, int]:
    """Batches per state over the configured DAGs."""
    counts: dict[str, int] = {}
    for ledger in _ledgers(dag_id):
        for state, n in ledger.state_counts().items():
            counts[state] = counts.get(state, 0) + n
    return counts


@app.get("/api/batches")
def api_batches(
    state: str | None = Query(None, description=f"one of {', '.join(STATES)}"),
    dag_id: str | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Batches as JSON, paginated (as sendit's /api/batches)."""
    counts = batch_counts(dag_id)
    return {
        "total": counts.get(state, 0) if state else sum(counts.values()),
        "offset": offset,
        "limit": limit,
        "batches": batch_rows(state, dag_id, offset + limit)[offset:],
    }


@app.get("/", response_class=HTMLResponse)
def page(state: str | None = None) -> str:
    """The dashboard page."""
    rows = batch_rows(state, limit=500)
    counts = batch_counts()
    if state:
        counts = {state: counts[state]} if counts.get(state) else {}
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
        for r in rows
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>sendit batches</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .6em;"
        "border-bottom:1px solid #ddd;text-align:left}</style></head><body>"
        f"<h1>sendit batches</h1><p>{summary} · <a href='?'>all</a></p>"
        "<table><tr><th>DAG</th><th>batch</th><th>state</th><th>images</th><th>MB</th>"
        f"<th>reasons</th><th>last change</th></tr>{body}</table></body></html>"
    )
