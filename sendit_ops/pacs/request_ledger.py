"""Bookkeeping of query/retrieve: one row per requested item and one per study, in the
ledger's database (same SQLAlchemy URL as sendit's ledger: ``Settings.ledger_url``, else
SQLite in the work root).

Rows are keyed by keyed hashes (``pacs.keys``), never by an accession number or a UID, so
the dashboard and reports can show them as they are. A rerun reads them to fetch only what
is missing: a study RETRIEVED before is skipped, everything else is tried again; a crash in
the middle of a 3,000-study request therefore costs at most the studies in flight.

The tables are created by the ledger's migration ``0003_pacs_requests`` (run by
``engine_for`` at a process's first use of a ledger, or ``sendit db upgrade``); the
definitions below are what the queries use and must match it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    select,
)

from sendit_ops.core.ledger import database_url, engine_for
from sendit_ops.pacs.model import RetrievalResult, StudyState

metadata = MetaData()

pacs_items = Table(
    "pacs_items",
    metadata,
    Column("pacs", String(64), primary_key=True),
    Column("item_key", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),  # accession / study_uid / query
    Column("state", String(16), nullable=False),  # FOUND / NOT_FOUND / FAILED
    Column("studies", Integer, nullable=False, default=0),
    Column("reason", String(500), nullable=False, default=""),
    Column("run_id", String(250), nullable=False, default=""),
    Column("updated_at", Float, nullable=False),
)

pacs_studies = Table(
    "pacs_studies",
    metadata,
    Column("pacs", String(64), primary_key=True),
    Column("study_key", String(32), primary_key=True),
    Column("item_key", String(32), nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("expected", Integer, nullable=True),
    Column("received", Integer, nullable=False, default=0),
    Column("bytes", BigInteger, nullable=False, default=0),
    Column("seconds", Float, nullable=False, default=0.0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("reason", String(500), nullable=False, default=""),
    Column("folder", String(64), nullable=False, default=""),
    Column("run_id", String(250), nullable=False, default=""),
    Column("updated_at", Float, nullable=False),
)


@dataclass(frozen=True)
class StudyRow:
    """One study's bookkeeping, as the dashboard and the report read it."""

    pacs: str
    study_key: str
    item_key: str
    state: str
    expected: int | None
    received: int
    bytes: int
    seconds: float
    attempts: int
    reason: str
    folder: str
    run_id: str
    updated_at: float


class RequestLedger:
    """The rows of one PACS (or of all, for the dashboard, with ``pacs=None``)."""

    def __init__(self, work_root: str | Path, pacs: str | None, ledger_url: str | None = None):
        self.pacs = pacs
        self.engine = engine_for(database_url(work_root, ledger_url))  # migrated to head

    def _upsert(
        self, table: Table, keys: Mapping[str, object], values: Mapping[str, object]
    ) -> None:
        """Insert the row of ``keys`` (its primary key) with ``values``, or update them."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(sendit_write=True)
            with conn.begin():
                where = [table.c[k] == v for k, v in keys.items()]
                found = conn.execute(select(table.c[next(iter(keys))]).where(*where)).first()
                if found is None:
                    conn.execute(table.insert().values(**keys, **values))
                else:
                    conn.execute(table.update().where(*where).values(**values))

    def record_item(
        self, item_key: str, kind: str, state: str, studies: int, reason: str, run_id: str
    ) -> None:
        self._upsert(
            pacs_items,
            {"pacs": self.pacs, "item_key": item_key},
            {
                "kind": kind,
                "state": state,
                "studies": studies,
                "reason": reason[:500],
                "run_id": run_id,
                "updated_at": time.time(),
            },
        )

    def record_found(
        self, study_key: str, item_key: str, expected: int | None, run_id: str
    ) -> None:
        """A study the PACS holds: FOUND, unless it was retrieved before (then unchanged)."""
        current = self.states([study_key]).get(study_key)
        if current == StudyState.RETRIEVED:
            return
        self._upsert(
            pacs_studies,
            {"pacs": self.pacs, "study_key": study_key},
            {
                "item_key": item_key,
                "state": current or StudyState.FOUND,
                "expected": expected,
                "run_id": run_id,
                "updated_at": time.time(),
            },
        )

    def record_started(self, study_key: str, run_id: str) -> None:
        self._upsert(
            pacs_studies,
            {"pacs": self.pacs, "study_key": study_key},
            {"state": StudyState.RETRIEVING, "run_id": run_id, "updated_at": time.time()},
        )

    def record_result(self, result: RetrievalResult, run_id: str) -> None:
        self._upsert(
            pacs_studies,
            {"pacs": self.pacs, "study_key": result.key},
            {
                "state": result.state,
                "expected": result.expected,
                "received": result.received,
                "bytes": result.bytes,
                "seconds": result.seconds,
                "attempts": result.attempts,
                "reason": result.reason[:500],
                "folder": result.folder,
                "run_id": run_id,
                "updated_at": time.time(),
            },
        )

    def states(self, study_keys: Iterable[str]) -> dict[str, str]:
        keys = list(study_keys)
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(keys), 500):
                rows = conn.execute(
                    select(pacs_studies.c.study_key, pacs_studies.c.state).where(
                        pacs_studies.c.pacs == self.pacs,
                        pacs_studies.c.study_key.in_(keys[i : i + 500]),
                    )
                )
                out.update({r.study_key: r.state for r in rows})
        return out

    def missing(self, study_keys: Iterable[str]) -> list[str]:
        """The studies still to fetch: every one not RETRIEVED (a rerun's work list)."""
        keys = list(dict.fromkeys(study_keys))
        done = self.states(keys)
        return [k for k in keys if done.get(k) != StudyState.RETRIEVED]

    def studies(self, limit: int = 1000) -> list[StudyRow]:
        query = select(pacs_studies).order_by(pacs_studies.c.updated_at.desc()).limit(limit)
        if self.pacs is not None:
            query = query.where(pacs_studies.c.pacs == self.pacs)
        with self.engine.connect() as conn:
            return [StudyRow(**r._mapping) for r in conn.execute(query)]

    def item_counts(self) -> dict[str, int]:
        query = select(pacs_items.c.state)
        if self.pacs is not None:
            query = query.where(pacs_items.c.pacs == self.pacs)
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            for (state,) in conn.execute(query):  # a String column: str (typed object)
                out[str(state)] = out.get(str(state), 0) + 1
        return out

    def study_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in self.studies(limit=1_000_000):
            out[row.state] = out.get(row.state, 0) + 1
        return out
