"""The streaming trigger's check for new batch folders (sendit_ops.core.arrivals)."""

from __future__ import annotations

import os
import time

import pytest
from conftest import SECRET

from sendit_ops.core.arrivals import pending_folders
from sendit_ops.core.discovery import find_batches
from sendit_ops.core.ledger import Ledger

pytestmark = pytest.mark.unit


def _folder(root, name):
    path = root / name
    path.mkdir(parents=True)
    (path / "1.dcm").write_bytes(b"not really dicom, the watcher only looks at folders")
    return path


def test_new_finished_folders_are_pending_until_a_run_takes_them(tmp_path, make_pipeline):
    inbox = tmp_path / "inbox"
    a, b = _folder(inbox, "ACC1"), _folder(inbox, "ACC2")
    _folder(inbox, "ACC3.tmp")  # still being written
    pipe = make_pipeline()
    work = pipe.settings.work_root
    assert pending_folders(inbox, Ledger(work, pipe.dag_id)) == {str(a), str(b)}

    pipe.register([f for f in find_batches(inbox, SECRET, "inbox") if f.path == str(a)])
    assert pending_folders(inbox, Ledger(work, pipe.dag_id)) == {str(b)}

    later = time.time() + 60  # files added to a taken folder: pending again
    os.utime(a, (later, later))
    assert pending_folders(inbox, Ledger(work, pipe.dag_id)) == {str(a), str(b)}


def test_a_poll_sees_the_ledger_database_as_it_is_now(tmp_path, make_pipeline):
    """No cache between polls: a record changed by a run is seen at the next poll."""
    inbox = tmp_path / "inbox"
    a = _folder(inbox, "ACC1")
    pipe = make_pipeline()
    work, dag = pipe.settings.work_root, pipe.dag_id
    assert not (tmp_path / "work" / "ledger.sqlite").exists()
    assert pending_folders(inbox, Ledger(work, dag)) == {str(a)}  # no database yet: nothing created
    assert not (tmp_path / "work" / "ledger.sqlite").exists()
    (key,) = pipe.register(find_batches(inbox, SECRET, "inbox"))
    assert pending_folders(inbox, Ledger(work, dag)) == set()

    record = pipe.ledger.load(key)
    record.finished_at -= 3600  # the folder changed after the record's completion time
    pipe.ledger.save(record)
    assert pending_folders(inbox, Ledger(work, dag)) == {str(a)}


def test_a_poll_looks_up_only_the_folders_in_the_input(tmp_path, make_pipeline, monkeypatch):
    """The ledger keeps every batch ever seen; a poll asks the database about the folders
    still in the input folder only, and looks at no batch folder of the work root."""
    inbox = tmp_path / "inbox"
    for i in range(30):
        _folder(inbox, f"OLD{i}")
    pipe = make_pipeline()
    work, dag = pipe.settings.work_root, pipe.dag_id
    pipe.register(find_batches(inbox, SECRET, "inbox"))
    for i in range(30):  # delivered and cleaned up by the site
        for f in (inbox / f"OLD{i}").iterdir():
            f.unlink()
        (inbox / f"OLD{i}").rmdir()
    new = _folder(inbox, "ACC1")
    assert pending_folders(inbox, Ledger(work, dag)) == {str(new)}

    asked, stats = [], []
    real_lookup, real_stat = Ledger.completion_times, os.stat
    monkeypatch.setattr(
        Ledger, "completion_times", lambda self, s: real_lookup(self, asked.extend(s) or s)
    )
    monkeypatch.setattr(
        os, "stat", lambda p, *a, **k: stats.append(str(p)) or real_stat(p, *a, **k)
    )
    assert pending_folders(inbox, Ledger(work, dag)) == {str(new)}
    assert asked == [str(new)]
    assert not [p for p in stats if p.startswith(os.path.join(work, dag))]  # no record file
