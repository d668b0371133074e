"""Engines and transactions of the ledger's database (SQLite file or PostgreSQL).

One engine per URL and process; its schema is brought to the newest revision on first use
(``migrate.ensure_current``). Write transactions are explicit: SQLite takes its write lock at
BEGIN (``BEGIN IMMEDIATE``), so two writers never deadlock upgrading a read lock; a thread's
nested writes and reads join its open transaction.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Executable, Table, create_engine, event
from sqlalchemy import text as sql_text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from sendit_ops.core.errors import ConfigError

log = logging.getLogger("sendit")

LEDGER_FILE = "ledger.sqlite"
IN_CHUNK = 500  # keys per IN (...) list: well below SQLite's and PostgreSQL's limits
SETUP_LOCK_ID = 0x53454E44  # "SEND": PostgreSQL advisory lock for schema/ledger creation

_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()
_TX = threading.local()  # url -> the connection of this thread's open write transaction


class LedgerUnavailable(ConfigError):
    """The ledger's database cannot be opened or written (unreachable server, refused
    login, read-only file): a configuration problem an admin fixes, not a batch failure."""


def database_url(work_root: str | Path, ledger_url: str | None = None) -> str:
    """The ledger's SQLAlchemy URL: ``ledger_url``, else SQLite in the work root."""
    if ledger_url:
        return ledger_url
    return f"sqlite:///{Path(work_root).absolute() / LEDGER_FILE}"


def describe(url: str) -> str:
    """The ledger's location for messages: the SQLite file, or the URL without password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(parsed.database)
    return parsed.render_as_string(hide_password=True)


def forget_engines_in_child() -> None:
    """A forked child must not use its parent's pooled connections: called after a fork
    (registered by ``install_fork_hook``)."""
    for engine in _ENGINES.values():
        engine.dispose(close=False)
    _ENGINES.clear()


_FORK_HOOK = False


def install_fork_hook() -> None:
    """Register ``forget_engines_in_child`` to run in every forked child (once per process).
    Called when the first engine is made: a process that never opens a ledger gets no hook."""
    global _FORK_HOOK
    if not _FORK_HOOK:
        os.register_at_fork(after_in_child=forget_engines_in_child)
        _FORK_HOOK = True


def engine_for(url: str) -> Engine:
    """One engine per URL and process, its schema brought to the newest revision on first
    use; a ledger that cannot be reached or written raises LedgerUnavailable at once."""
    from sendit_ops.core.ledger.migrate import ensure_current

    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            install_fork_hook()
            engine = create_engine_for(url)
            try:
                ensure_current(engine)
                refused = read_only_reason(engine)
            except DBAPIError as exc:
                engine.dispose()
                raise unavailable(url, exc) from None
            if refused:
                engine.dispose()
                raise LedgerUnavailable(
                    f"ledger {describe(url)} cannot be written ({refused}): make the database "
                    "writable (not a standby, default_transaction_read_only off) and grant "
                    "this user INSERT, UPDATE and DELETE on the ledger's tables, or correct "
                    "'ledger_url'"
                )
            _ENGINES[url] = engine
    return engine


def read_only_reason(engine: Engine) -> str:
    """Why a PostgreSQL ledger cannot be written ("" if it can): a read-only database
    (a standby, ``default_transaction_read_only``) or a user without write privileges. A
    current schema needs no write to open, so without this check such a ledger would fail
    only at the run's first write, inside a task. One query; SQLite says so at connect."""
    if engine.dialect.name != "postgresql":
        return ""
    from sendit_ops.core.ledger.schema import metadata

    names = [t.name for t in metadata.sorted_tables]
    checks = ", ".join(
        f"has_table_privilege(:t{n}, '{p}')"
        for n in range(len(names))
        for p in ("INSERT", "UPDATE", "DELETE")
    )
    query = sql_text(f"SELECT current_setting('transaction_read_only'), {checks}")
    with engine.connect() as conn:
        row = conn.execute(query, {f"t{n}": name for n, name in enumerate(names)}).one()
    if row[0] == "on":
        return "the database is read-only"
    if not all(row[1:]):
        return "this user may not write the ledger's tables"
    return ""


def unavailable(url: str, exc: BaseException) -> LedgerUnavailable:
    """One line for an admin: which ledger, what happened, what to do."""
    where = describe(url)
    text = str(getattr(exc, "orig", exc) or type(exc).__name__).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if make_url(url).get_backend_name() == "sqlite":
        if "readonly" in first.replace(" ", "").lower() or "read-only" in first.lower():
            fix = "make the file and its folder writable by the user running sendit"
        else:
            fix = "check that the file's folder exists, is writable and is on a local disk"
        return LedgerUnavailable(f"ledger {where} cannot be written ({first}): {fix}")
    return LedgerUnavailable(
        f"ledger {where} cannot be reached ({first}): check that the database server runs "
        "and accepts this user, or correct 'ledger_url'"
    )


def dispose_engines() -> None:
    """Close every pooled connection (tests dropping a database, a process shutting down)."""
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def create_engine_for(url: str) -> Engine:
    """A new engine for the ledger at ``url`` (SQLite: the file created 0600 first), its
    schema not checked: ``engine_for`` is what the code uses."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:":
            raise ConfigError("'ledger_url': an SQLite ledger needs a file path")
        path = Path(database)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # identified folder names are in it: 0600 from the start, never widened afterwards
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise unavailable(url, sqlite3.OperationalError(exc.strerror or str(exc))) from None
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
        # fail fast: an unreachable server is a configuration problem, not one to wait out
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=2,
            max_overflow=4,
            connect_args={"connect_timeout": 10},
        )
    raise ConfigError(
        f"'ledger_url': the ledger supports SQLite and PostgreSQL URLs, not {backend!r}"
    )


@contextmanager
def write(engine: Engine) -> Iterator[Connection]:
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
def read(engine: Engine) -> Iterator[Connection]:
    """A read: the open write transaction of this thread if any, else a fresh connection."""
    current = _TX.__dict__.get("open", {}).get(str(engine.url))
    if current is not None:
        yield current
        return
    with engine.connect() as conn:
        yield conn


def setup_lock(conn: Connection) -> None:
    """Serialise schema and ledger creation across processes (PostgreSQL: an advisory lock
    held to the end of the transaction; SQLite: BEGIN IMMEDIATE already serialises)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SETUP_LOCK_ID})")


def upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    """Insert or update ``rows`` by their ``keys`` (one statement per call)."""
    if not rows:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys,
        set_={c: stmt.excluded[c] for c in rows[0] if c not in keys},
    )
    conn.execute(stmt, rows)


def rows_of(conn: Connection, query: Executable) -> list[Any]:
    """The rows of ``query`` (typed Any: the tables declare no Python types per column)."""
    return list(conn.execute(query))


def chunks(items: list[str]) -> Iterator[list[str]]:
    """``items`` in parts of at most IN_CHUNK (one IN list each)."""
    for i in range(0, len(items), IN_CHUNK):
        yield items[i : i + IN_CHUNK]
