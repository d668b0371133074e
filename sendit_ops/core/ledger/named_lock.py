"""A lock shared by every process using one ledger, for work that must happen once at a
time across processes and hosts (the DASHER token refresh: refresh tokens are single-use).

PostgreSQL: a session advisory lock (one per name), so processes on several hosts are
serialised; SQLite: an exclusive ``flock`` on a file beside the database, enough since an
SQLite ledger is used from one host. Neither holds a database transaction open meanwhile.
Waiting is bounded: a holder that never lets go raises NamedLockTimeout instead of hanging.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from sendit_ops.core.errors import TransientError
from sendit_ops.core.ledger.database import engine_for

POLL_SECONDS = 0.1


class NamedLockTimeout(TransientError):
    """Another process held the lock for longer than the wait allowed."""


def _key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name`` (sendit's own range of keys)."""
    return int.from_bytes(
        hashlib.sha256(b"sendit:" + name.encode()).digest()[:8], "big", signed=True
    )


@contextmanager
def named_lock(url: str, name: str, wait: float = 120.0) -> Iterator[None]:
    """Hold the lock ``name`` of the ledger at ``url`` (waiting up to ``wait`` seconds)."""
    parsed = make_url(url)
    deadline = time.monotonic() + wait
    if parsed.get_backend_name() == "sqlite":
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        path = Path(f"{parsed.database}.{safe}.lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise NamedLockTimeout(
                            f"lock '{name}' still held by another process after {wait:.0f} s"
                        ) from None
                    time.sleep(POLL_SECONDS)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock
        return
    key = _key(name)
    with engine_for(url).connect() as conn:
        while not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar():
            conn.rollback()
            if time.monotonic() >= deadline:
                raise NamedLockTimeout(
                    f"lock '{name}' still held by another process after {wait:.0f} s"
                )
            time.sleep(POLL_SECONDS)
        conn.commit()  # a session lock: no transaction stays open while it is held
        try:
            yield
        finally:
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
            conn.commit()
