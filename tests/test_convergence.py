"""Updates and interruptions converge (issue 15, "an updated study gets stuck").

A delivered 2-image study gains an image, then its next run is interrupted between
packaging and delivery (a dry run, a kill -9 while queued or after packaging, a crash after
the object was written but before its row). The next run, or a reprocess, must leave
exactly one object and one row for the study: the 3-image one. sendit replaces only what it
delivered itself (the ledger's Delivery), never a foreign object.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT, SECRET, run_in_process
from test_ledger_db import postgres_url  # noqa: F401  (the session's PostgreSQL database)

from sendit_ops.core.discovery import find_batches, select_batches
from sendit_ops.core.lifecycle import Step
from sendit_ops.delivery import outbox as box
from sendit_ops.delivery.loop import deliver
from sendit_ops.delivery.outbox import OutboxTarget
from sendit_ops.sample_data import PATIENTS, write_study

pytestmark = pytest.mark.emulator


@pytest.fixture(params=["sqlite", "postgresql"])
def make_pipeline(request, make_pipeline):
    """conftest's make_pipeline, with the ledger in SQLite (default) or in PostgreSQL."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")

    def make(run_id: str = "run1", **overrides):
        if url:
            overrides["ledger_url"] = url
        return make_pipeline(run_id=run_id, **overrides)

    return make


def _study(inbox: Path, images: int) -> None:
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, images)


def _process(pipe, inbox: Path, reprocess: bool = False) -> list[str]:
    """A run up to packaging: what a dry run does (and a crash before delivery leaves)."""
    found = find_batches(inbox, SECRET, inbox.name)
    chosen, _ = select_batches(
        found,
        requested=None,
        interval=None,
        delivered=pipe.ledger.delivered(b.key for b in found),
        reprocess=reprocess,
    )
    keys = pipe.register(chosen)
    pipe.run(Step.PROCESS, keys)
    return keys


def _outbox_state(pipe) -> tuple[list[Path], list[dict[str, str]]]:
    out = Path(pipe.settings.outbox)
    objects = sorted((out / "Collection").rglob("*.tar.gz"))
    rows = box.read_rows(box.table_path(out, pipe.settings.collection, "dicom"))
    return objects, rows


def _images_in(archive: Path) -> int:
    with tarfile.open(archive) as tar:
        return sum(1 for m in tar.getmembers() if m.isfile())


def _crash_after_package(tmp_path: Path, pipe, inbox: Path) -> None:
    """kill -9 of a process that packaged the study and was about to deliver it."""
    layer = {"work_root": pipe.settings.work_root, "outbox": pipe.settings.outbox}
    if pipe.settings.ledger_url:
        layer["ledger_url"] = pipe.settings.ledger_url
    code = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from sendit_ops.pipeline.batch import Pipeline
        from sendit_ops.core.discovery import find_batches
        from sendit_ops.core.lifecycle import Step
        from sendit_ops.core.settings import load_settings
        settings = load_settings({layer!r})
        pipe = Pipeline(settings, {SECRET!r}, {pipe.dag_id!r}, run_id="run-killed")
        keys = pipe.register(find_batches(Path({str(inbox)!r}), pipe.secret_key, "in"))
        pipe.run(Step.PROCESS, keys)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


class Crash(BaseException):
    """The process dies here (nothing of sendit catches it)."""


def _interrupt(how: str, tmp_path: Path, make_pipeline, inbox: Path, monkeypatch) -> None:
    pipe = make_pipeline(run_id="r2")
    if how == "dry_run":
        keys = _process(pipe, inbox)
        assert {pipe.ledger.load(k).state for k in keys} == {"DONEPROCESSING"}
    elif how == "killed_while_queued":
        found = find_batches(inbox, SECRET, inbox.name)
        pipe.register(found)  # then the process died
    elif how == "killed_after_package":
        _crash_after_package(tmp_path, pipe, inbox)
    elif how == "crash_after_object":
        keys = _process(pipe, inbox)

        def die(*_a, **_k):
            raise Crash

        with monkeypatch.context() as patch:
            patch.setattr(box, "upsert_rows", die)
            with pytest.raises(Crash):
                deliver(pipe, OutboxTarget.from_settings(pipe.settings), keys)
        objects, rows = _outbox_state(pipe)
        assert len(objects) == 1 and _images_in(objects[0]) == 3  # the new object...
        assert len(rows) == 1  # ...but the old row
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.mark.parametrize("then", ["rerun", "reprocess"])
@pytest.mark.parametrize(
    "how", ["dry_run", "killed_while_queued", "killed_after_package", "crash_after_object"]
)
def test_an_updated_study_interrupted_before_delivery_converges(
    tmp_path, make_pipeline, monkeypatch, how, then
):
    inbox = tmp_path / "in"
    _study(inbox, 2)
    first = run_in_process(make_pipeline(run_id="r1"), inbox)["ACC1"]
    assert first.state == "DONE"
    _study(inbox, 3)  # the study gained an image
    _interrupt(how, tmp_path, make_pipeline, inbox, monkeypatch)

    pipe = make_pipeline(run_id="r3")
    record = run_in_process(pipe, inbox, reprocess=then == "reprocess")["ACC1"]
    assert record.state == "DONE", record.reasons
    objects, rows = _outbox_state(pipe)
    assert len(objects) == 1 and _images_in(objects[0]) == 3
    assert box.sha256_file(objects[0]) == record.outputs.sha256
    assert [r["CodedAccessionNumberID"] for r in rows] == [record.outputs.item_suid]
    assert rows[0]["storage_download"].endswith(record.outputs.object_name)
    delivered = pipe.ledger.delivery(record.key)
    assert (delivered.sha256, delivered.object_name) == (
        record.outputs.sha256,
        record.outputs.object_name,
    )
    assert delivered.attempts == []


def test_an_object_written_by_a_cut_short_attempt_is_replaced_by_a_newer_version(
    tmp_path, make_pipeline, monkeypatch
):
    """2 images delivered; 3 images written but not confirmed (crash before the row); then a
    4th image: the 3-image object is sendit's own (noted before it was written)."""
    inbox = tmp_path / "in"
    _study(inbox, 2)
    run_in_process(make_pipeline(run_id="r1"), inbox)
    _study(inbox, 3)
    _interrupt("crash_after_object", tmp_path, make_pipeline, inbox, monkeypatch)
    _study(inbox, 4)
    pipe = make_pipeline(run_id="r3")
    record = run_in_process(pipe, inbox)["ACC1"]
    assert record.state == "DONE", record.reasons
    objects, rows = _outbox_state(pipe)
    assert len(objects) == 1 and _images_in(objects[0]) == 4 and len(rows) == 1


def test_a_foreign_object_is_never_replaced_whatever_the_batch_state(tmp_path, make_pipeline):
    inbox = tmp_path / "in"
    _study(inbox, 2)
    first = run_in_process(make_pipeline(run_id="r1"), inbox)["ACC1"]
    target = Path(make_pipeline().settings.outbox) / first.outputs.object_name
    target.write_bytes(b"someone else's file")
    _study(inbox, 3)
    _process(make_pipeline(run_id="r2"), inbox)  # a dry run in between
    redo = run_in_process(make_pipeline(run_id="r3"), inbox, reprocess=True)["ACC1"]
    assert redo.state == "ERROR" and "different archive" in redo.reasons[-1]
    assert target.read_bytes() == b"someone else's file"


def test_a_new_object_name_removes_the_batchs_own_previous_object_and_row(tmp_path, make_pipeline):
    """The study date was corrected at the source: a new archive name, and a new row key
    when the accession number was corrected too; the old object and row were sendit's."""
    inbox = tmp_path / "in"
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 2)
    first = run_in_process(make_pipeline(run_id="r1"), inbox)["ACC1"]
    for f in (inbox / "ACC1").iterdir():
        f.unlink()
    write_study(inbox / "ACC1", PATIENTS[0], "ACC9", "20240116", "CT", 1, 2)
    pipe = make_pipeline(run_id="r2")
    second = run_in_process(pipe, inbox)["ACC1"]
    assert second.state == "DONE", second.reasons
    assert second.outputs.object_name != first.outputs.object_name
    objects, rows = _outbox_state(pipe)
    assert [o.name for o in objects] == [Path(second.outputs.object_name).name]
    assert [r["CodedAccessionNumberID"] for r in rows] == [second.outputs.item_suid]


class _Blob:
    def __init__(self, bucket, name, data=b"", sha=""):
        self.bucket, self.name, self.data = bucket, name, data
        self.metadata = {"sha256": sha} if sha else {}
        self.generation = 1
        self.media_link = self.self_link = f"gs://b/{name}"

    @property
    def md5_hash(self):
        import base64
        import hashlib

        return base64.b64encode(hashlib.md5(self.data).digest()).decode()

    def upload_from_filename(self, path, content_type, if_generation_match, checksum):
        current = self.bucket.objects.get(self.name)
        assert (current.generation if current else 0) == if_generation_match
        self.data = Path(path).read_bytes()
        self.generation = (current.generation if current else 0) + 1
        self.bucket.objects[self.name] = self

    def reload(self):
        pass


class _Bucket:
    name = "b"

    def __init__(self):
        self.objects: dict[str, _Blob] = {}

    def get_blob(self, name):
        return self.objects.get(name)

    def blob(self, name, chunk_size=None):
        return _Blob(self, name)


def test_google_replaces_only_versions_sendit_wrote_for_the_batch(tmp_path, make_pipeline):
    """The GCS rule (object metadata sha256 among the batch's own versions), also after a
    dry run left the batch DONEPROCESSING."""
    from sendit_ops.airflow.google_target import GoogleTarget
    from sendit_ops.core.errors import DeliveryError
    from sendit_ops.delivery.target import Archive

    def upload_archive(bucket, record):
        return GoogleTarget(bucket, None, "`p.d.t`").put_object(Archive.of(record))

    inbox = tmp_path / "in"
    _study(inbox, 2)
    pipe = make_pipeline(run_id="r1")
    (key,) = _process(pipe, inbox)
    bucket = _Bucket()
    (record,) = pipe.ready_for_delivery([key])
    assert upload_archive(bucket, record).status == "created"
    pipe.mark_delivered(record, {"delivered_to": "google", "bucket": "b"})

    _study(inbox, 3)
    _process(make_pipeline(run_id="r2"), inbox)  # a dry run: DONEPROCESSING, not delivered
    pipe = make_pipeline(run_id="r3")
    (key,) = _process(pipe, inbox)
    (record,) = pipe.ready_for_delivery([key])
    placed = upload_archive(bucket, record)
    blob = bucket.objects[record.outputs.object_name]
    assert placed.status == "replaced" and blob.metadata["sha256"] == record.outputs.sha256
    assert len(bucket.objects) == 1

    bucket.objects[record.outputs.object_name] = _Blob(bucket, "x", b"foreign", sha="f" * 64)
    _study(inbox, 4)
    pipe = make_pipeline(run_id="r4")
    (key,) = _process(pipe, inbox)
    (record,) = pipe.ready_for_delivery([key])
    with pytest.raises(DeliveryError, match="different object"):
        upload_archive(bucket, record)
