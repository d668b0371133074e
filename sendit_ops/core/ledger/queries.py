"""Read-only questions about many records at once: the dashboard's pages, a run's progress,
the watch trigger. Each is one indexed query over the columns, never a parse of whole
records, so a page costs its rows, not the history.

A mixin of ``Ledger`` (it needs the ledger's engine and id), kept apart because these
queries serve readers that change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, select

from sendit_ops.core.ledger.database import chunks, read, rows_of
from sendit_ops.core.ledger.rows import source_hash
from sendit_ops.core.ledger.schema import batches, delivery_log
from sendit_ops.core.lifecycle import State


class LedgerQueries:
    """Queries over the records of one ledger (``engine`` and ``ledger_id`` from Ledger)."""

    engine: Engine
    ledger_id: int

    def completion_times(self, sources: Iterable[str]) -> dict[str, float]:
        """Source path -> the latest completion time a record holds for it (watch trigger)."""
        wanted = {source_hash(s): s for s in sources}
        found: dict[str, float] = {}
        with read(self.engine) as conn:
            for part in chunks(list(wanted)):
                query = select(batches.c.source_path, batches.c.finished_at).where(
                    batches.c.ledger_id == self.ledger_id, batches.c.source_hash.in_(part)
                )
                for path, finished in rows_of(conn, query):
                    if path in found or wanted.get(source_hash(path)) == path:
                        found[path] = max(found.get(path, 0.0), float(finished or 0.0))
        return found

    def _window(self, since: float | None, until: float | None) -> list[ColumnElement[bool]]:
        """Conditions: this ledger, changed in ``[since, until)`` (open when None); served
        by the (ledger, changed) and (ledger, state, changed) indexes."""
        c = batches.c
        where = [c.ledger_id == self.ledger_id]
        if since is not None:
            where.append(c.changed >= since)
        if until is not None:
            where.append(c.changed < until)
        return where

    def summaries(
        self,
        state: str | None = None,
        limit: int | None = None,
        since: float | None = None,
        until: float | None = None,
        oldest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """The dashboard's columns (key, state, images, images_found, bytes_in, reasons,
        warnings, run_id, changed, object_name, data) of the newest ``limit`` records (all by
        default) changed in ``[since, until)``, newest change first."""
        c = batches.c
        query = select(
            c.key,
            c.state,
            c.images,
            c.images_found,
            c.bytes_in,
            c.reasons,
            c.warnings,
            c.run_id,
            c.changed,
            c.object_name,
            c.data,  # the whole record as JSON (the dashboard reads its map_index)
        ).where(*self._window(since, until))
        if state:
            query = query.where(c.state == state)
        query = query.order_by(c.changed if oldest_first else c.changed.desc())
        if limit is not None:
            query = query.limit(limit)
        with read(self.engine) as conn:
            return [row._asdict() for row in rows_of(conn, query)]

    def totals(
        self, since: float | None = None, until: float | None = None
    ) -> dict[str, tuple[int, int, int]]:
        """Per state: batches, accepted images and input bytes of the records changed in
        ``[since, until)``: the dashboard's totals and a run's progress (``since`` = the
        run's start)."""
        c = batches.c
        query = (
            select(c.state, func.count(), func.sum(c.images), func.sum(c.bytes_in))
            .where(*self._window(since, until))
            .group_by(c.state)
        )
        with read(self.engine) as conn:
            return {
                state: (int(n), int(images or 0), int(size or 0))
                for state, n, images, size in rows_of(conn, query)
            }

    def progress(self, since: float) -> tuple[dict[str, int], int, int]:
        """A run's batches per state, and their images and input bytes (``totals`` since the
        run's start), as the progress display reads them."""
        sums = self.totals(since)
        images = sum(v[1] for v in sums.values())
        size = sum(v[2] for v in sums.values())
        return {state: v[0] for state, v in sums.items()}, images, size

    def delivered_over_time(
        self, since: float | None = None, until: float | None = None
    ) -> list[tuple[float, int, int]]:
        """(delivery time, images, input bytes) of every delivery in ``[since, until)``, for
        the throughput chart: the delivery log (earlier deliveries of a reprocessed batch
        included), plus the DONE records that have no log row (delivered before the log
        existed, migration 0004)."""
        log, c = delivery_log.c, batches.c
        logged = select(log.delivered_at, log.images, log.bytes_in).where(
            log.ledger_id == self.ledger_id
        )
        if since is not None:
            logged = logged.where(log.delivered_at >= since)
        if until is not None:
            logged = logged.where(log.delivered_at < until)
        has_log = select(log.id).where(log.ledger_id == self.ledger_id, log.key == c.key).exists()
        unlogged = select(c.changed, c.images, c.bytes_in).where(
            c.state == State.DONE, ~has_log, *self._window(since, until)
        )
        with read(self.engine) as conn:
            found = rows_of(conn, logged) + rows_of(conn, unlogged)
        return [(float(t), int(i or 0), int(b or 0)) for t, i, b in found]

    def state_counts(self) -> dict[str, int]:
        """How many records are in each state (one indexed query)."""
        query = (
            select(batches.c.state, func.count())
            .where(batches.c.ledger_id == self.ledger_id)
            .group_by(batches.c.state)
        )
        with read(self.engine) as conn:
            return {state: int(n) for state, n in rows_of(conn, query)}
