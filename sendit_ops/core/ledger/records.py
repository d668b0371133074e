"""The batch records and deliveries of one DAG in one work root (``Ledger``).

A record holds the state (sendit's names), PHI-free reasons, QA metrics and step times; its
``source_path`` is the batch folder (often an accession number): the database is created
0600 and must be as protected as the work root. What sendit last delivered for a batch
(object name, sha256, row key) is kept apart from the record (``Delivery``), so a new
attempt never forgets which object it may replace.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Select, select, update
from sqlalchemy.engine import make_url

from sendit_ops.core.ledger import legacy_import, rows
from sendit_ops.core.ledger.database import (
    IN_CHUNK,
    chunks,
    database_url,
    describe,
    engine_for,
    read,
    rows_of,
    setup_lock,
    upsert,
    write,
)
from sendit_ops.core.ledger.queries import LedgerQueries
from sendit_ops.core.ledger.run_lock import RunLock
from sendit_ops.core.ledger.schema import batches, deliveries, delivery_log, ledgers, reviews
from sendit_ops.core.lifecycle import State
from sendit_ops.core.records import BatchRecord, Delivery, Review

log = logging.getLogger("sendit")


class Ledger(LedgerQueries):
    """The batch records of one DAG (one input folder) in one work root.

    The database is opened on first use (``root`` and ``batch_dir`` need none)."""

    def __init__(self, work_root: str | Path, dag_id: str, url: str | None = None):
        self.work_root = Path(work_root).absolute()
        self.root = self.work_root / dag_id
        self.dag_id = dag_id
        self.url = database_url(self.work_root, url)

    # -- files ---------------------------------------------------------------------------

    def batch_dir(self, key: str) -> Path:
        """The work folder of one batch (its files stay on disk; the record is in the DB)."""
        return self.root / "batches" / key

    def record_path(self, key: str) -> Path:
        """Where an old (pre-database) record file lives; read only by the import."""
        return self.batch_dir(key) / "record.json"

    def has_database(self) -> bool:
        """Whether the ledger's database exists (an SQLite file not yet created: no run
        ever wrote a record; readers such as the dashboard do not create it)."""
        url = make_url(self.url)
        if url.get_backend_name() != "sqlite":
            return True
        return Path(url.database or "").is_file()

    def where(self) -> str:
        """The ledger's location for messages (file, or URL without password)."""
        return describe(self.url)

    # -- database ------------------------------------------------------------------------

    @cached_property
    def engine(self) -> Engine:  # type: ignore[override]  # LedgerQueries declares it
        """The database engine (shared by every Ledger of this URL in the process)."""
        return engine_for(self.url)

    @cached_property
    def ledger_id(self) -> int:  # type: ignore[override]  # LedgerQueries declares it
        """This ledger's id; created on first use, importing its record.json files."""
        with read(self.engine) as conn:
            found = conn.execute(self._id_query()).scalar()
        if found is not None:
            return int(found)
        with write(self.engine) as conn:
            setup_lock(conn)
            found = conn.execute(self._id_query()).scalar()
            if found is not None:
                return int(found)
            new_id = int(
                conn.execute(
                    ledgers.insert().values(
                        root=str(self.work_root), dag_id=self.dag_id, imported_at=0.0, imported=0
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )
            imported = legacy_import.import_records(conn, new_id, self.root)
            conn.execute(
                update(ledgers)
                .where(ledgers.c.id == new_id)
                .values(imported=imported, imported_at=time.time())
            )
        if imported:
            log.info("ledger %s: %d record.json file(s) imported", self.dag_id, imported)
        else:
            self._say_if_lost()
        return new_id

    def _say_if_lost(self) -> None:
        """A new, empty ledger beside the work files of earlier runs: the ledger was lost
        (deleted, a new ``ledger_url``, a restore of the work root without it). Said loudly,
        with what happens next, instead of starting over in silence."""
        base = self.root / "batches"
        earlier = sum(1 for p in base.iterdir() if p.is_dir()) if base.is_dir() else 0
        if not earlier:
            return
        log.warning(
            "ledger %s: no records of %s, but its work folder %s holds %d batch folder(s) of "
            "earlier runs: the ledger was lost or replaced. Restore it from a backup if you "
            "have one; otherwise sendit starts a new ledger: delivered studies whose archive "
            "is unchanged are recognised and kept, changed ones are refused until a run with "
            "--reprocess (trigger param reprocess=true) replaces them",
            self.where(),
            self.dag_id,
            self.root,
            earlier,
        )

    def _id_query(self) -> Select[Any]:
        return select(ledgers.c.id).where(
            ledgers.c.root == str(self.work_root), ledgers.c.dag_id == self.dag_id
        )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group state changes: every save, delivery note and confirmation inside is
        committed together or not at all."""
        _ = self.ledger_id  # the ledger is created (and imported) in a transaction of its own
        with write(self.engine):
            yield

    # -- records ---------------------------------------------------------------------------

    def load(self, key: str) -> BatchRecord:
        """Read a batch record (KeyError when the batch was never seen)."""
        record = self.get(key)
        if record is None:
            raise KeyError(f"batch {key}: no record in the ledger of {self.dag_id}")
        return record

    def get(self, key: str) -> BatchRecord | None:
        """Read a batch record, or None when the batch was never seen."""
        query = select(batches.c.data).where(
            batches.c.ledger_id == self.ledger_id, batches.c.key == key
        )
        with read(self.engine) as conn:
            data = conn.execute(query).scalar()
        return None if data is None else BatchRecord(**json.loads(data))

    def save(self, record: BatchRecord) -> None:
        """Write a batch record (one transaction, or part of the open one)."""
        self.save_many([record])

    def save_many(self, records: Iterable[BatchRecord]) -> None:
        """Write several records in one transaction."""
        new = [rows.record_row(self.ledger_id, r) for r in records]
        with write(self.engine) as conn:
            for part in range(0, len(new), IN_CHUNK):
                upsert(conn, batches, new[part : part + IN_CHUNK], ["ledger_id", "key"])

    def all(self) -> list[BatchRecord]:
        """Every readable batch record of this DAG, by key; an unreadable one (a damaged
        database row) is left out with a warning naming its batch id."""
        query = (
            select(batches.c.key, batches.c.data)
            .where(batches.c.ledger_id == self.ledger_id)
            .order_by(batches.c.key)
        )
        records = []
        with read(self.engine) as conn:
            for key, data in rows_of(conn, query):
                try:
                    records.append(BatchRecord(**json.loads(data)))
                except (ValueError, TypeError) as exc:
                    log.warning(
                        "batch %s: its record in the ledger of %s is unreadable (%s) and is "
                        "left out",
                        key,
                        self.dag_id,
                        type(exc).__name__,
                    )
        return records

    def delivered_with_other_pseudonyms(self, source: str) -> list[BatchRecord]:
        """DONE batches delivered with pseudonyms from another source than ``source``
        (``outputs.pseudonym_source``), not yet superseded by a re-delivery: an indexed
        query on their columns (schema revision 0002), so a run parses only those
        (normally none). Records older than the field are not known, so not returned."""
        c = batches.c
        query = select(c.data).where(
            c.ledger_id == self.ledger_id,
            c.state == State.DONE,
            c.pseudonym_source != "",
            c.pseudonym_source != source,
            c.superseded_by == "",
        )
        with read(self.engine) as conn:
            return [BatchRecord(**json.loads(d)) for (d,) in rows_of(conn, query)]

    def supersede(self, old_key: str, new_key: str) -> None:
        """A delivered batch is re-delivered under another batch id (the secret key
        changed, so its id did): the new id inherits what sendit delivered for the old one
        (its object and row are then replaced, not duplicated), and the old record says it
        was superseded."""
        with self.transaction():
            before = self.delivery(old_key)
            record = self.get(old_key)
            if before is not None and self.delivery(new_key) is None:
                with write(self.engine) as conn:
                    upsert(
                        conn,
                        deliveries,
                        [rows.delivery_row(self.ledger_id, new_key, before)],
                        ["ledger_id", "key"],
                    )
            if record is not None:
                record.outputs.superseded_by = new_key
                record.warnings.append(f"re-delivered as batch {new_key} (new pseudonyms)")
                self.save(record)

    def delivered(self, keys: Iterable[str]) -> dict[str, str]:
        """Batch key -> fingerprint for those of ``keys`` already DONE (an indexed lookup of
        the batches found in the input folder, whatever the size of the history)."""
        return self.fingerprints(keys, (State.DONE,))

    def fingerprints(self, keys: Iterable[str], states: tuple[str, ...]) -> dict[str, str]:
        """Batch key -> fingerprint for those of ``keys`` in one of ``states``."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        with read(self.engine) as conn:
            for part in chunks(wanted):
                # by primary key, the state filtered here: with the state in the query the
                # planner may walk the (ledger, state) index, every DONE record (40x slower)
                query = select(batches.c.key, batches.c.fingerprint, batches.c.state).where(
                    batches.c.ledger_id == self.ledger_id, batches.c.key.in_(part)
                )
                found.update((k, f) for k, f, state in rows_of(conn, query) if state in states)
        return found

    # -- deliveries ----------------------------------------------------------------------

    def delivery(self, key: str) -> Delivery | None:
        """What sendit put outside the machine for this batch (None: nothing yet)."""
        query = select(deliveries).where(
            deliveries.c.ledger_id == self.ledger_id, deliveries.c.key == key
        )
        with read(self.engine) as conn:
            row = conn.execute(query).first()
        return None if row is None else rows.delivery_of(row)

    def note_attempts(self, records: Iterable[BatchRecord]) -> dict[str, Delivery]:
        """Note, before any object is written, which archive each batch is about to
        deliver; return every batch's Delivery. An attempt cut short (a crash after the
        object was written) leaves its checksum here, so the next attempt may replace it."""
        out: dict[str, Delivery] = {}
        now = round(time.time(), 3)
        with write(self.engine) as conn:
            new: list[dict[str, Any]] = []
            for record in records:
                query = select(deliveries).where(
                    deliveries.c.ledger_id == self.ledger_id, deliveries.c.key == record.key
                )
                row = conn.execute(query).first()
                d = Delivery() if row is None else rows.delivery_of(row)
                sha = str(record.outputs.sha256)
                if sha and sha not in d.own_versions():
                    name = str(record.outputs.object_name)
                    attempts = [*d.attempts, [name, sha, now, record.run_id]]
                    d.attempts = attempts[-rows.ATTEMPTS_KEPT :]
                    new.append(rows.delivery_row(self.ledger_id, record.key, d))
                out[record.key] = d
            upsert(conn, deliveries, new, ["ledger_id", "key"])
        return out

    def confirm_delivery(self, record: BatchRecord, location: str = "") -> None:
        """The batch's object and row are written: it becomes what sendit last delivered
        (its earlier attempts are forgotten: the object now holds this version)."""
        out = record.outputs
        d = Delivery(
            object_name=str(out.object_name),
            sha256=str(out.sha256),
            row_key=str(out.item_suid),
            target=str(out.delivered_to),
            location=location,
            delivered_at=float(out.delivered_at or time.time()),
            run_id=record.run_id,
        )
        row = rows.record_row(self.ledger_id, record)
        with write(self.engine) as conn:
            upsert(
                conn,
                deliveries,
                [rows.delivery_row(self.ledger_id, record.key, d)],
                ["ledger_id", "key"],
            )
            # the throughput history: kept when the batch is reprocessed later
            conn.execute(
                delivery_log.insert().values(
                    ledger_id=self.ledger_id,
                    key=record.key,
                    delivered_at=row["changed"] or d.delivered_at,
                    images=row["images"],
                    bytes_in=row["bytes_in"],
                    run_id=record.run_id or "",
                )
            )

    # -- reviews -----------------------------------------------------------------------------

    def record_review(self, review: Review) -> None:
        """Add a reviewer's decision to the review history (a new row; none is changed)."""
        with write(self.engine) as conn:
            conn.execute(reviews.insert().values(ledger_id=self.ledger_id, **asdict(review)))

    def reviews(self, limit: int = 100, key: str | None = None) -> list[Review]:
        """The newest ``limit`` decisions (of one batch with ``key``), newest first."""
        c = reviews.c
        query = select(c.key, c.decision, c.images, c.reviewer, c.decided_at, c.run_id).where(
            c.ledger_id == self.ledger_id
        )
        if key is not None:
            query = query.where(c.key == key)
        query = query.order_by(c.decided_at.desc(), c.id.desc()).limit(limit)
        with read(self.engine) as conn:
            return [Review(*row) for row in rows_of(conn, query)]

    # -- the run lock ------------------------------------------------------------------------

    def run_lock(self, input_folder: str | Path, in_process: bool = False) -> RunLock:
        """The lock that lets one run at a time work on ``input_folder`` in this work root
        (``in_process``: every task of the run executes in this process, see RunLock)."""
        return RunLock(self.engine, self.work_root, input_folder, self.dag_id, in_process)
