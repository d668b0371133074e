"""Schema migrations of the ledger: a ledger written by the previous release (sendit 0.1.0,
before migrations) is upgraded in place on SQLite and on PostgreSQL, its records intact and
the new columns filled from the stored JSON; a ledger of a newer sendit is refused.

The fixtures were written by the 0.1.0 code itself (tests/fixtures/make_ledger_fixture.py
says how): an SQLite file, and a pg_dump of the same records in PostgreSQL.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from sqlalchemy import create_engine, inspect, text
from test_ledger_db import postgres_url  # noqa: F401  # the session's PostgreSQL database

from sendit_ops.core.ledger import (
    HEAD_REVISION,
    Ledger,
    LedgerTooNew,
    dispose_engines,
    engine_for,
)
from sendit_ops.core.ledger.migrate import current_revision, known_revisions
from sendit_ops.core.ledger.schema import VERSION_TABLE, metadata
from sendit_ops.core.lifecycle import State

pytestmark = pytest.mark.emulator

FIXTURES = Path(__file__).parent / "fixtures"
WORK_ROOT, DAG = "/srv/sendit/work", "sendit_input"  # as the fixture's records say


@pytest.fixture(params=["sqlite", "postgresql"])
def old_ledger_url(request, tmp_path) -> str:
    """A ledger as sendit 0.1.0 left it (a copy: the fixture stays as it is)."""
    if request.param == "sqlite":
        path = tmp_path / "ledger.sqlite"
        shutil.copy(FIXTURES / "ledger-0.1.0.sqlite", path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    dispose_engines()
    engine = create_engine(url)
    with engine.begin() as conn:  # every table a migration may have made: start as 0.1.0 left it
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    # psql's meta-commands (pg_dump 15.14+ writes \restrict lines) are not SQL
    lines = (FIXTURES / "ledger-0.1.0.postgresql.sql").read_text().splitlines()
    dump = "\n".join(line for line in lines if not line.startswith("\\"))
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute(dump)
            cur.execute("SET search_path TO public")
        raw.commit()
    finally:
        raw.close()
    engine.dispose()
    return url


def test_a_ledger_of_the_previous_release_is_upgraded_in_place(old_ledger_url, caplog):
    engine = create_engine(old_ledger_url)
    with engine.connect() as conn:
        assert current_revision(conn) is None  # 0.1.0 had no migrations
        assert "pseudonym_source" not in {
            c["name"] for c in inspect(conn).get_columns("sendit_batches")
        }
    engine.dispose()

    with caplog.at_level(logging.WARNING, logger="sendit"):
        ledger = Ledger(WORK_ROOT, DAG, old_ledger_url)
        records = ledger.all()
    assert f"schema upgraded from revision 0001_baseline to {HEAD_REVISION}" in caplog.text
    assert [r.key for r in records] == [f"b00000000000000{i}" for i in range(1, 7)]
    assert [r.state for r in records] == [State.DONE] * 4 + [State.ERROR, State.QUEUE]
    assert ledger.delivery("b000000000000001").sha256 == "a" * 64
    assert ledger.delivery("b000000000000006").own_versions() == ["d" * 64]

    # the new columns hold what the JSON said; the provider-switch query reads them
    with ledger.engine.connect() as conn:
        found = dict(conn.execute(text("SELECT key, pseudonym_source FROM sendit_batches")).all())
        successor = conn.execute(
            text("SELECT superseded_by FROM sendit_batches WHERE key = 'b000000000000003'")
        ).scalar()
        assert current_revision(conn) == HEAD_REVISION
    assert found["b000000000000002"] == "dasher:https://dasher.example/api"
    assert found["b000000000000004"] == "" and successor == "b000000000000001"
    other = ledger.delivered_with_other_pseudonyms("local:3f2a9c")
    assert [r.key for r in other] == ["b000000000000002"]  # not 3: superseded; not 4: unknown
    assert [r.key for r in ledger.delivered_with_other_pseudonyms("dasher:x")] == [
        "b000000000000001",
        "b000000000000002",
    ]

    # the records go on as before: a state change, a new record
    record = ledger.load("b000000000000006")
    record.set_state(State.DONE)
    ledger.save(record)
    assert Ledger(WORK_ROOT, DAG, old_ledger_url).load("b000000000000006").state == State.DONE
    dispose_engines()


def test_migrations_build_exactly_the_schema_the_code_reads(tmp_path, old_ledger_url):
    """A new ledger (built by the migrations from nothing) and an upgraded 0.1.0 ledger
    both match schema.py and the query/retrieve tables of pacs/request_ledger.py: Alembic's
    comparison finds no difference."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import MetaData

    from sendit_ops.pacs import request_ledger

    every = MetaData()
    for table in (*metadata.tables.values(), *request_ledger.metadata.tables.values()):
        table.to_metadata(every)

    assert HEAD_REVISION in known_revisions()
    for url in (f"sqlite:///{tmp_path / 'new.sqlite'}", old_ledger_url):
        engine = engine_for(url)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            diff = [d for d in compare_metadata(context, every) if "server_default" not in str(d)]
        assert diff == [], url
    dispose_engines()


def test_a_ledger_of_a_newer_sendit_is_refused_with_one_line(tmp_path):
    path = tmp_path / "ledger.sqlite"
    shutil.copy(FIXTURES / "ledger-0.1.0.sqlite", path)
    url = f"sqlite:///{path}"
    Ledger(WORK_ROOT, DAG, url).all()
    dispose_engines()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '0099_from_the_future'"))
    engine.dispose()
    with pytest.raises(LedgerTooNew) as err:
        Ledger(WORK_ROOT, DAG, url).all()
    message = str(err.value)
    assert "\n" not in message and "'0099_from_the_future'" in message and str(path) in message
    dispose_engines()


def test_sendit_db_upgrade_upgrades_and_says_so(tmp_path):
    path = tmp_path / "ledger.sqlite"
    shutil.copy(FIXTURES / "ledger-0.1.0.sqlite", path)
    cmd = [
        sys.executable,
        "-m",
        "sendit_ops.airflow.cli",
        "db",
        "upgrade",
        "--ledger-url",
        f"sqlite:///{path}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"from 0001_baseline to {HEAD_REVISION}" in out.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert again.returncode == 0 and f"already at {HEAD_REVISION}" in again.stdout
