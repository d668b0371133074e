"""Batch records in a database (SQLAlchemy), batch work files under the work root.

Records live in a SQLite file in the work root by default (``<work_root>/ledger.sqlite``,
embedded, nothing to start) or in PostgreSQL when ``ledger_url`` is set: what a deployment
with workers on several machines needs, since file locks on shared storage are not reliable.
Work files stay on disk: ``<work_root>/<dag_id>/batches/<batch_key>/``.

Why a database: the records were JSON files that three modules read with their own caches,
and nothing serialised two runs of one input folder. Now every state change is a
transaction, the dashboard and the watch trigger query indexed columns, and one run at a time
holds a lock row (``RunLock``) per input folder and work root.

A record holds the state (sendit's names), PHI-free reasons, QA metrics and step times; its
``source_path`` is the batch folder (often an accession number): the database is created
0600 and must be as protected as the work root. What sendit last delivered for a batch
(object name, sha256, row key) is kept apart from the record (``Delivery``), so a new
attempt never forgets which object it may replace. Existing ``record.json`` files are
imported once, in one transaction, when a ledger is first opened.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import make_url

from sendit_ops.core.errors import ConfigError, RunNeedsAttention
from sendit_ops.core.lifecycle import State
from sendit_ops.core.records import BatchRecord, Delivery

log = logging.getLogger("sendit")

LEDGER_FILE = "ledger.sqlite"
IN_CHUNK = 500  # keys per IN (...) list: well below SQLite's and PostgreSQL's limits
ATTEMPTS_KEPT = 20


def write_atomic(path: Path, data: bytes | str, mode: int = 0o600, durable: bool = True) -> None:
    """Write a file so readers see either the old or the new content, never a partial one.

    ``durable``: the content is on disk (fsync) before it replaces the old file, so it
    survives a crash of the machine. Work files that a step can derive again from the source
    folder are written with ``durable=False``: an fsync costs a journal commit, several per
    batch, and on a busy Airflow host that is a good part of a small batch's time.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # one writer per process and thread at a time: a fixed temporary name, no random names
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the file may have been left by an earlier writer of that pid
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any, durable: bool = True) -> None:
    """Atomically write JSON (sorted keys, so equal content gives equal bytes)."""
    text = json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n"
    write_atomic(path, text, durable=durable)


def read_json(path: Path) -> Any:
    """Read a JSON file written by write_json."""
    return json.loads(path.read_text())


# ---- schema ----------------------------------------------------------------------------

metadata = MetaData()

ledgers = Table(
    "sendit_ledgers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("root", Text, nullable=False),  # the work root (absolute)
    Column("dag_id", String(250), nullable=False),
    Column("imported_at", Float, nullable=False, default=0.0),  # record.json import done
    Column("imported", Integer, nullable=False, default=0),
    UniqueConstraint("root", "dag_id", name="uq_sendit_ledgers_root_dag"),
)

batches = Table(
    "sendit_batches",
    metadata,
    Column("ledger_id", Integer, primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("source_path", Text, nullable=False),
    Column("source_hash", String(40), nullable=False),  # indexable, whatever the path length
    Column("finished_at", Float, nullable=False, default=0.0),
    Column("fingerprint", String(128), nullable=False, default=""),
    Column("run_id", Text, nullable=False, default=""),
    Column("changed", Float, nullable=False, default=0.0),
    # what the dashboard shows, so a page needs no JSON parse of whole records
    Column("images", Integer, nullable=False, default=0),
    Column("images_found", Integer, nullable=False, default=0),
    Column("bytes_in", BigInteger, nullable=False, default=0),
    Column("warnings", Integer, nullable=False, default=0),
    Column("reasons", Text, nullable=False, default="[]"),
    Column("object_name", Text, nullable=False, default=""),
    Column("data", Text, nullable=False),  # the whole BatchRecord as JSON
    Index("ix_sendit_batches_state", "ledger_id", "state", "changed"),
    Index("ix_sendit_batches_source", "ledger_id", "source_hash"),
    Index("ix_sendit_batches_changed", "ledger_id", "changed"),
)

deliveries = Table(
    "sendit_deliveries",
    metadata,
    Column("ledger_id", Integer, primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("object_name", Text, nullable=False, default=""),
    Column("sha256", String(64), nullable=False, default=""),
    Column("row_key", Text, nullable=False, default=""),
    Column("target", String(20), nullable=False, default=""),
    Column("location", Text, nullable=False, default=""),
    Column("delivered_at", Float, nullable=False, default=0.0),
    Column("run_id", Text, nullable=False, default=""),
    Column("attempts", Text, nullable=False, default="[]"),
)

run_locks = Table(
    "sendit_run_locks",
    metadata,
    Column("scope", String(64), primary_key=True),  # sha256 of work root + input folder
    Column("dag_id", String(250), nullable=False, default=""),
    Column("run_id", Text, nullable=False, default=""),  # "" = free
    Column("host", Text, nullable=False, default=""),
    Column("pid", Integer, nullable=False, default=0),
    Column("pid_started", Text, nullable=False, default=""),  # tells a reused pid apart
    Column("active", Integer, nullable=False, default=0),  # a task of the run is working
    # the task processes of the run working now: JSON [[host, pid, pid_started, beat], ...]
    Column("workers", Text, nullable=False, default="[]"),
    Column("acquired_at", Float, nullable=False, default=0.0),
    Column("heartbeat_at", Float, nullable=False, default=0.0),
)

# ---- engines ---------------------------------------------------------------------------

_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()
_TX = threading.local()  # url -> the connection of this thread's open write transaction
_SETUP_LOCK_ID = 0x53454E44  # "SEND": PostgreSQL advisory lock for schema/ledger creation


def database_url(work_root: str | Path, ledger_url: str | None = None) -> str:
    """The ledger's SQLAlchemy URL: ``ledger_url``, else SQLite in the work root."""
    if ledger_url:
        return ledger_url
    return f"sqlite:///{Path(work_root).absolute() / LEDGER_FILE}"


def _forget_engines() -> None:
    # a forked child must not use its parent's pooled connections
    for engine in _ENGINES.values():
        engine.dispose(close=False)
    _ENGINES.clear()


os.register_at_fork(after_in_child=_forget_engines)


def engine_for(url: str) -> Engine:
    """One engine per URL and process, its schema created on first use."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _create_engine(url)
            _setup_schema(engine)
            _ENGINES[url] = engine
    return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests dropping a database, a process shutting down)."""
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:":
            raise ConfigError("'ledger_url': an SQLite ledger needs a file path")
        path = Path(database)
        path.parent.mkdir(parents=True, exist_ok=True)
        # identified folder names are in it: 0600 from the start, never widened afterwards
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # transactions are begun by us (below), not by the sqlite3 module
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA busy_timeout=60000")
            # readers (dashboard, watch trigger) never block the writer, nor it them
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")  # a committed state survives a crash
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # a writer takes the write lock at BEGIN: two writers never deadlock on an
            # upgrade from a read lock, the second one waits (busy_timeout)
            write = conn.get_execution_options().get("sendit_write")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)
    raise ConfigError(
        f"'ledger_url': the ledger supports SQLite and PostgreSQL URLs, not {backend!r}"
    )


@contextmanager
def _write(engine: Engine) -> Iterator[Connection]:
    """A write transaction (SQLite: BEGIN IMMEDIATE); nested uses join the open one."""
    key = str(engine.url)
    open_tx: dict[str, Connection] = _TX.__dict__.setdefault("open", {})
    current = open_tx.get(key)
    if current is not None:
        yield current
        return
    with engine.connect() as conn:
        conn.execution_options(sendit_write=True)
        with conn.begin():
            open_tx[key] = conn
            try:
                yield conn
            finally:
                open_tx.pop(key, None)


@contextmanager
def _read(engine: Engine) -> Iterator[Connection]:
    """A read: the open write transaction of this thread if any, else a fresh connection."""
    current = _TX.__dict__.get("open", {}).get(str(engine.url))
    if current is not None:
        yield current
        return
    with engine.connect() as conn:
        yield conn


def _setup_schema(engine: Engine) -> None:
    with _write(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SETUP_LOCK_ID})")
        metadata.create_all(conn)


def _upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys,
        set_={c: stmt.excluded[c] for c in rows[0] if c not in keys},
    )
    conn.execute(stmt, rows)


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), IN_CHUNK):
        yield items[i : i + IN_CHUNK]


def source_hash(path: str) -> str:
    """The indexed form of a batch's source path (paths may be longer than an index key)."""
    return hashlib.sha1(path.encode(errors="surrogateescape")).hexdigest()


def _record_row(ledger_id: int, r: BatchRecord) -> dict[str, Any]:
    return {
        "ledger_id": ledger_id,
        "key": r.key,
        "state": r.state,
        "source_path": r.source_path,
        "source_hash": source_hash(r.source_path),
        "finished_at": float(r.finished_at or 0.0),
        "fingerprint": r.fingerprint or "",
        "run_id": r.run_id or "",
        "changed": float(r.history[-1][0]) if r.history else 0.0,
        "images": int(r.metrics.get("images_accepted", 0) or 0),
        "images_found": int(r.metrics.get("images_found", 0) or 0),
        "bytes_in": int(r.metrics.get("bytes_in", 0) or 0),
        "warnings": len(r.warnings),
        "reasons": json.dumps(r.reasons),
        "object_name": str(r.outputs.object_name),
        "data": json.dumps(asdict(r), sort_keys=True, default=str),
    }


def _delivery_of(row: Any) -> Delivery:
    return Delivery(
        object_name=row.object_name,
        sha256=row.sha256,
        row_key=row.row_key,
        target=row.target,
        location=row.location,
        delivered_at=row.delivered_at,
        run_id=row.run_id,
        attempts=json.loads(row.attempts or "[]"),
    )


def _delivery_row(ledger_id: int, key: str, d: Delivery) -> dict[str, Any]:
    return {
        "ledger_id": ledger_id,
        "key": key,
        "object_name": d.object_name,
        "sha256": d.sha256,
        "row_key": d.row_key,
        "target": d.target,
        "location": d.location,
        "delivered_at": d.delivered_at,
        "run_id": d.run_id,
        "attempts": json.dumps(d.attempts[-ATTEMPTS_KEPT:]),
    }


def _imported_delivery(r: BatchRecord) -> Delivery | None:
    """What an old JSON record says sendit delivered: its own outputs when DONE, else the
    checksum ``register`` carried over from the delivery before."""
    out = r.outputs
    if r.state == State.DONE and out.sha256:
        return Delivery(
            object_name=str(out.object_name),
            sha256=str(out.sha256),
            row_key=str(out.item_suid),
            target=str(out.delivered_to),
            location=str(out.bucket),
            delivered_at=float(out.delivered_at or 0.0),
            run_id=r.run_id,
        )
    if out.previous_sha256:
        return Delivery(sha256=out.previous_sha256[0], row_key=str(out.item_suid))
    return None


# ---- the ledger of one DAG -----------------------------------------------------------


class Ledger:
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

    # -- database ------------------------------------------------------------------------

    @cached_property
    def engine(self) -> Engine:
        """The database engine (shared by every Ledger of this URL in the process)."""
        return engine_for(self.url)

    @cached_property
    def ledger_id(self) -> int:
        """This ledger's id; created on first use, importing its record.json files."""
        with _read(self.engine) as conn:
            found = conn.execute(self._id_query()).scalar()
        if found is not None:
            return int(found)
        with _write(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SETUP_LOCK_ID})")
            found = conn.execute(self._id_query()).scalar()
            if found is not None:
                return int(found)
            new_id = int(
                conn.execute(
                    ledgers.insert().values(root=str(self.work_root), dag_id=self.dag_id)
                ).inserted_primary_key[0]
            )
            imported = self._import_records(conn, new_id)
            conn.execute(
                update(ledgers)
                .where(ledgers.c.id == new_id)
                .values(imported=imported, imported_at=time.time())
            )
        if imported:
            log.info("ledger %s: %d record.json file(s) imported", self.dag_id, imported)
        return new_id

    def _id_query(self) -> Any:
        return select(ledgers.c.id).where(
            ledgers.c.root == str(self.work_root), ledgers.c.dag_id == self.dag_id
        )

    def _import_records(self, conn: Connection, ledger_id: int) -> int:
        """Insert the records of the file-based ledger (same transaction as the ledger's
        creation, so an interrupted import is redone whole: idempotent)."""
        base = self.root / "batches"
        if not base.is_dir():
            return 0
        rows, delivered = [], []
        for folder in sorted(base.iterdir()):
            path = folder / "record.json"
            if not path.is_file():
                continue
            try:
                record = BatchRecord(**read_json(path))
            except (OSError, ValueError, TypeError) as exc:
                log.warning(
                    "batch %s: its record in %s is unreadable (%s) and is not imported",
                    folder.name,
                    self.root,
                    type(exc).__name__,
                )
                continue
            rows.append(_record_row(ledger_id, record))
            d = _imported_delivery(record)
            if d is not None:
                delivered.append(_delivery_row(ledger_id, record.key, d))
        for part in range(0, len(rows), IN_CHUNK):
            _upsert(conn, batches, rows[part : part + IN_CHUNK], ["ledger_id", "key"])
        for part in range(0, len(delivered), IN_CHUNK):
            _upsert(conn, deliveries, delivered[part : part + IN_CHUNK], ["ledger_id", "key"])
        return len(rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group state changes: every save, delivery note and confirmation inside is
        committed together or not at all."""
        _ = self.ledger_id  # the ledger is created (and imported) in a transaction of its own
        with _write(self.engine):
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
        with _read(self.engine) as conn:
            data = conn.execute(query).scalar()
        return None if data is None else BatchRecord(**json.loads(data))

    def save(self, record: BatchRecord) -> None:
        """Write a batch record (one transaction, or part of the open one)."""
        self.save_many([record])

    def save_many(self, records: Iterable[BatchRecord]) -> None:
        """Write several records in one transaction."""
        rows = [_record_row(self.ledger_id, r) for r in records]
        with _write(self.engine) as conn:
            for part in range(0, len(rows), IN_CHUNK):
                _upsert(conn, batches, rows[part : part + IN_CHUNK], ["ledger_id", "key"])

    def all(self) -> list[BatchRecord]:
        """Every readable batch record of this DAG, by key; an unreadable one (a damaged
        database row) is left out with a warning naming its batch id."""
        query = (
            select(batches.c.key, batches.c.data)
            .where(batches.c.ledger_id == self.ledger_id)
            .order_by(batches.c.key)
        )
        records = []
        with _read(self.engine) as conn:
            for key, data in conn.execute(query):
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
        (``outputs.pseudonym_source``), not yet superseded by a re-delivery. The database
        filters the rows on their text, so a run parses only those (normally none), not the
        whole history. Records older than the field are not known, so not returned."""
        data = batches.c.data
        query = select(batches.c.data).where(
            batches.c.ledger_id == self.ledger_id,
            batches.c.state == State.DONE,
            data.like('%"pseudonym_source": %'),
            ~data.like(f"%{json.dumps({'pseudonym_source': source})[1:-1]}%"),
        )
        with _read(self.engine) as conn:
            records = [BatchRecord(**json.loads(d)) for (d,) in conn.execute(query)]
        return [r for r in records if not r.outputs.superseded_by]

    def supersede(self, old_key: str, new_key: str) -> None:
        """A delivered batch is re-delivered under another batch id (the secret key
        changed, so its id did): the new id inherits what sendit delivered for the old one
        (its object and row are then replaced, not duplicated), and the old record says it
        was superseded."""
        with self.transaction():
            before = self.delivery(old_key)
            record = self.get(old_key)
            if before is not None and self.delivery(new_key) is None:
                with _write(self.engine) as conn:
                    _upsert(
                        conn,
                        deliveries,
                        [_delivery_row(self.ledger_id, new_key, before)],
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
        with _read(self.engine) as conn:
            for part in _chunks(wanted):
                # by primary key, the state filtered here: with the state in the query the
                # planner may walk the (ledger, state) index, every DONE record (40x slower)
                query = select(batches.c.key, batches.c.fingerprint, batches.c.state).where(
                    batches.c.ledger_id == self.ledger_id, batches.c.key.in_(part)
                )
                found.update((k, f) for k, f, state in conn.execute(query) if state in states)
        return found

    def completion_times(self, sources: Iterable[str]) -> dict[str, float]:
        """Source path -> the latest completion time a record holds for it (watch trigger)."""
        wanted = {source_hash(s): s for s in sources}
        found: dict[str, float] = {}
        with _read(self.engine) as conn:
            for part in _chunks(list(wanted)):
                query = select(batches.c.source_path, batches.c.finished_at).where(
                    batches.c.ledger_id == self.ledger_id, batches.c.source_hash.in_(part)
                )
                for path, finished in conn.execute(query):
                    if path in found or wanted.get(source_hash(path)) == path:
                        found[path] = max(found.get(path, 0.0), float(finished or 0.0))
        return found

    def _window(self, since: float | None, until: float | None) -> list[Any]:
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
        warnings, run_id, changed, object_name) of the newest ``limit`` records (all by
        default) changed in ``[since, until)``, newest change first, without reading whole
        records: a page costs its rows, not the history."""
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
        ).where(*self._window(since, until))
        if state:
            query = query.where(c.state == state)
        query = query.order_by(c.changed if oldest_first else c.changed.desc())
        if limit is not None:
            query = query.limit(limit)
        with _read(self.engine) as conn:
            return [row._asdict() for row in conn.execute(query)]

    def totals(
        self, since: float | None = None, until: float | None = None
    ) -> dict[str, tuple[int, int, int]]:
        """Per state: batches, accepted images and input bytes of the records changed in
        ``[since, until)`` (one indexed query): the dashboard's totals and a run's progress
        (``since`` = the run's start)."""
        c = batches.c
        query = (
            select(c.state, func.count(), func.sum(c.images), func.sum(c.bytes_in))
            .where(*self._window(since, until))
            .group_by(c.state)
        )
        with _read(self.engine) as conn:
            return {
                state: (int(n), int(images or 0), int(size or 0))
                for state, n, images, size in conn.execute(query)
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
        """(change time, images, input bytes) of the DONE records changed in ``[since,
        until)``: when each batch was delivered, for the throughput chart."""
        c = batches.c
        query = select(c.changed, c.images, c.bytes_in).where(
            c.state == State.DONE, *self._window(since, until)
        )
        with _read(self.engine) as conn:
            return [(float(t), int(i or 0), int(b or 0)) for t, i, b in conn.execute(query)]

    def state_counts(self) -> dict[str, int]:
        """How many records are in each state (one indexed query)."""
        query = (
            select(batches.c.state, func.count())
            .where(batches.c.ledger_id == self.ledger_id)
            .group_by(batches.c.state)
        )
        with _read(self.engine) as conn:
            return {state: int(n) for state, n in conn.execute(query)}

    # -- deliveries ----------------------------------------------------------------------

    def delivery(self, key: str) -> Delivery | None:
        """What sendit put outside the machine for this batch (None: nothing yet)."""
        query = select(deliveries).where(
            deliveries.c.ledger_id == self.ledger_id, deliveries.c.key == key
        )
        with _read(self.engine) as conn:
            row = conn.execute(query).first()
        return None if row is None else _delivery_of(row)

    def note_attempts(self, records: Iterable[BatchRecord]) -> dict[str, Delivery]:
        """Note, before any object is written, which archive each batch is about to
        deliver; return every batch's Delivery. An attempt cut short (a crash after the
        object was written) leaves its checksum here, so the next attempt may replace it."""
        out: dict[str, Delivery] = {}
        now = round(time.time(), 3)
        with _write(self.engine) as conn:
            rows = []
            for record in records:
                query = select(deliveries).where(
                    deliveries.c.ledger_id == self.ledger_id, deliveries.c.key == record.key
                )
                row = conn.execute(query).first()
                d = Delivery() if row is None else _delivery_of(row)
                sha = str(record.outputs.sha256)
                if sha and sha not in d.own_versions():
                    name = str(record.outputs.object_name)
                    d.attempts = [*d.attempts, [name, sha, now, record.run_id]][-ATTEMPTS_KEPT:]
                    rows.append(_delivery_row(self.ledger_id, record.key, d))
                out[record.key] = d
            _upsert(conn, deliveries, rows, ["ledger_id", "key"])
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
        with _write(self.engine) as conn:
            _upsert(
                conn,
                deliveries,
                [_delivery_row(self.ledger_id, record.key, d)],
                ["ledger_id", "key"],
            )

    # -- the run lock ------------------------------------------------------------------------

    def run_lock(self, input_folder: str | Path) -> RunLock:
        """The lock that lets one run at a time work on ``input_folder`` in this work root."""
        return RunLock(self.engine, self.work_root, input_folder, self.dag_id)


# ---- one run at a time ---------------------------------------------------------------

HEARTBEAT_SECONDS = 15.0  # a working task refreshes its run's lock this often
ACTIVE_STALE_SECONDS = 120.0  # a working holder silent this long is gone (machine, process)
IDLE_STALE_SECONDS = 30 * 60.0  # between tasks (queued for a worker): gone after this long
WAIT_SECONDS = float(os.environ.get("SENDIT_RUN_LOCK_WAIT_SECONDS", "120"))
POLL_SECONDS = 1.0


class RunLocked(RunNeedsAttention):
    """Another run of the same input folder and work root holds the lock."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a run lock: the run, the task process that beat last, and every task
    process of the run working now (mapped tasks run in several processes at once)."""

    run_id: str
    host: str
    pid: int
    pid_started: str
    active: bool
    acquired_at: float
    heartbeat_at: float
    workers: tuple[tuple[str, int, str, float], ...] = ()

    def since(self) -> str:
        """When the holder took the lock, for messages (UTC, seconds)."""
        return datetime.fromtimestamp(self.acquired_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# set by `sendit run` to its own pid: every task of the run executes in that process
IN_PROCESS_RUN_ENV = "SENDIT_IN_PROCESS_RUN_PID"


def _pid_started(pid: int) -> str:
    """The start time of a process (clock ticks since boot), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def _process_gone(pid: int, started: str) -> bool:
    """Whether a process of this host has ended (or its pid now names another process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False  # no /proc: the signal said it exists
    if state in ("Z", "X"):
        return True  # killed, not yet reaped by its parent
    return bool(started) and _pid_started(pid) != started


class RunLock:
    """One row per (work root, input folder): the run that may work on it now.

    Taken by ``discover``, kept and refreshed by every task of the same run (each working
    task process is listed in the row with its own heartbeat), released by ``report``. A
    second run waits up to a bounded time, then stops with a message naming the holder. A
    holder is gone when every task process it lists has ended (on this host) or fell
    silent for ACTIVE_STALE_SECONDS (another host), or, between tasks, when nothing beat
    for IDLE_STALE_SECONDS. It is then taken over by compare-and-swap on its run id and
    heartbeat, inside a transaction that locks the row (SQLite: BEGIN IMMEDIATE;
    PostgreSQL: SELECT … FOR UPDATE). Heartbeats use each host's clock: hosts must keep
    time (NTP)."""

    def __init__(self, engine: Engine, work_root: Path, input_folder: str | Path, dag_id: str):
        self.engine = engine
        # the real paths: a folder named through a symlink is still the same folder
        where = f"{Path(work_root).resolve()}\0{Path(input_folder).resolve()}"
        self.scope = hashlib.sha256(where.encode(errors="surrogateescape")).hexdigest()
        self.dag_id = dag_id
        self.host = socket.gethostname()
        self.lost = False

    def _me(self) -> dict[str, Any]:
        pid = os.getpid()
        return {"host": self.host, "pid": pid, "pid_started": _pid_started(pid)}

    def _query(self) -> Any:
        return select(run_locks).where(run_locks.c.scope == self.scope).with_for_update()

    def holder(self) -> LockHolder | None:
        """The current holder, or None when the lock is free."""
        with _read(self.engine) as conn:
            row = conn.execute(select(run_locks).where(run_locks.c.scope == self.scope)).first()
        return None if row is None or not row.run_id else _holder(row)

    def _gone(self, worker: tuple[str, int, str, float], now: float) -> bool:
        host, pid, started, beat = worker
        if host == self.host and _process_gone(pid, started):
            return True
        return now - beat > ACTIVE_STALE_SECONDS

    def _dead(self, h: LockHolder, now: float) -> str:
        """Why the holder is gone ("" when it may be alive)."""
        if h.workers:
            if all(self._gone(w, now) for w in h.workers):
                return "its task process(es) ended or fell silent"
            return ""
        age = now - h.heartbeat_at
        limit = IDLE_STALE_SECONDS if not h.active else ACTIVE_STALE_SECONDS
        return f"no heartbeat for {age:.0f} s" if age > limit else ""

    def _workers(self, row: Any, now: float, add: bool) -> str:
        """The row's working processes without this one (and those gone), plus this one
        when ``add``."""
        me = self._me()
        kept = [
            w
            for w in (_holder(row).workers if row is not None and row.run_id else ())
            if (w[0], w[1]) != (me["host"], me["pid"]) and not self._gone(w, now)
        ]
        if add:
            kept.append((me["host"], me["pid"], me["pid_started"], now))
        return json.dumps(kept)

    def try_acquire(self, run_id: str, active: bool = True) -> LockHolder | None:
        """Take or keep the lock for ``run_id`` in one transaction, this process listed as
        working; return the other run holding it (None: it is ours now)."""
        now = time.time()
        taken_from = ""
        with _write(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert

                conn.execute(
                    insert(run_locks)
                    .values(scope=self.scope, dag_id=self.dag_id)
                    .on_conflict_do_nothing(index_elements=["scope"])
                )
            row = conn.execute(self._query()).first()
            if row is not None and row.run_id and row.run_id != run_id:
                current = _holder(row)
                why = self._dead(current, now)
                if not why:
                    return current
                taken_from = f"{row.run_id} ({why})"
                row_for_workers = None  # the dead run's processes are not ours
            else:
                row_for_workers = row
            mine = {
                **self._me(),
                "run_id": run_id,
                "active": int(active),
                "heartbeat_at": now,
                "workers": self._workers(row_for_workers, now, active),
            }
            if row is None:
                conn.execute(
                    run_locks.insert().values(
                        scope=self.scope, dag_id=self.dag_id, acquired_at=now, **mine
                    )
                )
                return None
            if row.run_id == run_id:
                conn.execute(
                    update(run_locks).where(run_locks.c.scope == self.scope).values(**mine)
                )
                return None
            # free, or a dead holder: compare-and-swap on the holder and its heartbeat
            done = conn.execute(
                update(run_locks)
                .where(
                    run_locks.c.scope == self.scope,
                    run_locks.c.run_id == row.run_id,
                    run_locks.c.heartbeat_at == row.heartbeat_at,
                )
                .values(dag_id=self.dag_id, acquired_at=now, **mine)
            )
            if done.rowcount != 1:  # changed under us: report the current holder
                row = conn.execute(self._query()).first()
                return _holder(row) if row is not None and row.run_id else None
        if taken_from:
            log.warning(
                "run %s: took over the lock of this input folder from run %s", run_id, taken_from
            )
        self.lost = False
        return None

    def acquire(self, run_id: str, wait: float | None = None) -> None:
        """Take the lock for ``run_id``, waiting up to ``wait`` seconds for another run;
        raise RunLocked naming that run when it still holds it."""
        wait = WAIT_SECONDS if wait is None else wait
        deadline = time.monotonic() + wait
        told = False
        while True:
            other = self.try_acquire(run_id)
            if other is None:
                return
            if time.monotonic() >= deadline:
                raise RunLocked(
                    f"another run ({other.run_id}) of this input folder is in progress since "
                    f"{other.since()}; this run stops (nothing was changed; run it again "
                    "when that run has finished)"
                )
            if not told:
                log.warning(
                    "another run (%s) of this input folder is in progress since %s; this run "
                    "waits up to %.0f s",
                    other.run_id,
                    other.since(),
                    wait,
                )
                told = True
            time.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0.0)))

    def _beat(self, run_id: str) -> bool:
        """Refresh this working process's heartbeat; False if the run lost the lock."""
        now = time.time()
        with _write(self.engine) as conn:
            row = conn.execute(self._query()).first()
            if row is None or row.run_id != run_id:
                return False
            conn.execute(
                update(run_locks)
                .where(run_locks.c.scope == self.scope)
                .values(
                    heartbeat_at=now,
                    active=1,
                    workers=self._workers(row, now, True),
                    **self._me(),
                )
            )
        return True

    def _idle(self, run_id: str) -> None:
        """A task ends: the run keeps the lock; this process leaves the working list (the
        lock is idle when no other task of the run works)."""
        if os.environ.get(IN_PROCESS_RUN_ENV) == str(os.getpid()):
            # the whole run lives in this process (`sendit run`, dag.test): it stays listed
            # between tasks, so a kill -9 between two tasks frees the lock at once
            self._beat(run_id)
            return
        now = time.time()
        with _write(self.engine) as conn:
            row = conn.execute(self._query()).first()
            if row is None or row.run_id != run_id:
                return
            workers = self._workers(row, now, False)
            conn.execute(
                update(run_locks)
                .where(run_locks.c.scope == self.scope)
                .values(heartbeat_at=now, active=int(workers != "[]"), workers=workers)
            )

    def release(self, run_id: str) -> bool:
        """Free the lock if ``run_id`` holds it (never another run's)."""
        with _write(self.engine) as conn:
            done = conn.execute(
                update(run_locks)
                .where(run_locks.c.scope == self.scope, run_locks.c.run_id == run_id)
                .values(
                    run_id="",
                    active=0,
                    pid=0,
                    pid_started="",
                    workers="[]",
                    heartbeat_at=time.time(),
                )
            )
        return done.rowcount == 1

    @contextmanager
    def held(self, run_id: str, wait: float | None = None, release: bool = False) -> Iterator[None]:
        """Hold the lock while a task of ``run_id`` works: taken (or kept), refreshed by a
        heartbeat thread, then left idle for the run's next task, or freed with ``release``."""
        self.acquire(run_id, wait)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_SECONDS):
                try:
                    if not self._beat(run_id):
                        self.lost = True
                        log.error(
                            "run %s: lost the lock of this input folder to another run", run_id
                        )
                        return
                except Exception as exc:  # a database hiccup: try again at the next beat
                    log.warning("run lock heartbeat failed (%s)", type(exc).__name__)

        thread = threading.Thread(target=beat, name="sendit-run-lock", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            if release:
                self.release(run_id)
            else:
                self._idle(run_id)


def _holder(row: Any) -> LockHolder:
    workers = json.loads(getattr(row, "workers", None) or "[]")
    return LockHolder(
        run_id=row.run_id,
        host=row.host,
        pid=int(row.pid or 0),
        pid_started=row.pid_started or "",
        active=bool(row.active),
        acquired_at=float(row.acquired_at or 0.0),
        heartbeat_at=float(row.heartbeat_at or 0.0),
        workers=tuple((str(h), int(p), str(st), float(b)) for h, p, st, b in workers),
    )
