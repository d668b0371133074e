"""The review desk's decisions: Release / Reject a HELD batch from the dashboard.

A decision is carried out the way every other one is: a DAG run of the batch's DAG with the
run parameter ``release`` or ``reject`` naming the batch (the run's discover checks it
again under the folder's run lock). The dashboard triggers that run on the logged-in user's
behalf with Airflow's own ``trigger_dag``, after Airflow's own authorization check (the
user may create runs of that DAG), so the run shows the reviewer as its triggering user
and nobody can decide more than the Airflow UI would let them.

Why a CSRF token: the Airflow UI keeps its session in a cookie, which a browser sends with
a form another site posts here. Each form carries a token bound to the session (an HMAC,
keyed by the API server's JWT secret, of the session's token), which another site cannot
read or compute; a POST without it, or with another session's, is refused (403). A client
with a bearer token needs the token computed from its own bearer token the same way (GET
``api/review/csrf``).

Before triggering, the decision is checked with ``pipeline.decisions.resolve_decisions``
(the same check as ``sendit run --release`` and the DAG's discover): the batch must be
HELD now, with the content it was held with. Every decision goes into the ledger's review
history (``sendit_reviews``: reviewer's Airflow user name, time, the run), shown on the
page.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated, Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse

from sendit_ops.airflow.config import env_variable, read_input_folders, server_settings
from sendit_ops.airflow.dashboard.queries import Source, find, sources
from sendit_ops.core.errors import ConfigError
from sendit_ops.core.ledger import Ledger
from sendit_ops.core.lifecycle import State
from sendit_ops.core.records import Review

router = APIRouter()
may_trigger = requires_access_dag(method="POST", access_entity=DagAccessEntity.RUN)
SESSION_COOKIE = "_token"  # Airflow's session cookie (COOKIE_NAME_JWT_TOKEN)
HISTORY_LIMIT = 50


def _credential(request: Request) -> str:
    """The credential this request is authenticated with (as Airflow's ``get_user`` picks
    it): a bearer token, else the session cookie."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        return token
    return request.cookies.get(SESSION_COOKIE, "")


def _secret() -> bytes:
    from airflow.configuration import conf

    secret = conf.get("api_auth", "jwt_secret", fallback="")
    if not secret:
        raise HTTPException(500, "the API server has no [api_auth] jwt_secret to sign forms")
    return str(secret).encode()


def csrf_token(request: Request) -> str:
    """The CSRF token of this request's session ("" without a session)."""
    credential = _credential(request)
    if not credential:
        return ""
    return hmac.new(_secret(), b"sendit-review\0" + credential.encode(), hashlib.sha256).hexdigest()


def _secret_key() -> bytes:
    """The sendit secret key (batch ids are keyed with it) as the API server reads it."""
    from airflow.models import Variable

    from sendit_ops.core.settings import SECRET_KEY_VARIABLE

    value = env_variable(SECRET_KEY_VARIABLE) or Variable.get(SECRET_KEY_VARIABLE, default_var=None)
    if not value:
        raise HTTPException(500, f"Airflow Variable '{SECRET_KEY_VARIABLE}' is missing")
    return str(value).encode()


def check_decision(ledger: Ledger, batch_id: str, decision: str) -> None:
    """Refuse (409) a decision the DAG run would refuse: the batch is not HELD of this
    input folder, or its folder changed since it was held (``resolve_decisions``)."""
    from sendit_ops.core.discovery import discover_input
    from sendit_ops.pipeline.decisions import resolve_decisions

    folder = next(f for f in read_input_folders() if f.dag_id == ledger.dag_id)
    settings = server_settings(folder)
    seen = discover_input(
        folder.path, _secret_key(), folder.name, settings.follow_external_symlinks
    )
    try:
        resolve_decisions(ledger, seen.batches, {batch_id: decision}, folder.name)
    except ConfigError as exc:
        raise HTTPException(409, str(exc)) from exc


def trigger(dag_id: str, batch_id: str, decision: str, user_name: str) -> str:
    """A run of ``dag_id`` with the decision, triggered as ``user_name``; its run id."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    run = trigger_dag(
        dag_id,
        triggered_by=DagRunTriggeredByType.UI,
        triggering_user_name=user_name,
        conf={decision: [batch_id]},
        note=f"{decision} of held batch {batch_id} on the sendit review desk",
    )
    if run is None:
        raise HTTPException(500, f"Airflow did not create a run of {dag_id}")
    return str(run.run_id)


@router.post(
    "/review/{dag_id}/{batch_id}",
    dependencies=[Depends(may_trigger)],
    status_code=303,
    response_class=RedirectResponse,
)
def decide(
    request: Request,
    dag_id: str,
    batch_id: str,
    user: GetUserDep,
    decision: Annotated[str, Form()],
    csrf: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Release or reject a HELD batch: checked, carried out by a DAG run triggered as the
    logged-in user, recorded in the review history; back to the page."""
    expected = csrf_token(request)
    if not csrf or not expected or not hmac.compare_digest(csrf, expected):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    if decision not in ("release", "reject"):
        raise HTTPException(400, "decision must be release or reject")
    found = find(batch_id)
    if found is None or found[0].dag_id != dag_id:
        raise HTTPException(404, f"no batch {batch_id} in DAG {dag_id}")
    ledger, record = found
    if record.state != State.HELD:
        raise HTTPException(409, f"batch {batch_id} is {record.state}, not HELD")
    check_decision(ledger, batch_id, decision)
    run_id = trigger(dag_id, batch_id, decision, user.get_name())
    ledger.record_review(
        Review(
            key=batch_id,
            decision=decision,
            images=len(record.outputs.held or []),
            reviewer=user.get_name(),
            decided_at=time.time(),
            run_id=run_id,
        )
    )
    root = request.scope.get("root_path", "")
    return RedirectResponse(f"{root}/?reviewed={batch_id}#reviews", status_code=303)


@router.get("/api/review/csrf")
def api_csrf(request: Request) -> dict[str, str]:
    """The CSRF token of the caller's session (for a script posting decisions)."""
    return {"csrf": csrf_token(request)}


def history(dag_id: str | None = None, found: list[Source] | None = None) -> list[dict[str, Any]]:
    """The newest decisions over the DAGs, newest first, with a link path to their run."""
    from sendit_ops.airflow.dashboard.queries import iso, run_path

    out: list[dict[str, Any]] = []
    for source in found if found is not None else sources(dag_id):
        for r in source.ledger.reviews(HISTORY_LIMIT):
            out.append(
                {
                    "dag_id": source.dag_id,
                    "batch_id": r.key,
                    "decision": r.decision,
                    "images": r.images,
                    "reviewer": r.reviewer,
                    "decided": iso(r.decided_at),
                    "decided_ts": int(r.decided_at),
                    "run_id": r.run_id,
                    "run_path": run_path(source.dag_id, r.run_id),
                }
            )
    out.sort(key=lambda r: r["decided_ts"], reverse=True)
    return out[:HISTORY_LIMIT]
