"""Where delivered batches go, as one typed contract: the local outbox and Google Cloud
Storage + BigQuery are two ``Target`` implementations driven by the same loop
(``sendit_ops.delivery.loop.deliver``).

A target puts one archive object at a time and then the rows of every object it put, in one
go. The rule for an object name that is taken is the same everywhere and written once here
(``decide``): an identical object is left alone, a version sendit itself wrote for the batch
is replaced, anything else is a conflict and is never touched.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from sendit_ops.core.errors import DeliveryError, ErrorClassifier
from sendit_ops.core.records import BatchRecord, Delivery


class PutStatus(StrEnum):
    """What putting an archive object did (the values are the keys of the delivery counts
    in the task's XCom and logs)."""

    CREATED = "created"  # nothing was there: the object is new
    EXISTS = "exists"  # the identical object was there already: left alone
    REPLACED = "replaced"  # a version sendit wrote for this batch was there: replaced
    # a reprocess run replaced a version the ledger does not know (the ledger was lost or
    # restored from an older backup): recorded in the batch's warnings
    REPLACED_UNKNOWN = "replaced_unknown"


@dataclass(frozen=True)
class Present:
    """What a target found at the object's name before writing."""

    identical: bool  # the same bytes as the archive to deliver
    version: str = ""  # the sha256 sendit wrote into it ("" when it carries none)


def decide(
    present: Present | None, own: Collection[str], conflict: str, replace_unknown: bool = False
) -> PutStatus:
    """Create if absent, keep if identical, replace only sendit's own version of this batch.

    ``own`` holds every checksum sendit wrote for the batch (the last confirmed delivery and
    attempts cut short after their object was written, see ``Delivery.own_versions``): an
    object carrying one of them is sendit's and may be replaced by a newer version. An
    identical object is kept and adopted (the ledger then knows it again, e.g. after the
    ledger was lost). A different object that carries a version the ledger does not know
    is refused (DeliveryError(``conflict``) with the way out: the batch goes to ERROR, the
    object is left as it is) unless the run asked to reprocess (``replace_unknown``): then
    it is replaced and the batch's record says so (REPLACED_UNKNOWN).
    """
    if present is None:
        return PutStatus.CREATED
    if present.identical:
        return PutStatus.EXISTS
    if present.version and present.version in own:
        return PutStatus.REPLACED
    if present.version and replace_unknown:
        return PutStatus.REPLACED_UNKNOWN
    if present.version:
        conflict += (
            "; if it is an earlier delivery of this study the ledger no longer knows (a lost "
            "or restored ledger), rerun the batch with --reprocess (trigger param "
            "reprocess=true) to replace it"
        )
    raise DeliveryError(conflict)


def own_versions(replaces: str | Iterable[str] | None) -> frozenset[str]:
    """The checksums sendit wrote for a batch (one, or several when an earlier attempt was
    cut short after its object was written): the only objects delivery may replace."""
    if not replaces:
        return frozenset()
    if isinstance(replaces, str):
        return frozenset({replaces})
    return frozenset(s for s in replaces if s)


@dataclass(frozen=True)
class Archive:
    """One packaged batch as a target sees it: the file, where it goes, what it may
    replace, and the coded values its object metadata carries (never original values)."""

    key: str  # the batch key (opaque)
    object_name: str  # Collection/<c>/Entity/<coded patient>/<archive name>
    path: Path  # the verified archive in the batch's work folder
    sha256: str
    own_versions: frozenset[str]  # what this batch's delivery may replace (``decide``)
    entity_suid: str  # coded patient id
    item_suid: str  # coded accession number: the row key
    images: str
    series: str
    recipe_sha256: str
    # a reprocess run: a version the ledger does not know may be replaced (``decide``)
    replace_unknown: bool = False

    @classmethod
    def of(cls, record: BatchRecord) -> Archive:
        """The archive of a batch ``ready_for_delivery`` returned (its ``previous_sha256``
        is set there, from the ledger's Delivery)."""
        out = record.outputs
        return cls(
            key=record.key,
            object_name=out.object_name,
            path=Path(out.archive),
            sha256=out.sha256,
            own_versions=own_versions(out.previous_sha256),
            entity_suid=out.entity_suid,
            item_suid=out.item_suid,
            images=str(out.images),
            series=str(record.metrics.get("series", "")),
            recipe_sha256=out.recipe_sha256,
        )


@dataclass(frozen=True)
class Placed:
    """An archive object a target put (or found identical)."""

    status: PutStatus
    download: str  # the row's storage_download: where the object can be fetched
    metadata_link: str  # the row's storage_metadataLink
    # the target's version of the object this call wrote (a GCS generation), so that undoing
    # it removes only that version and never one another writer put there since
    generation: int | None = None


@dataclass(frozen=True)
class RowCounts:
    """What writing the rows did, as far as the target can tell. The outbox upserts into a
    table it reads, so it knows inserted / updated / unchanged; BigQuery's MERGE statements
    only say how many rows were sent."""

    sent: int
    inserted: int | None = None
    updated: int | None = None
    unchanged: int | None = None

    def as_dict(self) -> dict[str, int]:
        """The keys each target has always reported (the task's XCom and log line)."""
        if self.inserted is None or self.updated is None or self.unchanged is None:
            return {"rows": self.sent}
        return {"inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged}


class Target(Protocol):
    """A place batches are delivered to: objects first, then their rows in one go.

    Errors: a method raises DeliveryError (or another BatchError) when this batch cannot go
    (a conflict, an integrity failure); TransientError or a library's network/5xx error when
    the service cannot be reached now; ConfigError when the setup is wrong. The loop sorts
    them with ``sendit_ops.core.errors.classify`` and the target's own ``classifiers``.
    """

    # "outbox" or "google": the record's delivered_to, the ledger's Delivery.target
    name: str
    # the row counts reported when no row was written this time (the target's usual keys)
    no_rows: RowCounts | None
    # what the target's libraries' exceptions mean (``core.errors.classify``'s vendors)
    classifiers: tuple[ErrorClassifier, ...]

    def ledger_fields(self) -> dict[str, Any]:
        """What ``mark_delivered`` stores about the place besides delivered_to/_at (the
        bucket: it becomes the Delivery's location)."""
        ...

    def put_object(self, archive: Archive) -> Placed:
        """Put one archive object under the create / keep / replace-own rule (``decide``)."""
        ...

    def put_rows(self, rows: list[dict[str, str]]) -> RowCounts:
        """Upsert the rows of every object put in this call (keyed by coded accession
        number: a rerun never duplicates a row), all at once."""
        ...

    def remove_object(self, archive: Archive, placed: Placed) -> None:
        """Undo an object this call created whose row could not be written: an archive
        without its row looks delivered to whoever reads the target."""
        ...

    def remove_replaced(self, before: Delivery, object_name: str, row_key: str) -> None:
        """After a batch was delivered under ``object_name`` / ``row_key``, remove what sendit
        delivered for it before under another name or key: the old object only if it still
        holds sendit's version (``before.sha256``), the old row only if it still points at
        that object."""
        ...

    def object_failure(self, exc: Exception) -> Exception:
        """The reason a batch's object could not be put, as an admin reads it (PHI-free)."""
        ...

    def rows_failure(self, exc: Exception, rows: list[dict[str, str]]) -> Exception:
        """The reason the rows could not be written, for each batch of the call."""
        ...
