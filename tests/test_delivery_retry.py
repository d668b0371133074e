"""Issue 17: one delivery loop over a Target, and failures classified so that Airflow
retries what a retry can fix.

- ``classify``: unreachable services, timeouts, 429 and 5xx are transient; credentials,
  permissions and missing buckets are configuration; the rest condemns one batch.
- the loop (``sendit_ops.delivery.loop.deliver``), on the outbox and on real emulators
  (fake-gcs-server, crucible): a transient failure raises TransientError and leaves the
  batches not delivered in DONEPROCESSING; the next call delivers each once (one object,
  one row); a row failure removes the objects the call created.
- a live Airflow (scheduler, LocalExecutor, PostgreSQL): Cloud Storage unreachable for a
  while during delivery → the deliver task fails, Airflow retries it, the retry delivers
  every batch once and the run succeeds.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import ROOT
from emulators import start_bigquery, start_gcs
from fault_proxy import FaultProxy
from google.api_core import exceptions as gexc
from test_google_delivery import (  # noqa: F401  (fixtures: the emulators, a fresh bucket)
    PROJECT,
    emulators,
    google,
    google_settings,
    objects,
    rows,
)

from sendit_ops.core.discovery import find_batches
from sendit_ops.core.errors import (
    ConfigError,
    DeliveryError,
    Failure,
    LeakError,
    TransientError,
    classify,
)
from sendit_ops.core.lifecycle import Step
from sendit_ops.delivery import outbox as box
from sendit_ops.delivery.loop import DeliveryCounts, deliver
from sendit_ops.delivery.outbox import OutboxTarget
from sendit_ops.delivery.target import Present, PutStatus, RowCounts, decide
from sendit_ops.sample_data import PATIENTS, write_study

# ---- classification ---------------------------------------------------------------------


def _http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"HTTP {status}", response=response)


def _retry_error() -> gexc.RetryError:
    cause = requests.ConnectionError("refused")
    return gexc.RetryError("Timeout of 120.0s exceeded", cause)


def _google_auth(kind: str, **kwargs):
    from google.auth import exceptions

    return getattr(exceptions, kind)("x", **kwargs)


def _httpx_connect():
    import httpx

    return httpx.ConnectError("refused")


TRANSIENT = [
    gexc.ServiceUnavailable("503"),
    gexc.InternalServerError("500"),
    gexc.TooManyRequests("429"),
    gexc.BadGateway("502"),
    gexc.GatewayTimeout("504"),
    gexc.DeadlineExceeded("deadline"),
    _retry_error(),
    requests.ConnectionError("refused"),
    requests.ConnectTimeout("slow"),
    requests.ReadTimeout("slow"),
    requests.exceptions.ChunkedEncodingError("cut"),
    ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
    ConnectionResetError(errno.ECONNRESET, "reset"),
    http.client.RemoteDisconnected("closed"),
    http.client.IncompleteRead(b""),
    TimeoutError("timed out"),
    socket.timeout("timed out"),  # noqa: UP041  (the name libraries raise)
    OSError(errno.EHOSTUNREACH, "no route to host"),
    OSError(errno.ENETUNREACH, "network unreachable"),
    _http_error(503),
    _http_error(429),
    _http_error(408),
    _google_auth("TransportError"),
    _google_auth("RefreshError", retryable=True),
    _httpx_connect(),
    gexc.BadRequest("Query error: Transaction is aborted due to concurrent update against t"),
    gexc.BadRequest("Could not serialize access to table p:d.t due to concurrent update"),
    TransientError("later"),
]
CONFIG = [
    gexc.Forbidden("403"),
    gexc.NotFound("no such bucket"),
    gexc.Unauthorized("401"),
    _http_error(403),
    _http_error(404),
    _google_auth("RefreshError"),
    _google_auth("DefaultCredentialsError"),
    ConfigError("missing setting"),
]
PERMANENT = [
    gexc.BadRequest("400"),
    gexc.Conflict("409"),
    gexc.PreconditionFailed("412"),
    _http_error(400),
    DeliveryError("different object"),
    LeakError("leak"),
    OSError(errno.ENOSPC, "No space left on device"),
    PermissionError(errno.EACCES, "denied"),
    ValueError("bug"),
    KeyError("object_name"),
]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("exc", "kind"),
    [(e, Failure.TRANSIENT) for e in TRANSIENT]
    + [(e, Failure.CONFIG) for e in CONFIG]
    + [(e, Failure.PERMANENT) for e in PERMANENT],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_classify(exc, kind):
    """The core's rules with the vendors' classifiers the adapters pass (the Google target,
    the DASHER client's requests stack, the hook's httpx)."""
    from sendit_ops.airflow.dasher_hook import airflow_api_failure
    from sendit_ops.airflow.google_target import google_failure
    from sendit_ops.pseudonyms.dasher_client import requests_failure

    assert classify(exc, (google_failure, requests_failure, airflow_api_failure)) is kind


@pytest.mark.unit
def test_the_core_classifies_without_vendor_libraries():
    """core.errors imports no vendor library: its own rules cover sendit's errors, a full
    disk, HTTP statuses (duck-typed) and the standard library's network errors."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"  # .pth files load the 'google' namespace at start
        "from sendit_ops.core.errors import Failure, classify\n"
        "assert classify(ConnectionResetError()) is Failure.TRANSIENT\n"
        "banned = {'google', 'requests', 'urllib3', 'httpx', 'airflow'}\n"
        "print(sorted(banned & {m.split('.')[0] for m in set(sys.modules) - before}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
    assert classify(_http_error(503)) is Failure.TRANSIENT  # the status, duck-typed


@pytest.mark.unit
def test_transient_error_is_not_a_config_error():
    """The task wrapper fails ConfigError at once: a TransientError must never be one."""
    assert not issubclass(TransientError, ConfigError)


@pytest.mark.unit
def test_task_wrapper_retries_transient_and_fails_config_errors_at_once():
    from airflow.sdk.exceptions import AirflowFailException

    from sendit_ops.airflow.dag_factory import _no_retry_on_config_errors

    @_no_retry_on_config_errors
    def raising(exc):
        raise exc

    with pytest.raises(TransientError):  # Airflow retries it (RETRIES)
        raising(TransientError("GCS unreachable"))
    with pytest.raises(AirflowFailException, match="bucket"):
        raising(ConfigError("bucket 'x' does not exist"))


# ---- setup errors: Google preflight, DASHER connection -----------------------------------


class _Storage:
    def __init__(self, exc):
        self.exc = exc

    def lookup_bucket(self, name):
        raise self.exc


@pytest.mark.unit
@pytest.mark.parametrize(
    ("exc", "raised", "words"),
    [
        (_retry_error(), TransientError, "cannot reach Google Cloud Storage now"),
        (gexc.ServiceUnavailable("x"), TransientError, "the task is retried"),
        (gexc.Forbidden("x"), ConfigError, "check the connection's credentials"),
        (_google_auth("RefreshError"), ConfigError, "cannot use bucket 'b'"),
    ],
)
def test_preflight_sorts_transient_from_configuration(monkeypatch, exc, raised, words):
    from sendit_ops.airflow import google_target
    from sendit_ops.core.settings import load_settings

    monkeypatch.setattr(google_target, "_clients", lambda s: (_Storage(exc), None))
    settings = load_settings(
        {"send_to_google": True, "google_cloud_storage": "b", "google_project_name": "p"}
    )
    with pytest.raises(raised, match=words):
        google_target.preflight(settings)


@pytest.mark.unit
def test_dasher_connection_errors_are_classified(monkeypatch):
    import httpx
    from airflow.sdk.exceptions import AirflowNotFoundException

    from sendit_ops.airflow.dasher_hook import DasherHook

    def connection(exc):
        def get(self, conn_id):
            raise exc

        return get

    hook = DasherHook("dasher_x")
    monkeypatch.setattr(DasherHook, "get_connection", connection(httpx.ConnectError("down")))
    with pytest.raises(TransientError, match="cannot be read now"):
        hook.check_configured()
    monkeypatch.setattr(DasherHook, "get_connection", connection(AirflowNotFoundException("x")))
    with pytest.raises(ConfigError, match="'dasher_x' does not exist"):
        hook.check_configured()

    class Conn:
        host, port, login, password = "ftp://dasher", None, "", "token"
        extra_dejson = {"refresh_token": "r", "token_uri": "https://t/token"}

    monkeypatch.setattr(DasherHook, "get_connection", lambda self, conn_id: Conn())
    with pytest.raises(ConfigError, match=r"is invalid .*http"):
        hook.check_configured()
    Conn.host, Conn.extra_dejson = "https://dasher", {**Conn.extra_dejson, "timeout": "soon"}
    with pytest.raises(ConfigError, match="invalid extra"):
        hook.check_configured()


# ---- the replace-own rule -----------------------------------------------------------------


@pytest.mark.unit
def test_decide_create_keep_replace_own_refuse_foreign():
    own = {"a" * 64}
    assert decide(None, own, "conflict") is PutStatus.CREATED
    assert decide(Present(identical=True, version="f" * 64), own, "c") is PutStatus.EXISTS
    assert decide(Present(identical=False, version="a" * 64), own, "c") is PutStatus.REPLACED
    # a version the ledger does not know: refused with the way out (a lost ledger?) ...
    unknown = Present(identical=False, version="f" * 64)
    with pytest.raises(DeliveryError, match=r"^conflict; .* rerun the batch with --reprocess"):
        decide(unknown, own, "conflict")
    # ... and replaced (recorded) when the run reprocesses
    assert decide(unknown, own, "c", replace_unknown=True) is PutStatus.REPLACED_UNKNOWN
    # no version of sendit's at all (not sendit's object): refused, whatever the run asked
    for ask in (False, True):
        with pytest.raises(DeliveryError, match=r"^conflict$"):
            decide(Present(identical=False), own, "conflict", replace_unknown=ask)


@pytest.mark.unit
def test_counts_keep_each_targets_keys():
    to_google = DeliveryCounts(rows=RowCounts(sent=0))
    to_google.add(PutStatus.CREATED)
    assert to_google.as_dict() == {"created": 1, "exists": 0, "replaced": 0, "failed": 0, "rows": 0}
    outbox = DeliveryCounts(rows=RowCounts(sent=2, inserted=1, updated=1, unchanged=0))
    assert list(outbox.as_dict()) == [
        *("created", "exists", "replaced", "failed"),
        *("inserted", "updated", "unchanged"),
    ]
    assert list(DeliveryCounts().as_dict()) == ["created", "exists", "replaced", "failed"]


# ---- the loop ---------------------------------------------------------------------------


def _packaged(pipe, inbox: Path, studies: int = 2) -> list[str]:
    for i in range(studies):
        write_study(inbox / f"ACC{i + 1}", PATIENTS[i], f"ACC{i + 1}", "20240115", "CT", 1, 1)
    keys = pipe.register(find_batches(inbox, pipe.secret_key, inbox.name))
    pipe.run(Step.PROCESS, keys)
    return keys


def _states(pipe, keys) -> list[str]:
    return sorted(pipe.ledger.load(k).state for k in keys)


class _Failing:
    """Calls ``fn``, raising ``exc`` instead on the calls numbered in ``on`` (1-based)."""

    def __init__(self, fn, exc: Exception, on: set[int]):
        self.fn, self.exc, self.on, self.calls = fn, exc, on, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls in self.on:
            raise self.exc
        return self.fn(*args, **kwargs)


@pytest.mark.emulator
def test_outbox_unreachable_then_the_retry_delivers_once(tmp_path, make_pipeline, monkeypatch):
    """An outbox on a network mount timing out (ETIMEDOUT) on the second object: the first
    batch is delivered, the second stays DONEPROCESSING, the call raises TransientError;
    the retry delivers the second once."""
    pipe = make_pipeline()
    keys = _packaged(pipe, tmp_path / "in")
    stalled = _Failing(box.put_object, OSError(errno.ETIMEDOUT, "timed out"), {2})
    monkeypatch.setattr(box, "put_object", stalled)
    target = OutboxTarget.from_settings(pipe.settings)
    with pytest.raises(TransientError, match="outbox failed for now"):
        deliver(pipe, target, keys)
    assert _states(pipe, keys) == ["DONE", "DONEPROCESSING"]
    assert len(list((tmp_path / "outbox" / "Collection").rglob("*.tar.gz"))) == 1

    counts = deliver(pipe, target, keys)  # what the task's retry does
    assert counts.as_dict()["created"] == 1 and counts.failed == 0
    assert _states(pipe, keys) == ["DONE", "DONE"]
    assert len(list((tmp_path / "outbox" / "Collection").rglob("*.tar.gz"))) == 2
    table = box.read_rows(target.table)
    assert sorted(r["CodedAccessionNumberID"] for r in table) == sorted(
        pipe.ledger.load(k).outputs.item_suid for k in keys
    )


@pytest.mark.emulator
def test_outbox_rows_not_written_remove_the_new_objects(tmp_path, make_pipeline, monkeypatch):
    """A table write refused for good (EIO): no object without its row, batches ERROR."""
    pipe = make_pipeline()
    keys = _packaged(pipe, tmp_path / "in")
    monkeypatch.setattr(box, "upsert_rows", _Failing(box.upsert_rows, OSError(errno.EIO, ""), {1}))
    counts = deliver(pipe, OutboxTarget.from_settings(pipe.settings), keys)
    assert counts.failed == 2 and _states(pipe, keys) == ["ERROR", "ERROR"]
    assert not list((tmp_path / "outbox").rglob("*.tar.gz"))
    assert "outbox write failed (OSError)" in pipe.ledger.load(keys[0]).reasons[-1]


@pytest.mark.emulator
def test_a_transient_stop_is_raised_even_when_the_rows_then_fail(
    tmp_path, make_pipeline, monkeypatch
):
    """Put 1 works, put 2 times out, the table refuses the row of 1: batch 1 is ERROR, batch
    2 still waits for the retry (the task must not end as if all were settled)."""
    pipe = make_pipeline()
    keys = _packaged(pipe, tmp_path / "in")
    monkeypatch.setattr(box, "put_object", _Failing(box.put_object, TimeoutError(), {2}))
    monkeypatch.setattr(box, "upsert_rows", _Failing(box.upsert_rows, OSError(errno.EIO, ""), {1}))
    with pytest.raises(TransientError):
        deliver(pipe, OutboxTarget.from_settings(pipe.settings), keys)
    assert _states(pipe, keys) == ["DONEPROCESSING", "ERROR"]
    assert not list((tmp_path / "outbox").rglob("*.tar.gz"))


@pytest.fixture
def google_pipe(request, tmp_path, make_pipeline):
    bucket, bq, collection = request.getfixturevalue("google")
    pipe = make_pipeline(**google_settings(tmp_path, bucket, collection))
    return pipe, _packaged(pipe, tmp_path / "in"), bucket, bq, collection


def _one_object_and_row_each(pipe, keys, bucket, bq, collection):
    outputs = [pipe.ledger.load(k).outputs for k in keys]
    assert sorted(objects(bucket)) == sorted(o.object_name for o in outputs)
    table = rows(bq, collection)
    assert sorted(r["CodedAccessionNumberID"] for r in table) == sorted(
        o.item_suid for o in outputs
    )


@pytest.mark.emulator
def test_gcs_unavailable_midway_then_the_retry_delivers_once(google_pipe, monkeypatch):
    """Cloud Storage answers 503 for the second object: the first batch is delivered (its
    object and row), the second waits in DONEPROCESSING; the retry delivers it once."""
    from sendit_ops.airflow.google_target import GoogleTarget

    pipe, keys, bucket, bq, collection = google_pipe
    target = GoogleTarget.open(pipe.settings)
    outage = _Failing(target.bucket.get_blob, gexc.ServiceUnavailable("GCS down"), {2})
    monkeypatch.setattr(target.bucket, "get_blob", outage)
    with pytest.raises(TransientError, match="google failed for now while putting objects"):
        deliver(pipe, target, keys)
    assert _states(pipe, keys) == ["DONE", "DONEPROCESSING"]
    first = objects(bucket)
    assert len(first) == 1 and len(rows(bq, collection)) == 1

    counts = deliver(pipe, GoogleTarget.open(pipe.settings), keys)
    assert counts.as_dict() == {"created": 1, "exists": 0, "replaced": 0, "failed": 0, "rows": 1}
    assert _states(pipe, keys) == ["DONE", "DONE"]
    _one_object_and_row_each(pipe, keys, bucket, bq, collection)
    assert objects(bucket).items() >= first.items()  # the first object was not written again


@pytest.mark.emulator
def test_bigquery_unavailable_then_the_retry_delivers_once(google_pipe, monkeypatch):
    """BigQuery answers 503 to the MERGE: the objects this call created are removed (an
    object without its row looks delivered), the batches stay DONEPROCESSING; the retry
    uploads and merges each once."""
    from sendit_ops.airflow.google_target import GoogleTarget

    pipe, keys, bucket, bq, collection = google_pipe
    target = GoogleTarget.open(pipe.settings)
    outage = _Failing(target.bigquery.query, gexc.ServiceUnavailable("BigQuery down"), {1})
    monkeypatch.setattr(target.bigquery, "query", outage)
    with pytest.raises(TransientError, match="while writing rows"):
        deliver(pipe, target, keys)
    assert _states(pipe, keys) == ["DONEPROCESSING", "DONEPROCESSING"]
    assert objects(bucket) == {} and rows(bq, collection) == []

    counts = deliver(pipe, GoogleTarget.open(pipe.settings), keys)
    assert counts.as_dict()["created"] == 2 and counts.as_dict()["rows"] == 2
    _one_object_and_row_each(pipe, keys, bucket, bq, collection)


@pytest.mark.emulator
def test_bigquery_refusing_the_rows_fails_the_batches_without_objects(google_pipe, monkeypatch):
    from sendit_ops.airflow.google_target import GoogleTarget

    pipe, keys, bucket, _, _ = google_pipe
    target = GoogleTarget.open(pipe.settings)
    monkeypatch.setattr(target.bigquery, "query", _Failing(None, gexc.BadRequest("no"), {1}))
    counts = deliver(pipe, target, keys)
    assert counts.failed == 2 and _states(pipe, keys) == ["ERROR", "ERROR"]
    assert objects(bucket) == {}
    assert (
        "writing the rows to BigQuery failed (BadRequest)"
        in (pipe.ledger.load(keys[0]).reasons[-1])
    )


# ---- a live Airflow: the deliver task is retried and delivers once -------------------------


# a cluster policy of the test's Airflow (AIRFLOW_HOME/config/airflow_local_settings.py):
# the deliver task's first retry waits 5-9 s instead of RETRIES' 20-39 s; what is retried,
# how often and why stay the DAG's own (asserted over REST below)
RETRY_SOON = """
from datetime import timedelta


def task_policy(task):
    if task.dag_id == "sendit_r" and task.task_id == "deliver":
        task.retry_delay = timedelta(seconds=5)
"""


@pytest.mark.live
@pytest.mark.timeout(1800)
def test_live_gcs_unreachable_for_a_while_the_deliver_task_retries_and_delivers_once(
    tmp_path, monkeypatch
):
    """Cloud Storage stops answering object calls (connections dropped) after the run's
    discover checked the bucket. The deliver task's first try fails once the storage
    library's retries give up (after ``google_retry_seconds``, 15 s here: the libraries'
    own 120 s by default, ``test_google_retry_seconds_is_the_libraries_own_unless_set``):
    TransientError, which Airflow retries (RETRIES: 2 retries, exponential delay from 20 s;
    from 5 s here, ``RETRY_SOON``). Storage is back before the retry, which delivers: one
    object and one row per batch, and the run succeeds."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery, storage

    from devtools.airflow_stack import AirflowStack, create_database

    gcs_url, gcs = start_gcs(tmp_path / "gcs.log")
    bq_url, bq_proc = start_bigquery(tmp_path / "bq.log")
    proxy = FaultProxy(gcs_url)
    proxy.down = True  # object calls dropped from the start; bucket lookups pass
    stack = None
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_url)  # this process: no proxy
        gcs_client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
        bucket = gcs_client.create_bucket("retry-bucket")
        bq = bigquery.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": bq_url},
        )
        inbox = tmp_path / "input"
        for i in range(2):
            write_study(inbox / f"ACC{i + 1}", PATIENTS[i], f"ACC{i + 1}", "20240115", "CT", 1, 1)
        settings = {
            "work_root": str(tmp_path / "work"),
            "outbox": str(tmp_path / "outbox"),
            "send_to_google": True,
            "google_cloud_storage": bucket.name,
            "google_project_name": PROJECT,
            "google_storage_collection": "RETRY",
            "google_retry_seconds": 15,  # one try gives up after 15 s, not 120 s
        }
        env = {
            "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS": json.dumps([{"path": str(inbox), "name": "r"}]),
            "AIRFLOW_VAR_SENDIT_SETTINGS": json.dumps(settings),
            "AIRFLOW_VAR_SENDIT_SECRET_KEY": os.environ["AIRFLOW_VAR_SENDIT_SECRET_KEY"],
            "SENDIT_HOME": str(tmp_path / "home"),
            "STORAGE_EMULATOR_HOST": proxy.url,  # the stack's tasks: through the proxy
            "BIGQUERY_EMULATOR_HOST": bq_url,
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": json.dumps(
                {
                    "conn_type": "google_cloud_platform",
                    "extra": {"is_anonymous": True, "project": PROJECT},
                }
            ),
        }
        db = create_database(f"sendit_retry_{secrets.token_hex(4)}", migrated=True)
        (tmp_path / "airflow" / "config").mkdir(parents=True)
        (tmp_path / "airflow" / "config" / "airflow_local_settings.py").write_text(RETRY_SOON)
        stack = AirflowStack(tmp_path / "airflow", ROOT / "dags", db, env=env).start()
        stack.wait_dag("sendit_r")
        deliver = stack.api("GET", "/api/v2/dags/sendit_r/tasks/deliver").json()
        assert deliver["retries"] == 2 and deliver["retry_exponential_backoff"], deliver
        run_id = stack.trigger("sendit_r", {})

        def deliver_ti() -> dict | None:
            tis = stack.task_instances("sendit_r", run_id)
            return next((t for t in tis if t["task_id"] == "deliver"), None)

        deadline = time.monotonic() + 900
        while True:  # until the first try failed and waits for its retry
            ti = deliver_ti()
            if ti and (ti["state"] == "up_for_retry" or ti["try_number"] > 1):
                break
            state = stack.api("GET", f"/api/v2/dags/sendit_r/dagRuns/{run_id}").json()["state"]
            assert state in ("queued", "running"), f"the run ended ({state}) before a retry"
            assert time.monotonic() < deadline, f"deliver never failed: {ti}"
            time.sleep(1)
        assert proxy.dropped > 0 and objects(bucket) == {}
        proxy.down = False  # Cloud Storage is back

        assert stack.wait_run("sendit_r", run_id, timeout=600) == "success"
        ti = deliver_ti()
        assert ti["state"] == "success" and ti["try_number"] > 1, ti
        first_try = stack.api(
            "GET", f"/api/v2/dags/sendit_r/dagRuns/{run_id}/taskInstances/deliver/logs/1"
        )
        assert "TransientError" in first_try.text, first_try.text[-2000:]
        summary = stack.xcom("sendit_r", run_id, "report")
        assert summary["states"] == {"DONE": 2} and summary["errors"] == []

        objs = objects(bucket)
        table = rows(bq, "RETRY")
        assert len(objs) == 2
        assert len(table) == 2 and len({r["CodedAccessionNumberID"] for r in table}) == 2
        linked = {r["storage_metadataLink"].rsplit("/o/", 1)[-1].replace("%2F", "/") for r in table}
        assert linked == set(objs)
    finally:
        if stack is not None:
            stack.stop()
        proxy.close()
        for proc in (gcs, bq_proc):
            proc.terminate()
            proc.wait(10)
