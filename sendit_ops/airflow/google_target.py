"""Delivery to Google Cloud Storage and BigQuery through the Google provider's hooks:
``GoogleTarget``, driven by the same loop as the outbox (``sendit_ops.delivery.loop``).

Objects: ``gs://<bucket>/Collection/<c>/Entity/<coded patient>/<archive>``, created only if
absent (``if_generation_match=0``); an identical object (same MD5) is left alone, a version
sendit itself wrote for the batch (the sha256 in the object metadata is one the ledger's
``Delivery`` holds: the last confirmed delivery or an attempt cut short after its upload) is
replaced under a generation precondition, and anything else under the name is a conflict:
batch ERROR, object untouched (the rule: ``sendit_ops.delivery.target.decide``). Integrity:
the MD5 GCS reports must equal the local one. Uploads above 8 MiB are resumable. Rows:
dataset and table created if missing (never altered), then MERGE statements keyed by coded
accession number, only for objects uploaded and verified in this call.

Errors are sorted by ``sendit_ops.core.errors.classify``: Google unreachable or answering
5xx/429 is TransientError (the task is retried by Airflow), a wrong connection, credentials,
permissions or a missing bucket is ConfigError (the task fails at once with what to fix).
How long one try lets the client libraries retry a call before that: their own deadlines, or
the setting ``google_retry_seconds`` (``retry_keywords``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from sendit_ops import __version__
from sendit_ops.core.errors import (
    BatchError,
    ConfigError,
    DeliveryError,
    ErrorClassifier,
    Failure,
    SenditError,
    TransientError,
    classify,
    failure_of_status,
)
from sendit_ops.core.records import Delivery
from sendit_ops.core.settings import Settings
from sendit_ops.delivery.bigquery_sql import (
    delete_statement,
    delete_with_parameter,
    merge_statements,
    merge_with_parameters,
    table_ref,
)
from sendit_ops.delivery.target import Archive, Placed, Present, PutStatus, RowCounts, decide
from sendit_ops.packaging.archive import BQ_SCHEMA, CONTENT_TYPE
from sendit_ops.pseudonyms.dasher_client import requests_failure

log = logging.getLogger("sendit")
RESUMABLE_ABOVE = 8 * 1024 * 1024


def google_failure(exc: BaseException) -> Failure | None:
    """What Google's client libraries' exceptions mean (an ErrorClassifier for
    ``core.errors.classify``): an API error by its HTTP status; google-auth's transport
    errors and google-api-core's RetryError (its own retries ran out) are transient, other
    google-auth errors configuration unless retryable; the requests stack they use below."""
    from google.api_core.exceptions import GoogleAPICallError, RetryError
    from google.auth import exceptions as auth

    if isinstance(exc, GoogleAPICallError):
        code = exc.code
        return failure_of_status(code, exc) if isinstance(code, int) else Failure.PERMANENT
    if isinstance(exc, RetryError | auth.TransportError | auth.TimeoutError):
        return Failure.TRANSIENT
    if isinstance(exc, auth.GoogleAuthError):
        return Failure.TRANSIENT if exc.retryable else Failure.CONFIG
    return requests_failure(exc)


GOOGLE = (google_failure,)


def retry_keywords(seconds: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``retry`` keywords of the Cloud Storage calls and of the BigQuery calls.

    ``None`` (the setting ``google_retry_seconds`` unset): none, so each library keeps its
    own retry and deadline (Cloud Storage 120 s, BigQuery API calls 600 s, query jobs
    2400 s). A number: the same retry policies (what is retried, the backoff) with that many
    seconds as the deadline of each call, after which the call raises and the task fails
    with TransientError for Airflow's retry."""
    if seconds is None:
        return {}, {}
    from google.cloud.bigquery.retry import DEFAULT_RETRY as BIGQUERY_RETRY
    from google.cloud.storage.retry import DEFAULT_RETRY as STORAGE_RETRY

    storage = {"retry": STORAGE_RETRY.with_timeout(float(seconds))}
    bigquery = {"retry": BIGQUERY_RETRY.with_timeout(float(seconds))}
    return storage, bigquery


def rows_parameter(rows: list[dict[str, str]]) -> Any:
    """The query job configuration carrying ``rows`` as ``@rows`` (ARRAY<STRUCT<...>>)."""
    from google.cloud import bigquery

    structs = [
        bigquery.StructQueryParameter(
            None, *[bigquery.ScalarQueryParameter(c, "STRING", row[c]) for c in BQ_SCHEMA]
        )
        for row in rows
    ]
    return bigquery.QueryJobConfig(
        query_parameters=[bigquery.ArrayQueryParameter("rows", "STRUCT", structs)]
    )


def key_parameter(key: str) -> Any:
    """The query job configuration carrying a row key as ``@key``."""
    from google.cloud import bigquery

    return bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("key", "STRING", key)]
    )


def _setup_error(exc: Exception, service: str, config_message: str) -> SenditError:
    """A failure while connecting or checking the bucket/table: TransientError when Google
    cannot be reached now (Airflow's retry may succeed), else ConfigError (a retry cannot
    fix a connection, credentials, permissions or a missing bucket)."""
    if classify(exc, GOOGLE) is Failure.TRANSIENT:
        return TransientError(
            f"cannot reach {service} now ({type(exc).__name__}); the task is retried"
        )
    return ConfigError(config_message)


def _clients(settings: Settings) -> tuple[Any, Any]:
    from airflow.providers.google.cloud.hooks.bigquery import BigQueryHook
    from airflow.providers.google.cloud.hooks.gcs import GCSHook

    try:
        storage = GCSHook(gcp_conn_id=settings.gcp_conn_id).get_conn()
        bigquery = BigQueryHook(
            gcp_conn_id=settings.gcp_conn_id,
            use_legacy_sql=False,
            location=settings.bigquery_location,
        )
        # None: the connection's project (the hook's annotation says str)
        project = settings.google_project_name
        return storage, bigquery.get_client(project_id=project)  # type: ignore[arg-type]
    except Exception as exc:
        raise _setup_error(
            exc,
            "Google",
            f"cannot use the Google connection '{settings.gcp_conn_id}' "
            f"({type(exc).__name__}); check it in Admin > Connections",
        ) from None


def preflight(settings: Settings) -> tuple[Any, Any, str]:
    """Check the bucket and make sure the dataset and table exist, before any upload.

    Returns (bucket, bigquery client, table reference). Raises ConfigError with what to fix,
    or TransientError when Google cannot be reached now.
    """
    from google.cloud import bigquery

    storage, bq = _clients(settings)
    on_storage, on_bigquery = retry_keywords(settings.google_retry_seconds)
    project, dataset = settings.google_project_name, settings.collection
    if not project:  # resolve_settings requires it with Google on: a caller skipped it
        raise ConfigError("'google_project_name' is required to deliver to Google")
    try:
        bucket = storage.lookup_bucket(settings.google_cloud_storage, **on_storage)
    except Exception as exc:
        raise _setup_error(
            exc,
            "Google Cloud Storage",
            f"cannot use bucket '{settings.google_cloud_storage}' ({type(exc).__name__}); "
            "check the connection's credentials and permissions",
        ) from None
    if bucket is None:
        raise ConfigError(
            f"bucket '{settings.google_cloud_storage}' does not exist or is not "
            "visible with this connection; create it (sendit does not)"
        )
    try:
        ds = bigquery.Dataset(f"{project}.{dataset}")
        ds.location = settings.bigquery_location
        bq.create_dataset(ds, exists_ok=True, **on_bigquery)
        wanted = [bigquery.SchemaField(name, "STRING") for name in BQ_SCHEMA]
        table_id = f"{project}.{dataset}.{settings.bigquery_table}"
        table = bq.create_table(
            bigquery.Table(table_id, schema=wanted), exists_ok=True, **on_bigquery
        )
    except Exception as exc:
        raise _setup_error(
            exc,
            "BigQuery",
            f"cannot create or read BigQuery table {dataset}."
            f"{settings.bigquery_table} ({type(exc).__name__})",
        ) from None
    have = {f.name for f in table.schema}
    missing = [name for name in BQ_SCHEMA if name not in have]
    if missing:
        raise ConfigError(
            f"BigQuery table {dataset}.{settings.bigquery_table} exists without "
            f"columns {', '.join(missing)}; sendit never alters existing tables"
        )
    return bucket, bq, table_ref(project, dataset, settings.bigquery_table)


def _md5_b64(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode()


class GoogleTarget:
    """A bucket and a BigQuery table as a delivery Target (see the module docstring)."""

    name = "google"
    no_rows: RowCounts | None = RowCounts(sent=0)  # "rows": 0 when nothing was uploaded
    classifiers: tuple[ErrorClassifier, ...] = GOOGLE

    def __init__(
        self,
        bucket: Any,
        bigquery: Any,
        table: str,
        literal_sql: bool | None = None,
        retry_seconds: int | None = None,
    ) -> None:
        self.bucket = bucket
        self.bigquery = bigquery
        self.table = table
        # ``retry=`` of every call (the setting google_retry_seconds; none: the libraries')
        self._on_storage, self._on_bigquery = retry_keywords(retry_seconds)
        self._on_job = self._job_keywords(retry_seconds)
        # query parameters, except on the BigQuery emulator of the tests (it refuses them)
        self.literal_sql = (
            bool(os.environ.get("BIGQUERY_EMULATOR_HOST")) if literal_sql is None else literal_sql
        )

    @classmethod
    def open(cls, settings: Settings) -> GoogleTarget:
        """Connect and run the preflight checks (bucket, dataset, table)."""
        return cls(*preflight(settings), retry_seconds=settings.google_retry_seconds)

    @staticmethod
    def _job_keywords(seconds: int | None) -> dict[str, Any]:
        """``query``'s keywords: the API calls' retry and, for a job BigQuery failed in a
        way a new job may fix, the deadline of re-running it (the same number)."""
        if seconds is None:
            return {}
        from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

        return {
            **retry_keywords(seconds)[1],
            "job_retry": DEFAULT_JOB_RETRY.with_timeout(float(seconds)),
        }

    def _query(self, statement: str, job_config: Any = None) -> None:
        """Run one statement to its end, under the retry deadlines of ``__init__``."""
        if job_config is None:
            job = self.bigquery.query(statement, **self._on_job)
        else:
            job = self.bigquery.query(statement, job_config=job_config, **self._on_job)
        job.result(**self._on_bigquery)

    def ledger_fields(self) -> dict[str, str]:
        """The bucket: the Delivery's location, so a later run knows where it delivered."""
        return {"bucket": self.bucket.name}

    def _where(self, name: str) -> str:
        return f"gs://{self.bucket.name}/{name}"

    def put_object(self, archive: Archive) -> Placed:
        """Create-if-absent upload of one archive (or keep / replace-own: ``decide``)."""
        from google.api_core.exceptions import PreconditionFailed

        md5 = _md5_b64(archive.path)
        name = archive.object_name
        existing = self.bucket.get_blob(name, **self._on_storage)
        present = None
        if existing is not None:
            ours = (existing.metadata or {}).get("sha256") or ""
            present = Present(identical=existing.md5_hash == md5, version=ours)
        status = decide(
            present,
            archive.own_versions,
            f"a different object already exists at {self._where(name)}; it was left untouched",
            archive.replace_unknown,
        )
        if status is PutStatus.EXISTS:
            return self._placed(status, existing)
        replacing = status in (PutStatus.REPLACED, PutStatus.REPLACED_UNKNOWN)
        generation = existing.generation if replacing else 0
        size = archive.path.stat().st_size
        blob = self.bucket.blob(
            name, chunk_size=RESUMABLE_ABOVE if size > RESUMABLE_ABOVE else None
        )
        blob.metadata = {
            "CodedPatientID": archive.entity_suid,
            "CodedAccessionNumberID": archive.item_suid,
            "images": archive.images,
            "series": archive.series,
            "sendit_version": __version__,
            "recipe_sha256": archive.recipe_sha256,
            "sha256": archive.sha256,
        }
        try:
            blob.upload_from_filename(
                str(archive.path),
                content_type=CONTENT_TYPE,
                if_generation_match=generation,
                checksum="md5",
                **self._on_storage,
            )
        except PreconditionFailed:
            raise DeliveryError(
                f"another writer changed {self._where(name)} during the upload; rerun the batch"
            ) from None
        blob.reload(**self._on_storage)
        if blob.md5_hash != md5:
            raise DeliveryError(
                f"integrity check failed for {self._where(name)}: the MD5 "
                "reported by Cloud Storage differs from the archive's"
            )
        return self._placed(status, blob)

    def _placed(self, status: PutStatus, blob: Any) -> Placed:
        download = blob.media_link or self._where(blob.name)
        return Placed(
            status,
            download=download,
            metadata_link=blob.self_link or download,
            generation=blob.generation,
        )

    def put_rows(self, rows: list[dict[str, str]]) -> RowCounts:
        """MERGE the rows (as few statements as the size limit allows)."""
        if self.literal_sql:
            for statement in merge_statements(self.table, rows):
                self._query(statement)
            return RowCounts(sent=len(rows))
        for statement, part in merge_with_parameters(self.table, rows):
            self._query(statement, job_config=rows_parameter(part))
        return RowCounts(sent=len(rows))

    def remove_object(self, archive: Archive, placed: Placed) -> None:
        """Delete the generation this call uploaded, and only that one."""
        self.bucket.blob(archive.object_name).delete(
            if_generation_match=placed.generation, **self._on_storage
        )

    def remove_replaced(self, before: Delivery, object_name: str, row_key: str) -> None:
        """The batch's own earlier object (only while it holds sendit's version, under a
        generation precondition) and its earlier row, when they have another name or key."""
        if before.object_name and before.object_name != object_name and before.sha256:
            old = self.bucket.get_blob(before.object_name, **self._on_storage)
            if old is not None and (old.metadata or {}).get("sha256") == before.sha256:
                old.delete(if_generation_match=old.generation, **self._on_storage)
        if before.row_key and before.row_key != row_key:
            if self.literal_sql:
                self._query(delete_statement(self.table, before.row_key))
            else:
                self._query(delete_with_parameter(self.table), key_parameter(before.row_key))

    def object_failure(self, exc: Exception) -> Exception:
        """A failed upload: the batch's reason (the exception's text may quote a request)."""
        if isinstance(exc, BatchError):
            return exc
        return DeliveryError(f"upload to Cloud Storage failed ({type(exc).__name__})")

    def rows_failure(self, exc: Exception, rows: list[dict[str, str]]) -> Exception:
        """BigQuery refused the rows: every batch of the call, its new object removed."""
        if isinstance(exc, BatchError):
            return exc
        return DeliveryError(
            f"writing the rows to BigQuery failed ({type(exc).__name__}); objects this "
            "delivery created were removed, rerun the batch"
        )
