"""The dashboard's PACS section: per configured PACS, the requested items and studies by
state, and the latest studies (keyed ids, counts, sizes, reasons; never an accession number
or a UID, which the ledger does not hold).

``GET /sendit/api/pacs`` (JSON) and ``GET /sendit/pacs`` (a small table). Kept apart from
the batch views so the page templates can change without touching it.
"""

from __future__ import annotations

import html
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from sendit_ops.airflow.config import read_input_folders, server_settings
from sendit_ops.airflow.retrieve_dag import read_sources
from sendit_ops.pacs.request_ledger import RequestLedger

log = logging.getLogger("sendit")
router = APIRouter()
LATEST = 200


def pacs_summary(name: str | None = None, limit: int = LATEST) -> list[dict[str, Any]]:
    """One entry per configured PACS: counts by state and the latest studies."""
    folders = {f.name: f for f in read_input_folders()}
    out = []
    for source in read_sources():
        if name and source.name != name:
            continue
        folder = folders.get(source.input_folder)
        if folder is None:
            continue
        settings = server_settings(folder)
        ledger = RequestLedger(settings.work_root, source.name, settings.ledger_url)
        studies = ledger.studies(limit=limit)
        out.append(
            {
                "pacs": source.name,
                "dag_id": source.dag_id,
                "input_folder": source.input_folder,
                "items": ledger.item_counts(),
                "studies": ledger.study_counts(),
                "latest": [
                    {
                        "study": r.study_key,
                        "state": r.state,
                        "expected": r.expected,
                        "received": r.received,
                        "megabytes": round(r.bytes / 1e6, 2),
                        "seconds": r.seconds,
                        "attempts": r.attempts,
                        "reason": r.reason,
                        "run_id": r.run_id,
                        "updated_at": r.updated_at,
                    }
                    for r in studies
                ],
            }
        )
    return out


Name = Annotated[str | None, Query(description="one PACS (its name in sendit_pacs_sources)")]


@router.get("/api/pacs")
def api_pacs(pacs: Name = None, limit: int = LATEST) -> dict[str, Any]:
    return {"pacs": pacs_summary(pacs, max(1, min(limit, 5000)))}


@router.get("/pacs", response_class=HTMLResponse)
def pacs_page(pacs: Name = None) -> str:
    esc = html.escape
    parts = ["<!doctype html><title>sendit: PACS retrievals</title><h1>PACS retrievals</h1>"]
    for entry in pacs_summary(pacs):
        counts = ", ".join(f"{esc(k)} {v}" for k, v in sorted(entry["studies"].items()))
        items = ", ".join(f"{esc(k)} {v}" for k, v in sorted(entry["items"].items()))
        parts.append(
            f"<h2>{esc(entry['pacs'])}</h2><p>requested items: {items or 'none'}; "
            f"studies: {counts or 'none'}</p><table><tr><th>study</th><th>state</th>"
            "<th>expected</th><th>received</th><th>MB</th><th>s</th><th>attempts</th>"
            "<th>reason</th></tr>"
        )
        for r in entry["latest"]:
            parts.append(
                "<tr>"
                + "".join(
                    f"<td>{esc(str(v if v is not None else ''))}</td>"
                    for v in (
                        r["study"],
                        r["state"],
                        r["expected"],
                        r["received"],
                        r["megabytes"],
                        r["seconds"],
                        r["attempts"],
                        r["reason"],
                    )
                )
                + "</tr>"
            )
        parts.append("</table>")
    if len(parts) == 1:
        parts.append("<p>No PACS configured (Variable sendit_pacs_sources).</p>")
    return "".join(parts)
