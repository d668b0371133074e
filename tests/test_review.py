"""Images held back by the pixel stage: recorded, shown to a reviewer, released or rejected
through the DAG's run parameters (a real dag.test() run each time: the real discover)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pydicom
import pytest
from conftest import PHI_STRINGS

from sendit_ops.delivery import outbox as box
from sendit_ops.sample_data import write_burned_in_ultrasound

pytestmark = pytest.mark.live


@pytest.fixture
def held_folder(monkeypatch, tmp_path, airflow_db):
    """An input folder with one ultrasound study, pixel cleaning in "recipe" mode: the text
    inside the ultrasound region is not masked, so verification holds that image."""
    inbox = tmp_path / "in"
    write_burned_in_ultrasound(inbox / "ACC10009", frames=3)
    settings = {
        "work_root": str(tmp_path / "work"),
        "outbox": str(tmp_path / "outbox"),
        "pixel_cleaning": "recipe",
    }
    monkeypatch.setenv(
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS", json.dumps([{"path": str(inbox), "name": "rev"}])
    )
    monkeypatch.setenv("AIRFLOW_VAR_SENDIT_SETTINGS", json.dumps(settings))
    return tmp_path


def _run(conf: dict):
    from sendit_ops.airflow.dag_factory import build_all_dags

    base = {"batches": [], "reprocess": False, "dry_run": False, "release": [], "reject": []}
    return build_all_dags()["sendit_rev"].test(run_conf={**base, **conf})


def _record(root: Path):
    from sendit_ops.core.ledger import Ledger

    (record,) = Ledger(root / "work", "sendit_rev").all()
    return record


def _delivered(root: Path) -> list[pydicom.Dataset]:
    out = []
    for archive in (root / "outbox").rglob("*.tar.gz"):
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.isfile():
                    out.append(pydicom.dcmread(tar.extractfile(member)))
    return out


def test_held_study_is_recorded_then_released_as_shown(held_folder, capfd):
    root = held_folder
    run = _run({})
    record = _record(root)
    assert record.state == "HELD", record.reasons
    assert "held for review" in record.reasons[-1]
    held = record.outputs.held  # both images: the id line inside the region stays
    assert len(held) == 2 and "text remains after masking" in held[0]["held_reason"]
    assert held[0]["boxes"] and held[0]["thumbnail"].endswith(".png")
    thumb = Path(root / "work" / "sendit_rev" / "batches" / record.key / "review")
    assert (thumb / held[0]["thumbnail"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((root / "outbox").rglob("*.tar.gz"))  # nothing left the machine
    assert str(run.state).endswith("success")  # held is not an error: it waits for a person
    summary = json.loads(next((root / "work").rglob("summary.json")).read_text())
    assert summary["images_held"] == 2 and summary["states"] == {"HELD": 1}

    # the dashboard lists it with its thumbnail's address, no text read, no source path
    from sendit_ops.airflow.dashboard import held_images

    listed = held_images(record)
    assert listed[0]["thumbnail"] == f"review/{record.key}/{held[0]['thumbnail']}"
    assert "source" not in json.dumps(listed)

    # an unchanged held batch is not processed again by a plain run
    _run({})
    assert _record(root).state == "HELD"
    assert len(_record(root).history) == len(record.history)

    # the reviewer releases it: delivered with the held image masked as the thumbnail showed
    _run({"release": [record.key]})
    record = _record(root)
    assert record.state == "DONE", record.reasons
    assert record.outputs.review["decision"] == "release"
    assert record.metrics["images_released"] == 2
    images = _delivered(root)
    assert len(images) == 2
    for ds in images:
        assert ds.BurnedInAnnotation == "NO"
        codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
        assert "113101" in codes
    text = capfd.readouterr()
    for phi in PHI_STRINGS:
        assert phi not in text.out + text.err, phi


def test_rejected_held_images_stay_behind(held_folder):
    root = held_folder
    _run({})
    key = _record(root).key
    _run({"reject": ["ACC10009"]})  # folder names work as well as batch ids
    record = _record(root)
    assert record.key == key and record.outputs.review["decision"] == "reject"
    assert record.state == "EMPTY", record.reasons  # every image of it was rejected
    assert record.reasons[-1] == "every image was rejected by a reviewer (burned-in text)"
    assert not _delivered(root)
    assert not box.table_path(root / "outbox", "DEMO", "dicom").exists()


def test_a_decision_on_what_is_not_held_fails_discover_and_touches_nothing(held_folder, capfd):
    """Issue 25: a mistyped id, one batch both released and rejected, a release of a batch
    that is no longer HELD: the run's discover fails at once with the reason; the batch is
    not processed again."""
    root = held_folder
    _run({})
    held = _record(root)
    assert held.state == "HELD", held.reasons
    capfd.readouterr()
    refusals = [
        ({"release": ["b0123456789abcde"]}, "no batch of input folder 'rev' has this id"),
        ({"release": [held.key], "reject": ["ACC10009"]}, "named in both release and reject"),
    ]
    for conf, reason in refusals:
        run = _run(conf)
        assert str(run.state).endswith("failed"), conf
        assert reason in "".join(capfd.readouterr()), conf
        after = _record(root)
        assert (after.state, after.history, after.outputs.review) == ("HELD", held.history, {})
    _run({"reject": ["ACC10009"]})
    rejected = _record(root)
    assert rejected.state == "EMPTY", rejected.reasons
    capfd.readouterr()
    run = _run({"release": [held.key]})  # no longer HELD: refused, not reprocessed
    assert str(run.state).endswith("failed")
    assert f"release {held.key}: the batch is EMPTY, not HELD" in "".join(capfd.readouterr())
    assert _record(root).history == rejected.history
    assert not _delivered(root)
