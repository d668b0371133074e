"""One run at a time per input folder and work root: a lock row in the ledger's database.

Apart from the records because it is its own protocol (heartbeats, takeover of a dead
holder by compare-and-swap) and its own failure cases; the records know nothing of it.
Whether a holder on this host is still alive is read from ``/proc`` (pid and start time,
so a reused pid is not mistaken for the holder).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Row, Select, select, update

from sendit_ops.core.errors import RunNeedsAttention
from sendit_ops.core.ledger.database import read, write
from sendit_ops.core.ledger.schema import run_locks

log = logging.getLogger("sendit")

HEARTBEAT_SECONDS = 15.0  # a working task refreshes its run's lock this often
ACTIVE_STALE_SECONDS = 120.0  # a working holder silent this long is gone (machine, process)
IDLE_STALE_SECONDS = 30 * 60.0  # between tasks (queued for a worker): gone after this long
WAIT_SECONDS = float(os.environ.get("SENDIT_RUN_LOCK_WAIT_SECONDS", "120"))
POLL_SECONDS = 1.0

Worker = tuple[str, int, str, float]  # host, pid, pid start time, last beat


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
    workers: tuple[Worker, ...] = ()

    def since(self) -> str:
        """When the holder took the lock, for messages (UTC, seconds)."""
        return datetime.fromtimestamp(self.acquired_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


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
    time (NTP).

    ``in_process``: the whole run lives in this process (``sendit run``, ``dag.test``):
    it stays listed between tasks, so a kill -9 between two tasks frees the lock at once.
    """

    def __init__(
        self,
        engine: Engine,
        work_root: Path,
        input_folder: str | Path,
        dag_id: str,
        in_process: bool = False,
    ):
        self.engine = engine
        # the real paths: a folder named through a symlink is still the same folder
        where = f"{Path(work_root).resolve()}\0{Path(input_folder).resolve()}"
        self.scope = hashlib.sha256(where.encode(errors="surrogateescape")).hexdigest()
        self.dag_id = dag_id
        self.host = socket.gethostname()
        self.in_process = in_process
        self.lost = False

    def _me(self) -> dict[str, Any]:
        pid = os.getpid()
        return {"host": self.host, "pid": pid, "pid_started": _pid_started(pid)}

    def _query(self) -> Select[Any]:
        return select(run_locks).where(run_locks.c.scope == self.scope).with_for_update()

    def holder(self) -> LockHolder | None:
        """The current holder, or None when the lock is free."""
        with read(self.engine) as conn:
            row = conn.execute(select(run_locks).where(run_locks.c.scope == self.scope)).first()
        return None if row is None or not row.run_id else _holder(row)

    def _gone(self, worker: Worker, now: float) -> bool:
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

    def _workers(self, row: Row[Any] | None, now: float, add: bool) -> str:
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
        with write(self.engine) as conn:
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
                again = conn.execute(self._query()).first()
                return _holder(again) if again is not None and again.run_id else None
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
        with write(self.engine) as conn:
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
        if self.in_process:
            self._beat(run_id)
            return
        now = time.time()
        with write(self.engine) as conn:
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
        with write(self.engine) as conn:
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
        return bool(done.rowcount == 1)

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


def _holder(row: Row[Any]) -> LockHolder:
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
