"""The run summary's numbers: a batch's processing time is its steps' own times (not the
wall span of a staged run, which holds the waits between tasks), the run's wall time and
throughput are reported apart, and each step's chunk (Airflow map index) is kept."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from sendit_ops.core.lifecycle import State
from sendit_ops.core.records import BatchRecord
from sendit_ops.core.report import batch_metrics, format_summary, summarize

pytestmark = pytest.mark.unit


def staged(key: str, offset: float, mb: float) -> BatchRecord:
    """A batch of a staged run: each step short, each next task starting ~20 s later."""
    record = BatchRecord(key, "sendit_x", "/in/x", state=State.DONE)
    record.metrics = {"bytes_in": int(mb * 1e6), "images_accepted": 3}
    t = 1_700_000_000.0 + offset
    for step, took in [("filter", 0.5), ("pseudonymize", 0.2), ("anonymize", 0.3)]:
        record.times[step] = [t, t + took]
        t += 20.0
    record.times["package"] = [t, t + 0.4]
    record.times["deliver"] = [t + 20, t + 20.1]
    return record


def test_a_batch_reports_its_own_processing_time_not_its_span() -> None:
    line = batch_metrics(staged("b1", 0, 3.0))
    assert line["seconds"] == pytest.approx(1.5)  # 0.5 + 0.2 + 0.3 + 0.4 + 0.1
    assert line["span_seconds"] == pytest.approx(80.1)
    assert line["step_seconds"] == {
        "filter": 0.5,
        "pseudonymize": 0.2,
        "anonymize": 0.3,
        "package": 0.4,
        "deliver": 0.1,
    }
    assert line["mb_per_min"] == pytest.approx(3.0 / (1.5 / 60), rel=1e-3)


def test_the_run_reports_wall_time_and_throughput_apart_from_batch_time() -> None:
    records = [staged("b1", 0, 3.0), staged("b2", 1, 3.0)]
    start = 1_700_000_000.0 - 5
    summary = summarize(records, "manual__x", wall=(start, start + 120))
    assert summary["batch_seconds"] == pytest.approx(3.0)
    assert summary["wall_seconds"] == pytest.approx(120.0)
    assert summary["mb_per_min"] == pytest.approx(6.0 / 2)  # 6 MB in 2 minutes of wall time
    assert summary["started"].startswith("2023-11-14T22:13:15")
    text = format_summary(summary)
    assert "run wall time 120.0 s, 3.0 MB/min; batch processing 3.00 s in all" in text
    assert "    1.50 s processing" in text
    # without the run's own times, the wall time is the batches' span
    assert summarize(records, "r")["wall_seconds"] == pytest.approx(81.1)


def test_each_step_keeps_the_chunk_that_ran_it() -> None:
    record = BatchRecord("b1", "sendit_x", "/in/x")
    record.start("filter", 3)
    record.finish("filter")
    record.start("deliver")  # an unmapped task: no chunk for that step
    record.note_chunk("anonymize", 0)
    assert record.map_index == {"filter": 3, "anonymize": 0}
    record.start("anonymize")  # run again outside a mapped task: the old chunk is forgotten
    assert record.map_index == {"filter": 3}
    again = BatchRecord(**json.loads(json.dumps(asdict(record))))  # the ledger's JSON
    assert again.map_index == {"filter": 3}
    assert batch_metrics(again)["map_index"] == {"filter": 3}
    old = asdict(record)
    del old["map_index"]  # a record written before the field existed
    assert BatchRecord(**old).map_index == {}
