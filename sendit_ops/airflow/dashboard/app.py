"""The dashboard's FastAPI app, mounted by ``plugins/sendit_dashboard.py`` at ``/sendit``.

Every route needs a user who may see the Airflow UI (the UI's session cookie or a bearer
token), checked by Airflow's own dependency. A browser that is not logged in is sent from the
page to Airflow's login, which brings it back; the JSON API and the images answer 401/403
JSON as Airflow's REST API does, so scripts see the failure instead of a login form.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import requires_access_view
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sendit_ops.airflow.dashboard import review, view
from sendit_ops.airflow.dashboard.pacs import router as pacs_router
from sendit_ops.airflow.dashboard.queries import (
    BUCKET_MINUTES,
    THROUGHPUT_HOURS,
    BadQuery,
    Window,
    batch_counts,
    batch_rows,
    dag_ids,
    find,
    held,
    held_images,
    review_files,
    running,
    sources,
    throughput,
    totals,
)
from sendit_ops.core.lifecycle import STATES

may_view = requires_access_view(AccessView.WEBSITE)
app = FastAPI(title="sendit batches", dependencies=[Depends(may_view)])
app.include_router(pacs_router)  # the PACS section: /api/pacs and /pacs (dashboard/pacs.py)
app.include_router(review.router)  # Release / Reject of HELD batches (dashboard/review.py)

# the page's own scripts, styles and images only; no frame but Airflow's own UI
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
)
REFRESH_SECONDS = 10  # the page's reload interval while batches are in progress
STATIC = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    # Chart.js, vendored (static/chart.js.LICENSE.md; docs/operations.md: how to update it)
    "chart.umd.min.js": "text/javascript",
}

Text = Annotated[str | None, Query()]
StateQuery = Annotated[str | None, Query(description=f"one of {', '.join(STATES)}")]
Since = Annotated[
    str | None,
    Query(description="changed at or after: a date, an ISO 8601 time or epoch seconds"),
]
Until = Annotated[str | None, Query(description="changed before (a date: before its end)")]
Zone = Annotated[
    str | None, Query(description="IANA time zone of dates and times given without one")
]


def _window(since: str | None, until: str | None, tz: str | None) -> Window:
    try:
        return Window.parse(since, until, tz)
    except BadQuery as exc:
        raise HTTPException(400, str(exc)) from exc


def ui_base(request: Request) -> str:
    """The Airflow UI's base path, from where this app is mounted (``/sendit`` under it):
    links into the UI stay right when Airflow is served under a sub-path."""
    root = request.scope.get("root_path", "")
    return root.rsplit("/", 1)[0] + "/" if root else "/"


# ---- JSON --------------------------------------------------------------------------------


@app.get("/api/batches")
def api_batches(
    state: StateQuery = None,
    dag_id: Text = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    since: Since = None,
    until: Until = None,
    tz: Zone = None,
) -> dict[str, Any]:
    """Batches as JSON, newest change first, paginated (as sendit's /api/batches). Each
    row's ``run_path`` and ``log_path`` are pages of the Airflow UI, relative to its base
    URL."""
    window = _window(since, until, tz)
    found = sources(dag_id)
    counts = batch_counts(dag_id, window, found=found)
    return {
        "total": counts.get(state, 0) if state else sum(counts.values()),
        "offset": offset,
        "limit": limit,
        **window.as_json(),
        "batches": batch_rows(state, dag_id, offset + limit, window, found=found)[offset:],
    }


@app.get("/api/totals")
def api_totals(
    dag_id: Text = None, since: Since = None, until: Until = None, tz: Zone = None
) -> dict[str, Any]:
    """Per DAG and over all DAGs: batches, images and MB in each state, for the batches
    last changed inside the window (all of them without one)."""
    return totals(dag_id, _window(since, until, tz))


@app.get("/api/throughput")
def api_throughput(
    dag_id: Text = None,
    since: Since = None,
    until: Until = None,
    tz: Zone = None,
    bucket: Annotated[
        int | None, Query(description=f"minutes, one of {', '.join(map(str, BUCKET_MINUTES))}")
    ] = None,
) -> dict[str, Any]:
    """DONE batches per time bucket (by delivery time) with MB/min and images/h; the last
    48 hours in hourly buckets by default."""
    window = _window(since, until, tz)
    try:
        return throughput(dag_id, window, bucket, tz)
    except BadQuery as exc:
        raise HTTPException(400, str(exc)) from exc


@app.get("/api/running")
def api_running(dag_id: Text = None) -> dict[str, Any]:
    """The batches in QUEUE, PROCESSING or DONEPROCESSING with their stage."""
    return {"batches": running(dag_id)}


@app.get("/api/reviews")
def api_reviews(dag_id: Text = None) -> dict[str, Any]:
    """The review history: the newest release / reject decisions, who made them, when,
    and the DAG run that carried each out."""
    return {"reviews": review.history(dag_id)}


@app.get("/api/held")
def api_held_batches(dag_id: Text = None) -> dict[str, Any]:
    """The HELD batches with their held images (reason, masked boxes, thumbnail URL)."""
    return {"batches": held(dag_id)}


def _find(batch_id: str) -> Any:
    found = find(batch_id)
    if found is None:
        raise HTTPException(404, "no such batch")
    return found


@app.get("/api/batches/{batch_id}/held")
def api_held(batch_id: str) -> dict[str, Any]:
    """The held images of one batch and the reviewer's decision so far (release or reject
    with the run parameters ``release`` / ``reject``)."""
    _, record = _find(batch_id)
    return {
        "batch_id": record.key,
        "state": record.state,
        "review": dict(record.outputs.review or {}),
        "held": held_images(record),
        # delivered images whose pixels were masked, with the share of each (issue 22)
        "masked": [
            {"file": m["file"], "masked_share": m.get("masked_share", 0.0)}
            for m in record.outputs.masked or []
        ],
    }


@app.get("/review/{batch_id}/{name}")
def thumbnail(batch_id: str, name: str) -> FileResponse:
    """A held image's thumbnail: the MASKED output, as it would leave if released."""
    ledger, record = _find(batch_id)
    if name not in review_files(record):
        raise HTTPException(404, "no such thumbnail")
    path = ledger.batch_dir(record.key) / "review" / name
    if not path.is_file():
        raise HTTPException(404, "no such thumbnail")
    return FileResponse(path, media_type="image/png")


@app.get("/static/{name}")
def static(name: str) -> Response:
    """The page's scripts (its own and Chart.js) and style sheet, shipped in the package:
    nothing from a CDN, so the page works offline and under its script-src 'self'."""
    if name not in STATIC:
        raise HTTPException(404, "no such file")
    body = resources.files(__package__).joinpath("static", name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})


# ---- the page ------------------------------------------------------------------------------


@app.get("/", response_class=HTMLResponse)
def page(
    request: Request,
    state: StateQuery = None,
    dag_id: Text = None,
    since: Since = None,
    until: Until = None,
    tz: Zone = None,
    reviewed: Text = None,
) -> HTMLResponse:
    """The dashboard page: totals, throughput chart, batches in progress, held images and
    the batches table, all filtered by DAG and time window (the table also by state)."""
    filters = {
        k: v
        for k, v in {
            "dag_id": dag_id,
            "state": state if state in STATES else None,
            "since": since,
            "until": until,
            "tz": tz,
        }.items()
        if v
    }
    errors = []
    found = sources(dag_id)  # once per view: the settings are read from the database
    try:
        window = Window.parse(since, until, tz)
    except BadQuery as exc:
        errors.append(f"{exc}; showing every time")
        window = Window()
    try:
        chart = throughput(dag_id, window, None, tz, found=found)
    except BadQuery as exc:
        errors.append(f"{exc}; the chart shows the last {THROUGHPUT_HOURS} hours")
        chart = throughput(dag_id, found=found)
    sums = totals(dag_id, window, found=found)
    counts = {s: v["batches"] for s, v in sums["total"]["states"].items()}
    state = filters.get("state")
    in_progress = running(dag_id, found=found)
    body = view.render(
        ui_base=ui_base(request),
        filters=filters,
        dags=dag_ids(),
        counts=counts,
        totals=sums,
        chart=chart,
        running=in_progress,
        held=held(dag_id, found=found),
        rows=batch_rows(state, dag_id, view.PAGE_ROWS, window, found=found),
        total=counts.get(state, 0) if state else sum(counts.values()),
        error=" ".join(errors),
        csrf=review.csrf_token(request),
        reviews=review.history(dag_id, found),
        reviewed=reviewed or "",
        # reload while batches are queued or in progress; a finished view stays still
        refresh=REFRESH_SECONDS if in_progress else 0,
    )
    return HTMLResponse(body, headers={"Content-Security-Policy": PAGE_POLICY})


@app.exception_handler(StarletteHTTPException)
async def _not_allowed(request: Request, exc: StarletteHTTPException) -> Response:
    """The page of a browser without a valid session goes to Airflow's login (which comes
    back here); every other answer, and the JSON API always, stays Airflow's JSON error."""
    if request.scope.get("endpoint") is page and (
        exc.status_code == 401 or (exc.status_code == 403 and exc.detail == "Invalid JWT token")
    ):
        return RedirectResponse(login_url(request), status_code=303)
    return await http_exception_handler(request, exc)


def login_url(request: Request) -> str:
    """Airflow's login page (whatever the auth manager), back to this page afterwards."""
    from airflow.api_fastapi.app import get_auth_manager

    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return get_auth_manager().get_url_login(next_url=back)
