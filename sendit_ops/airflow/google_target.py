"""Delivery to Google Cloud Storage and BigQuery through the Google provider's hooks.

Objects: ``gs://<bucket>/Collection/<c>/Entity/<coded patient>/<archive>``, created only if
absent (``if_generation_match=0``); an identical object (same MD5) is left alone, a version
sendit itself wrote for the batch (the sha256 in the object metadata is one the ledger's
``Delivery`` holds: the last confirmed delivery or an attempt cut short after its upload) is
replaced under a generation precondition, and anything else under the name is a conflict:
batch ERROR, object untouched. Integrity: the MD5 GCS reports must equal the local one.
Uploads above 8 MiB are resumable. Rows: dataset and table created if missing (never
altered), then MERGE statements keyed by coded accession number, only for objects uploaded
and verified in this run.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from sendit_ops import __version__
from sendit_ops.core.errors import ConfigError, DeliveryError
from sendit_ops.core.ledger import BatchRecord
from sendit_ops.core.settings import Settings
from sendit_ops.delivery.bigquery_sql import merge_statements, table_ref
from sendit_ops.delivery.outbox import own_versions
from sendit_ops.packaging.archive import BQ_SCHEMA, CONTENT_TYPE
from sendit_ops.pipeline.batch import Pipeline

log = logging.getLogger("sendit")
RESUMABLE_ABOVE = 8 * 1024 * 1024


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
        return storage, bigquery.get_client(project_id=settings.google_project_name)
    except Exception as exc:
        raise ConfigError(
            f"cannot use the Google connection '{settings.gcp_conn_id}' "
            f"({type(exc).__name__}); check it in Admin > Connections"
        ) from None


def preflight(settings: Settings) -> tuple[Any, Any, Any]:
    """Check the bucket and make sure the dataset and table exist, before any upload.

    Returns (bucket, bigquery client, table reference). Raises ConfigError with what to fix.
    """
    from google.api_core.exceptions import GoogleAPIError
    from google.cloud import bigquery

    storage, bq = _clients(settings)
    project, dataset = settings.google_project_name, settings.collection
    try:
        bucket = storage.lookup_bucket(settings.google_cloud_storage)
    except GoogleAPIError as exc:
        raise ConfigError(f"cannot reach Google Cloud Storage ({type(exc).__name__})") from None
    if bucket is None:
        raise ConfigError(
            f"bucket '{settings.google_cloud_storage}' does not exist or is not "
            "visible with this connection; create it (sendit does not)"
        )
    try:
        ds = bigquery.Dataset(f"{project}.{dataset}")
        ds.location = settings.bigquery_location
        bq.create_dataset(ds, exists_ok=True)
        wanted = [bigquery.SchemaField(name, "STRING") for name in BQ_SCHEMA]
        table_id = f"{project}.{dataset}.{settings.bigquery_table}"
        table = bq.create_table(bigquery.Table(table_id, schema=wanted), exists_ok=True)
    except GoogleAPIError as exc:
        raise ConfigError(
            f"cannot create or read BigQuery table {dataset}."
            f"{settings.bigquery_table} ({type(exc).__name__})"
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


def upload_archive(bucket: Any, record: BatchRecord) -> tuple[str, Any]:
    """Create-if-absent upload of one batch's archive; returns (status, blob)."""
    from google.api_core.exceptions import PreconditionFailed

    out = record.outputs
    path = Path(out["archive"])
    md5 = _md5_b64(path)
    name = out["object_name"]
    existing = bucket.get_blob(name)
    generation = 0
    status = "created"
    if existing is not None:
        if existing.md5_hash == md5:
            return "exists", existing
        ours = (existing.metadata or {}).get("sha256")
        # replace only a version sendit itself wrote for this batch (Delivery.own_versions)
        if not ours or ours not in own_versions(out.get("previous_sha256")):
            raise DeliveryError(
                f"a different object already exists at gs://{bucket.name}/"
                f"{name}; it was left untouched"
            )
        generation, status = existing.generation, "replaced"
    blob = bucket.blob(
        name, chunk_size=RESUMABLE_ABOVE if path.stat().st_size > RESUMABLE_ABOVE else None
    )
    blob.metadata = {
        "CodedPatientID": out["entity_suid"],
        "CodedAccessionNumberID": out["item_suid"],
        "images": str(out.get("images", "")),
        "series": str(record.metrics.get("series", "")),
        "sendit_version": __version__,
        "recipe_sha256": out.get("recipe_sha256", ""),
        "sha256": out["sha256"],
    }
    try:
        blob.upload_from_filename(
            str(path), content_type=CONTENT_TYPE, if_generation_match=generation, checksum="md5"
        )
    except PreconditionFailed:
        raise DeliveryError(
            f"another writer changed gs://{bucket.name}/{name} during the upload; rerun the batch"
        ) from None
    blob.reload()
    if blob.md5_hash != md5:
        raise DeliveryError(
            f"integrity check failed for gs://{bucket.name}/{name}: the MD5 "
            "reported by Cloud Storage differs from the archive's"
        )
    return status, blob


def deliver_to_google(pipe: Pipeline, keys: list[str]) -> dict[str, int]:
    """Upload every ready batch, then upsert their rows in MERGE statements."""
    from google.api_core.exceptions import GoogleAPIError

    bucket, bq, table = preflight(pipe.settings)
    counts = {"created": 0, "exists": 0, "replaced": 0, "failed": 0, "rows": 0}
    uploaded: list[tuple[BatchRecord, dict[str, str]]] = []
    for record in pipe.ready_for_delivery(keys):
        record.start("deliver")
        try:
            status, blob = upload_archive(bucket, record)
        except DeliveryError as exc:
            counts["failed"] += 1
            pipe.mark_failed(record, exc)
            continue
        except GoogleAPIError as exc:
            counts["failed"] += 1
            pipe.mark_failed(
                record, DeliveryError(f"upload to Cloud Storage failed ({type(exc).__name__})")
            )
            continue
        counts[status] += 1
        row = pipe.row_of(record)
        row["storage_download"] = blob.media_link or f"gs://{bucket.name}/{blob.name}"
        row["storage_metadataLink"] = blob.self_link or row["storage_download"]
        uploaded.append((record, row))
    if uploaded:
        for statement in merge_statements(table, [row for _, row in uploaded]):
            bq.query(statement).result()  # a failure raises: the task retries, objects exist
        counts["rows"] = len(uploaded)
        for record, _ in uploaded:
            pipe.mark_delivered(
                record,
                {"delivered_to": "google", "delivered_at": time.time(), "bucket": bucket.name},
            )
    return counts
