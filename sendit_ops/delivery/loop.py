"""The delivery loop, one for every target (outbox, Google) and every caller (the Airflow
tasks of both layouts, ``sendit run``, the tests, the benchmark).

ready batches → put each archive object → put all their rows in one go → on a row failure
remove the objects this call created → mark each batch delivered, or failed.

Failures are sorted by ``sendit_ops.core.errors.classify``: a batch's own problem (a
conflict, a full outbox) sends that batch to ERROR and the others go on; a service that
cannot be reached now stops the loop with TransientError, which the task raises so that
Airflow retries it, and the batches not delivered stay DONEPROCESSING for that retry.

This module sits below ``sendit_ops.pipeline`` (the layers in pyproject.toml): it takes the
pipeline as a ``DeliveryLedger``, the four methods it needs, not the Pipeline class.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sendit_ops.core.errors import Failure, TransientError, classify
from sendit_ops.core.lifecycle import Step
from sendit_ops.core.records import BatchRecord, Delivery
from sendit_ops.delivery.target import Archive, Placed, PutStatus, RowCounts, Target

log = logging.getLogger("sendit")


class DeliveryLedger(Protocol):
    """The batch bookkeeping delivery needs (``sendit_ops.pipeline.batch.Pipeline``)."""

    def ready_for_delivery(self, keys: Iterable[str]) -> list[BatchRecord]:
        """Batches that may leave the machine, their replace-own versions noted."""
        ...

    def row_of(self, record: BatchRecord) -> dict[str, str]:
        """The batch's metadata row (without the storage links)."""
        ...

    def mark_delivered(self, record: BatchRecord, where: dict[str, Any]) -> Delivery | None:
        """Object and row are written: DONE, and the ledger's Delivery; returns the
        batch's previous delivery to the same place (None: none there)."""
        ...

    def mark_failed(self, record: BatchRecord, exc: Exception) -> None:
        """The batch cannot be delivered: ERROR with the reason."""
        ...


@dataclass
class DeliveryCounts:
    """What one delivery call did; ``as_dict`` is the task's XCom and log line."""

    created: int = 0
    exists: int = 0
    replaced: int = 0
    failed: int = 0
    rows: RowCounts | None = None  # None: no row written (and the target reports none)

    def add(self, status: PutStatus) -> None:
        """Count one object put (a replaced unknown version counts as replaced; the batch's
        record says which)."""
        name = PutStatus.REPLACED.value if status is PutStatus.REPLACED_UNKNOWN else status.value
        setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        """created / exists / replaced / failed, then the target's row counts."""
        counts = {"created": self.created, "exists": self.exists, "replaced": self.replaced}
        counts["failed"] = self.failed
        return counts | (self.rows.as_dict() if self.rows else {})


@dataclass(frozen=True)
class _Put:
    record: BatchRecord
    archive: Archive
    placed: Placed
    row: dict[str, str]


def deliver(
    ledger: DeliveryLedger, target: Target, keys: Iterable[str], replace_unknown: bool = False
) -> DeliveryCounts:
    """Deliver the ready batches among ``keys`` to ``target``; return the counts.

    Raises TransientError when the target cannot be reached now: the batches delivered
    before that are DONE, the others stay DONEPROCESSING (never ERROR), so the task's retry
    delivers each of them once. Objects are put one by one (each is checked and may fail
    alone), rows all at once (one upsert or MERGE for the call, not one per batch).
    """
    counts = DeliveryCounts(rows=target.no_rows)
    put: list[_Put] = []
    stopped: TransientError | None = None
    for record in ledger.ready_for_delivery(keys):
        record.start(Step.DELIVER)
        try:
            archive = Archive.of(record)
            if replace_unknown:  # a reprocess run (``decide``)
                archive = replace(archive, replace_unknown=True)
            row = ledger.row_of(record)
            placed = target.put_object(archive)
        except Exception as exc:
            if classify(exc, target.classifiers) is Failure.TRANSIENT:
                # the next objects would fail alike: stop, deliver what was put, then retry
                stopped = _transient(target, exc, "putting objects")
                break
            counts.failed += 1
            ledger.mark_failed(record, target.object_failure(exc))
            continue
        counts.add(placed.status)
        if placed.status is PutStatus.REPLACED_UNKNOWN:
            record.warnings.append(
                "deliver: replaced an earlier version at its object name that the ledger did "
                "not know (a lost or restored ledger); the reprocess run asked for it"
            )
            log.warning("batch %s: replaced an object the ledger did not know", record.key)
        row["storage_download"] = placed.download
        row["storage_metadataLink"] = placed.metadata_link
        put.append(_Put(record, archive, placed, row))
    if put:
        rows = [item.row for item in put]
        try:
            counts.rows = target.put_rows(rows)
        except Exception as exc:
            # no row, so no object either: an archive without its row looks delivered to
            # whoever reads the target; objects this call created go, replaced ones stay
            # (the batch's own newer version: the next delivery finds it identical)
            for item in put:
                if item.placed.status is PutStatus.CREATED:
                    _remove(target, item)
            if classify(exc, target.classifiers) is Failure.TRANSIENT:
                raise _transient(target, exc, "writing rows") from None
            reason = target.rows_failure(exc, rows)
            for item in put:
                counts.failed += 1
                ledger.mark_failed(item.record, reason)
        else:
            for item in put:
                where = {"delivered_to": target.name, "delivered_at": time.time()}
                before = ledger.mark_delivered(item.record, where | target.ledger_fields())
                if before is not None:
                    _remove_replaced(target, before, item)
    if stopped is not None:  # after the rows of what was put: those batches are done
        raise stopped
    return counts


def _transient(target: Target, exc: Exception, doing: str) -> TransientError:
    """The error the task raises for Airflow to retry (the exception's text is not logged:
    a library may quote what it sent)."""
    if isinstance(exc, TransientError):
        return exc
    log.warning("delivery to %s: %s failed for now (%s)", target.name, doing, type(exc).__name__)
    return TransientError(
        f"delivery to {target.name} failed for now while {doing} ({type(exc).__name__}); "
        "the batches not delivered stay DONEPROCESSING and the task's retry delivers them"
    )


def _remove(target: Target, item: _Put) -> None:
    try:
        target.remove_object(item.archive, item.placed)
    except Exception as exc:  # the next delivery finds it identical ("exists") and keeps it
        log.warning(
            "batch %s: the object put before its row failed could not be removed (%s)",
            item.record.key,
            type(exc).__name__,
        )


def _remove_replaced(target: Target, before: Delivery, item: _Put) -> None:
    """The batch was delivered before under another object name or row key (a corrected
    study date, new pseudonyms): remove that object and row, so one object and one row per
    study remain. Only sendit's own version is removed; a failure leaves it, logged by
    batch id (the new object and row are in place: nothing is lost)."""
    name, key = item.archive.object_name, item.archive.item_suid
    if before.object_name in ("", name) and before.row_key in ("", key):
        return
    try:
        target.remove_replaced(before, name, key)
    except Exception as exc:
        log.warning(
            "batch %s: its earlier object or row (other name) could not be removed (%s); "
            "remove it by hand if it is still there",
            item.record.key,
            type(exc).__name__,
        )
