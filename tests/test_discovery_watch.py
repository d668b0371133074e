"""The streaming trigger's check for new batch folders (sendit_ops.discovery_watch)."""

from __future__ import annotations

import os
import time

from conftest import SECRET

from sendit_ops.discovery import find_batches
from sendit_ops.discovery_watch import RecordIndex, pending_folders


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
    assert pending_folders(inbox, work, pipe.dag_id) == {str(a), str(b)}

    pipe.register([f for f in find_batches(inbox, SECRET, "inbox") if f.path == str(a)])
    assert pending_folders(inbox, work, pipe.dag_id) == {str(b)}

    later = time.time() + 60  # files added to a taken folder: pending again
    os.utime(a, (later, later))
    assert pending_folders(inbox, work, pipe.dag_id) == {str(a), str(b)}


def test_records_are_read_again_only_when_they_change(tmp_path, make_pipeline):
    inbox = tmp_path / "inbox"
    a = _folder(inbox, "ACC1")
    pipe = make_pipeline()
    work, dag = pipe.settings.work_root, pipe.dag_id
    pipe.register(find_batches(inbox, SECRET, "inbox"))
    record = next((tmp_path / "work").rglob("record.json"))
    cache = RecordIndex()
    assert pending_folders(inbox, work, dag, cache) == set()
    assert len(cache) == 1

    # same modification time: the cached entry is used, the (now unreadable) file is not
    stamp = record.stat()
    record.write_text("{not json")
    os.utime(record, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert pending_folders(inbox, work, dag, cache) == set()

    # changed: read again; an unreadable record counts as unknown, so the folder is pending
    os.utime(record, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    assert pending_folders(inbox, work, dag, cache) == {str(a)}

    record.unlink()  # a record that disappears leaves the cache
    assert pending_folders(inbox, work, dag, cache) == {str(a)}
    assert len(cache) == 0


def test_records_of_batches_gone_from_the_input_are_not_looked_at_again(
    tmp_path, make_pipeline, monkeypatch
):
    """The ledger keeps every batch ever seen; a poll stats only the records of the folders
    still in the input folder (and lists the ledger), whatever the size of the history."""
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
    index = RecordIndex()
    assert pending_folders(inbox, work, dag, index) == {str(new)}
    assert len(index) == 30  # each record read once

    stats = []
    real_stat = os.stat
    monkeypatch.setattr(
        os, "stat", lambda p, *a, **k: stats.append(str(p)) or real_stat(p, *a, **k)
    )
    assert pending_folders(inbox, work, dag, index) == {str(new)}
    assert str(new) in stats  # the input folder was looked at
    assert not [p for p in stats if p.endswith("record.json")]
