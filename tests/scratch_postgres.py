"""A scratch database on the machine's PostgreSQL (127.0.0.1:5432, trust authentication).

One way for every test that needs its own database: the ledger tests' session database and
the fault matrix's read-only case (which changes database settings and makes roles, so it
must not touch the session's database)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def database_url(name: str, user: str = "postgres", password: str = "") -> str:
    """The SQLAlchemy URL of database ``name`` on that server."""
    secret = f":{password}" if password else ""
    return f"postgresql+psycopg2://{user}{secret}@{PG['host']}:{PG['port']}/{name}"


@contextmanager
def scratch_database(name: str, roles: Iterable[str] = ()) -> Iterator[Any]:
    """Database ``name``, created now and dropped afterwards with ``roles`` (roles a test
    makes for it); yields an admin cursor (autocommit). No server is a failure naming what
    is needed, never a skip: the PostgreSQL cases are half of what those tests prove."""
    import psycopg2

    from sendit_ops.core.ledger import dispose_engines

    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"this test needs PostgreSQL at 127.0.0.1:5432 (trust auth): {exc}".strip())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        with admin.cursor() as cur:
            yield cur
    finally:
        dispose_engines()  # the ledger's pooled connections would keep the database open
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            for role in roles:
                cur.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()
