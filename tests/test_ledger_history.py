"""A run's bookkeeping does not read the whole ledger history (discovery, metrics.tsv)."""

from __future__ import annotations

import csv

import pytest
from conftest import run_in_process

from sendit_ops.core.report import summarize, write_run_report
from sendit_ops.sample_data import PATIENTS, write_study

pytestmark = pytest.mark.emulator  # whole studies through the pipeline (or OCR on real images)


def _metrics(pipe) -> dict[str, dict[str, str]]:
    with (pipe.ledger.root / "metrics.tsv").open(newline="") as fh:
        return {row["batch_id"]: row for row in csv.DictReader(fh, delimiter="\t")}


def _report(pipe, records) -> None:
    write_run_report(pipe.ledger, summarize(records, pipe.run_id))


def _old_unreadable_record(pipe) -> None:
    """A record of a batch no longer in the input folder, which nothing may need to read
    (a damaged database row)."""
    from sqlalchemy import insert

    from sendit_ops.core.ledger import batches, source_hash

    with pipe.ledger.engine.begin() as conn:
        conn.execute(
            insert(batches).values(
                ledger_id=pipe.ledger.ledger_id,
                key="b0000000000000old",
                state="DONE",
                source_path="/gone",
                source_hash=source_hash("/gone"),
                data="{ not json",
            )
        )


def test_discovery_and_report_read_only_this_runs_batches(tmp_path, make_pipeline):
    inbox = tmp_path / "in"
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 2)
    first = make_pipeline(run_id="r1")
    done = run_in_process(first, inbox)
    _report(first, done.values())
    assert [r["status"] for r in _metrics(first).values()] == ["DONE"]

    _old_unreadable_record(first)
    write_study(inbox / "ACC2", PATIENTS[1], "ACC2", "20240116", "CT", 1, 2)
    second = make_pipeline(run_id="r2")
    records = run_in_process(second, inbox)
    assert set(records) == {"ACC2"}  # ACC1 was delivered with the same content: skipped
    assert records["ACC2"].state == "DONE"
    _report(second, records.values())
    lines = _metrics(second)
    assert set(lines) == {done["ACC1"].key, records["ACC2"].key}
    assert {r["status"] for r in lines.values()} == {"DONE"}


def test_metrics_tsv_is_rebuilt_from_the_records_when_missing_or_foreign(
    tmp_path, make_pipeline, caplog
):
    inbox = tmp_path / "in"
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 2)
    write_study(inbox / "ACC2", PATIENTS[1], "ACC2", "20240116", "CT", 1, 2)
    pipe = make_pipeline()
    records = run_in_process(pipe, inbox)
    keys = {r.key for r in records.values()}
    tsv = pipe.ledger.root / "metrics.tsv"
    _report(pipe, [records["ACC1"]])  # no file yet: every record is in it
    assert set(_metrics(pipe)) == keys
    tsv.write_text("some\tother\tcolumns\nx\ty\tz\n")
    _report(pipe, [records["ACC2"]])
    assert set(_metrics(pipe)) == keys
    assert tsv.read_text().splitlines()[0].startswith("batch_id\tstatus\t")

    # rebuilt again with a damaged record in the ledger: left out, named by its batch id
    _old_unreadable_record(pipe)
    tsv.unlink()
    with caplog.at_level("WARNING", logger="sendit"):
        _report(pipe, [records["ACC2"]])
    assert set(_metrics(pipe)) == keys
    assert "batch b0000000000000old: its record" in caplog.text


def test_dashboard_shows_the_database_as_it_is_now(tmp_path, make_pipeline, monkeypatch):
    """The dashboard queries the ledger's database (no cache of its own): a state change
    is on the next view, and a filter by state is a query."""
    import json

    from sendit_ops.airflow.dashboard import api_batches, batch_rows

    inbox = tmp_path / "in"
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 2)
    pipe = make_pipeline()
    key = run_in_process(pipe, inbox)["ACC1"].key
    folder = {"path": str(inbox), "name": "test", "settings": {"work_root": str(tmp_path / "work")}}
    monkeypatch.setenv("AIRFLOW_VAR_SENDIT_INPUT_FOLDERS", json.dumps([folder]))
    rows = batch_rows()
    assert [(r["batch_id"], r["state"], r["images"]) for r in rows] == [(key, "DONE", 2)]
    assert str(inbox) not in json.dumps(rows)

    record = pipe.ledger.load(key)
    record.set_state("ERROR", "deliver: a reason")
    pipe.ledger.save(record)
    assert [(r["state"], r["reasons"]) for r in batch_rows()] == [("ERROR", ["deliver: a reason"])]
    assert batch_rows(state="DONE") == []
    page = api_batches(state=None, dag_id=None, offset=0, limit=10)
    assert page["total"] == 1 and [r["state"] for r in page["batches"]] == ["ERROR"]
    assert api_batches(state="DONE", dag_id=None, offset=0, limit=10)["total"] == 0
