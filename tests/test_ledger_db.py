"""The ledger's database and run lock, on SQLite (the default) and on PostgreSQL.

PostgreSQL: the machine's server (127.0.0.1:5432, user postgres); a database named for this
test session is created and dropped afterwards (skipped when no server answers).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from conftest import ROOT
from scratch_postgres import database_url, scratch_database

from sendit_ops.core.atomic_files import write_json
from sendit_ops.core.ledger import Ledger, RunLocked, rows
from sendit_ops.core.ledger import run_lock as run_lock_mod
from sendit_ops.core.lifecycle import State
from sendit_ops.core.records import BatchRecord
from sendit_ops.sample_data import PATIENTS, write_study

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL database for this session, dropped afterwards."""
    name = f"sendit_test_{os.getpid()}_{secrets.token_hex(4)}"
    with scratch_database(name):
        yield database_url(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request) -> str | None:
    """None: SQLite in the work root (the default); else the session's PostgreSQL URL."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_url")


def _record(key: str, state: str = State.QUEUE, **outputs) -> BatchRecord:
    record = BatchRecord(key=key, dag_id="sendit_t", source_path=f"/in/{key}", fingerprint="f1")
    record.outputs = replace(record.outputs, **outputs)
    record.set_state(state)
    return record


# ---- records and transactions ---------------------------------------------------------


def test_records_round_trip_and_state_changes_are_transactions(tmp_path, ledger_url):
    ledger = Ledger(tmp_path / "work", "sendit_t", ledger_url)
    a, b = _record("ka"), _record("kb", State.DONE)
    ledger.save_many([a, b])
    assert ledger.get("ka") == a and ledger.load("kb") == b
    assert ledger.get("nope") is None
    assert [r.key for r in ledger.all()] == ["ka", "kb"]
    assert ledger.delivered(["ka", "kb", "kc"]) == {"kb": "f1"}
    assert ledger.completion_times(["/in/ka", "/in/zz"]) == {"/in/ka": 0.0}

    # a failure inside a transaction leaves every record as it was
    with pytest.raises(RuntimeError), ledger.transaction():
        a.set_state(State.ERROR, "x")
        ledger.save(a)
        b.set_state(State.QUEUE)
        ledger.save(b)
        raise RuntimeError("crash in the middle")
    assert ledger.load("ka").state == State.QUEUE and ledger.load("kb").state == State.DONE

    # another ledger (DAG) in the same database does not see these records
    assert Ledger(tmp_path / "work", "sendit_other", ledger_url).all() == []
    if ledger_url is None:
        db = tmp_path / "work" / "ledger.sqlite"
        assert db.stat().st_mode & 0o777 == 0o600


def test_a_reader_never_sees_half_a_transaction(tmp_path, ledger_url):
    ledger = Ledger(tmp_path / "work", "sendit_t", ledger_url)
    ledger.save_many([_record("ka"), _record("kb")])
    inside, release = threading.Event(), threading.Event()

    def writer() -> None:
        with ledger.transaction():
            ledger.save(_record("ka", State.DONE))
            inside.set()
            release.wait(10)
            ledger.save(_record("kb", State.DONE))

    thread = threading.Thread(target=writer)
    thread.start()
    assert inside.wait(10)
    reader = Ledger(tmp_path / "work", "sendit_t", ledger_url)  # another connection
    assert {r.state for r in reader.all()} == {State.QUEUE}
    release.set()
    thread.join(10)
    assert {r.state for r in reader.all()} == {State.DONE}


def test_record_json_ledgers_are_imported_once(tmp_path, ledger_url, caplog, monkeypatch):
    work = tmp_path / "work"
    old = Ledger(work, "sendit_t", ledger_url)
    done = _record("kdone", State.DONE, sha256="s" * 64, object_name="Collection/x.tar.gz")
    done.outputs = replace(done.outputs, item_suid="ITEM", delivered_to="outbox")
    queued = _record("kq", State.QUEUE, previous_sha256="p" * 64)  # a changed study, re-queued
    for record in (done, queued):
        write_json(old.record_path(record.key), asdict(record))
    old.record_path("kbad").parent.mkdir(parents=True)
    old.record_path("kbad").write_text("{ cut short")

    # an import that fails half way leaves nothing behind, and is redone whole
    real_row = rows.record_row
    calls = []

    def failing_row(ledger_id, record):
        calls.append(record.key)
        if len(calls) == 2:
            raise OSError("disk gone")
        return real_row(ledger_id, record)

    monkeypatch.setattr(rows, "record_row", failing_row)
    with pytest.raises(OSError):
        Ledger(work, "sendit_t", ledger_url).all()
    monkeypatch.setattr(rows, "record_row", real_row)

    with caplog.at_level("WARNING", logger="sendit"):
        ledger = Ledger(work, "sendit_t", ledger_url)
        assert [r.key for r in ledger.all()] == ["kdone", "kq"]
    assert "batch kbad: its record" in caplog.text
    assert ledger.load("kdone") == done
    assert ledger.delivery("kdone").sha256 == "s" * 64
    assert ledger.delivery("kdone").row_key == "ITEM"
    assert ledger.delivery("kq").own_versions() == ["p" * 64]

    # later changes are not overwritten by a second import (another process, a new Ledger)
    changed = ledger.load("kq")
    changed.set_state(State.ERROR, "deliver: x")
    ledger.save(changed)
    again = Ledger(work, "sendit_t", ledger_url)
    assert again.load("kq").state == State.ERROR
    assert len(again.all()) == 2


def test_attempts_are_kept_until_a_delivery_is_confirmed(tmp_path, ledger_url):
    ledger = Ledger(tmp_path / "work", "sendit_t", ledger_url)
    first = _record("k", sha256="a" * 64, object_name="o", item_suid="I")
    assert ledger.note_attempts([first])["k"].own_versions() == ["a" * 64]
    ledger.confirm_delivery(first, "/outbox")
    second = _record("k", sha256="b" * 64, object_name="o", item_suid="I")
    ledger.note_attempts([second])  # written, then the process died before the row
    third = _record("k", sha256="c" * 64, object_name="o", item_suid="I")
    assert ledger.note_attempts([third])["k"].own_versions() == ["a" * 64, "b" * 64, "c" * 64]
    ledger.confirm_delivery(third, "/outbox")
    d = ledger.delivery("k")
    assert (d.sha256, d.object_name, d.row_key, d.location) == ("c" * 64, "o", "I", "/outbox")
    assert d.own_versions() == ["c" * 64]


# ---- the run lock ----------------------------------------------------------------------


def test_lock_is_kept_by_its_run_and_refused_to_another(tmp_path, ledger_url):
    ledger = Ledger(tmp_path / "work", "sendit_t", ledger_url)
    lock = ledger.run_lock(tmp_path / "in")
    lock.acquire("run-a", wait=0)
    lock.acquire("run-a", wait=0)  # another task of the same run
    other = ledger.run_lock(tmp_path / "in")
    started = time.monotonic()
    with pytest.raises(RunLocked) as refused:
        other.acquire("run-b", wait=1.0)
    assert time.monotonic() - started >= 1.0  # waited the bounded time
    message = str(refused.value)
    assert message.startswith("another run (run-a) of this input folder is in progress since ")
    assert "this run stops" in message
    # another input folder, or another work root, is not locked by it
    ledger.run_lock(tmp_path / "in2").acquire("run-b", wait=0)
    Ledger(tmp_path / "work2", "sendit_t", ledger_url).run_lock(tmp_path / "in").acquire(
        "run-b", wait=0
    )
    assert not other.release("run-b")  # never releases another run's lock
    assert lock.release("run-a")
    other.acquire("run-b", wait=0)
    assert other.holder().run_id == "run-b"


def test_a_waiting_run_starts_when_the_holder_releases(tmp_path, ledger_url):
    ledger = Ledger(tmp_path / "work", "sendit_t", ledger_url)
    ledger.run_lock(tmp_path / "in").acquire("run-a", wait=0)
    timer = threading.Timer(1.5, lambda: ledger.run_lock(tmp_path / "in").release("run-a"))
    timer.start()
    ledger.run_lock(tmp_path / "in").acquire("run-b", wait=30)
    timer.join()
    assert ledger.run_lock(tmp_path / "in").holder().run_id == "run-b"


def test_a_silent_holder_is_taken_over_once(tmp_path, ledger_url, monkeypatch):
    """A holder on another machine that stopped its heartbeat: taken over by exactly one of
    two runs trying at the same moment (compare-and-swap in a locking transaction)."""
    from sqlalchemy import update

    from sendit_ops.core.ledger import run_locks

    ledger = Ledger(tmp_path / "work", "sendit_t", ledger_url)
    lock = ledger.run_lock(tmp_path / "in")
    lock.acquire("run-dead", wait=0)
    with ledger.engine.begin() as conn:  # working on another host, alive 10 s ago
        conn.execute(
            update(run_locks)
            .where(run_locks.c.scope == lock.scope)
            .values(workers=json.dumps([["elsewhere", 1, "", time.time() - 10]]))
        )
    with pytest.raises(RunLocked):
        ledger.run_lock(tmp_path / "in").acquire("run-b", wait=0)

    monkeypatch.setattr(run_lock_mod, "ACTIVE_STALE_SECONDS", 5.0)
    winners, barrier = [], threading.Barrier(2)

    def contend(run_id: str) -> None:
        barrier.wait()
        if ledger.run_lock(tmp_path / "in").try_acquire(run_id) is None:
            winners.append(run_id)

    threads = [threading.Thread(target=contend, args=(r,)) for r in ("run-b", "run-c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(winners) == 1
    assert lock.holder().run_id == winners[0]


def test_heartbeat_keeps_a_long_task_alive_and_idle_between_tasks(
    tmp_path, ledger_url, monkeypatch
):
    monkeypatch.setattr(run_lock_mod, "HEARTBEAT_SECONDS", 0.2)
    ledger = Ledger(tmp_path / "work", "sendit_t", ledger_url)
    lock = ledger.run_lock(tmp_path / "in")
    with lock.held("run-a"):
        first = lock.holder()
        assert first.active and first.pid == os.getpid()
        time.sleep(1.0)
        assert lock.holder().heartbeat_at > first.heartbeat_at
    idle = lock.holder()
    assert idle.run_id == "run-a" and not idle.active  # between tasks: kept, not working
    with lock.held("run-a", release=True):
        pass
    assert lock.holder() is None


# ---- whole runs in separate processes --------------------------------------------------

RUNNER = textwrap.dedent(
    """
    import json, os, sys, time
    from types import SimpleNamespace
    from sendit_ops.airflow import tasks as steps
    from sendit_ops.airflow.task_runtime import pipeline
    from sendit_ops.core.settings import InputFolder

    input_dir, run_id, hold, signal_file = sys.argv[1:5]
    folder = InputFolder(input_dir, "lockt")
    ctx = {"dag_run": SimpleNamespace(run_id=run_id, run_type="manual"), "params": {}}
    try:
        chunks = steps.discover(folder, ctx)
    except Exception as exc:
        print("STOPPED", type(exc).__name__, exc, flush=True)
        try:
            steps.report(folder, None, ctx)
        except Exception:
            pass
        sys.exit(3)
    pipe = pipeline(folder, ctx)
    with pipe.ledger.run_lock(input_dir).held(run_id, wait=0):  # a task at work
        open(signal_file, "w").write(run_id)
        until = time.monotonic() + 600
        while os.path.exists(hold) and time.monotonic() < until:  # the test says when
            time.sleep(0.2)
    for chunk in chunks:
        steps.run_step(folder, "process", chunk, ctx)
    summary = steps.report(folder, chunks, ctx)
    print("SUMMARY", json.dumps(summary["states"]), summary["batches"], flush=True)
    """
)


def _start_run(tmp_path, ledger_url, run_id: str, wait: float, hold: bool = False):
    """A whole run (discover, process, report) in a process; with ``hold`` its task works
    until the test removes the file ``<run_id>.hold``."""
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    settings = {
        "work_root": str(tmp_path / "work"),
        "outbox": str(tmp_path / "outbox"),
        "fail_run_on_batch_error": False,
        "chunk_size": 10,
    }
    if ledger_url:
        settings["ledger_url"] = ledger_url
    env = {
        **os.environ,
        "AIRFLOW_VAR_SENDIT_SETTINGS": json.dumps(settings),
        "SENDIT_RUN_LOCK_WAIT_SECONDS": str(wait),
        "PYTHONPATH": str(ROOT),
    }
    holding = tmp_path / f"{run_id}.hold"
    if hold:
        holding.touch()
    return subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(tmp_path / "in"),
            run_id,
            str(holding),
            str(tmp_path / f"{run_id}.locked"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the run did not take the lock"
        time.sleep(0.2)


def _inbox(tmp_path: Path) -> None:
    for i, acc in enumerate(("ACC1", "ACC2", "ACC3")):
        write_study(tmp_path / "in" / acc, PATIENTS[i], acc, f"2024011{i + 5}", "CT", 1, 2)


def _objects(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "outbox").rglob("*.tar.gz"))


def test_two_runs_at_once_one_waits_the_other_refuses(tmp_path, ledger_url):
    """Runs of the same input folder in separate processes: a second run waits for the
    first, then finds nothing left to do; a third that may not wait long stops with the
    message and changes nothing. No batch fails."""
    _inbox(tmp_path)
    first = _start_run(tmp_path, ledger_url, "run-a", wait=0, hold=True)
    _wait_for(tmp_path / "run-a.locked", first)
    waiting = _start_run(tmp_path, ledger_url, "run-b", wait=300)
    refused = _start_run(tmp_path, ledger_url, "run-c", wait=1)
    out_c, _ = refused.communicate(timeout=300)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(waiting.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not any("this run waits" in line for line in lines):
        assert waiting.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
        time.sleep(0.2)
    (tmp_path / "run-a.hold").unlink()  # run-a's task ends, its run goes on
    out_a, _ = first.communicate(timeout=300)
    waiting.wait(timeout=300)
    reader.join(30)
    out_b = "".join(lines)
    assert refused.returncode == 3, out_c[-3000:]
    assert "another run (run-a) of this input folder is in progress since" in out_c
    assert "this run stops" in out_c
    assert first.returncode == 0 and 'SUMMARY {"DONE": 3} 3' in out_a, out_a[-3000:]
    assert waiting.returncode == 0 and "SUMMARY {} 0" in out_b, out_b[-3000:]
    assert "this run waits" in out_b
    ledger = Ledger(tmp_path / "work", "sendit_lockt", ledger_url)
    assert {r.state for r in ledger.all()} == {State.DONE}
    assert {r.run_id for r in ledger.all()} == {"run-a"}
    assert len(_objects(tmp_path)) == 3
    assert ledger.run_lock(tmp_path / "in").holder() is None  # released by run-b's report


def test_a_run_killed_while_holding_the_lock_is_taken_over(tmp_path, ledger_url):
    _inbox(tmp_path)
    victim = _start_run(tmp_path, ledger_url, "run-killed", wait=0, hold=True)
    _wait_for(tmp_path / "run-killed.locked", victim)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=60)
    ledger = Ledger(tmp_path / "work", "sendit_lockt", ledger_url)
    assert ledger.run_lock(tmp_path / "in").holder().run_id == "run-killed"
    assert {r.state for r in ledger.all()} == {State.QUEUE}

    rerun = _start_run(tmp_path, ledger_url, "run-next", wait=10)
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out[-3000:]
    assert "took over the lock of this input folder from run run-killed" in out
    assert 'SUMMARY {"DONE": 3} 3' in out
    assert len(_objects(tmp_path)) == 3
    for phi in ("ACC1", "ACC2", "ACC3", str(tmp_path / "in")):
        assert phi not in out


def test_sendit_run_stops_with_the_message_while_another_run_holds_the_lock(tmp_path, ledger_url):
    """The CLI (dag.test in-process) goes through the same lock: refused with the message
    and nothing touched while another run holds it; processed once it is released."""
    _inbox(tmp_path)
    work = tmp_path / "work"
    ledger = Ledger(work, "sendit_in", ledger_url)
    ledger.run_lock(tmp_path / "in").acquire("run-elsewhere", wait=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(SENDIT_HOME=str(tmp_path / "home"), SENDIT_RUN_LOCK_WAIT_SECONDS="2")
    args = [str(ROOT / ".venv" / "bin" / "sendit"), "run", "--input", str(tmp_path / "in")]
    args += ["--outbox", str(tmp_path / "outbox"), "--work-root", str(work)]
    if ledger_url:
        args += ["--set", f"ledger_url={ledger_url}"]
    refused = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    said = refused.stdout + refused.stderr
    assert "another run (run-elsewhere) of this input folder is in progress since" in said
    assert refused.returncode == 4, said[-2000:]  # the run stopped: not a success
    assert ledger.all() == [] and _objects(tmp_path) == []
    assert ledger.run_lock(tmp_path / "in").holder().run_id == "run-elsewhere"

    ledger.run_lock(tmp_path / "in").release("run-elsewhere")
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert "3 batch(es): DONE 3" in done.stdout, (done.stdout + done.stderr)[-3000:]
    assert len(_objects(tmp_path)) == 3
    assert ledger.run_lock(tmp_path / "in").holder() is None


def test_a_run_is_gone_when_every_task_process_it_lists_is_gone(tmp_path, ledger_url):
    """Mapped tasks of one run work in several processes at once: the run is alive while
    one of them is; each task process leaves the list when its task ends."""
    import socket

    from sqlalchemy import update

    from sendit_ops.core.ledger import run_locks

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    ledger = Ledger(tmp_path / "work", "sendit_t", ledger_url)
    lock = ledger.run_lock(tmp_path / "in")
    with lock.held("run-a"):  # a task of the run at work: listed once per process
        assert len(lock.holder().workers) == 1 and lock.holder().active
    assert lock.holder().workers == () and not lock.holder().active  # idle between tasks

    def working(*pids: int) -> None:
        now = time.time()
        workers = [[socket.gethostname(), pid, "", now] for pid in pids]
        with ledger.engine.begin() as conn:
            conn.execute(
                update(run_locks)
                .where(run_locks.c.scope == lock.scope)
                .values(workers=json.dumps(workers), active=1, heartbeat_at=now)
            )

    working(ended.pid, os.getpid())  # one task process ended, another still works
    assert lock.try_acquire("run-b").run_id == "run-a"
    working(ended.pid)  # the only one ended (kill -9): taken over at once
    assert lock.try_acquire("run-b") is None
    holder = lock.holder()
    assert holder.run_id == "run-b" and [w[1] for w in holder.workers] == [os.getpid()]


@pytest.mark.parametrize("in_process", [True, False])
def test_a_sendit_run_killed_between_two_tasks_frees_the_lock_at_once(
    tmp_path, ledger_url, in_process
):
    """`sendit run` executes every task of its run in its own process: between two tasks it
    stays listed on the lock, so killing it there frees the folder for the next run at once.
    A run of a scheduler (tasks in processes of their own) is left alone between tasks."""
    code = textwrap.dedent(
        """
        import os, sys, time
        from sendit_ops.core.ledger import Ledger
        in_process = sys.argv[4] == "1"
        url = sys.argv[3] or None
        lock = Ledger(sys.argv[1], "sendit_in", url).run_lock(sys.argv[2], in_process)
        with lock.held("run-a"):
            pass  # a task worked and ended: the run goes on to its next task
        print("between tasks", flush=True)
        time.sleep(120)
        """
    )
    work, inbox = tmp_path / "work", tmp_path / "in"
    inbox.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(work), str(inbox), ledger_url or "", str(int(in_process))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "between tasks"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        lock = Ledger(work, "sendit_in", ledger_url).run_lock(inbox)
        if in_process:
            lock.acquire("run-b", wait=0)
            assert lock.holder().run_id == "run-b"
        else:
            with pytest.raises(RunLocked):
                lock.acquire("run-b", wait=0)
    finally:
        proc.kill()
