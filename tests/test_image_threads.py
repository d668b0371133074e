"""The anonymize step runs the pixel stages of a batch's images in threads (issue 22,
``pipeline.in_order``): what it delivers, records and names is byte for byte what a
sequential run (``pixel_threads`` 1) gives, and an error in one image surfaces the same way."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pydicom
import pytest

from sendit_ops.core.errors import BatchError
from sendit_ops.core.settings import load_settings
from sendit_ops.pipeline import in_order
from sendit_ops.pipeline.steps import anonymize
from sendit_ops.sample_data import (
    PATIENTS,
    write_burned_in_ultrasound,
    write_localizer,
    write_screen_capture,
    write_study,
)

pytestmark = pytest.mark.emulator  # whole studies through the pipeline (OCR on their pixels)

SECRET = b"image-threads-test-secret"


# ---- the queue itself ------------------------------------------------------------------------


def test_results_are_finished_in_order_whatever_order_the_threads_end():
    done: list[int] = []
    seen_threads: set[str] = set()

    def job(n: int) -> int:
        time.sleep(0.02 * ((7 - n) % 4))  # the later ones end first
        seen_threads.add(threading.current_thread().name)
        return n * n

    with in_order.InOrder(2, lambda k, r: done.append((k, r)), most=4, budget=100) as q:
        for n in range(8):
            q.put(n, lambda n=n: job(n), weight=1)
    assert done == [(n, n * n) for n in range(8)]
    assert all(name.startswith("sendit-images") for name in seen_threads)


def test_what_is_in_flight_stays_within_the_count_and_the_weight():
    in_flight: list[int] = []
    most_seen = [0, 0]
    lock = threading.Lock()
    weights = [3, 3, 3, 10, 1, 1, 1, 1]

    def job(n: int) -> int:
        with lock:
            in_flight.append(n)
            most_seen[0] = max(most_seen[0], len(in_flight))
            most_seen[1] = max(most_seen[1], sum(weights[i] for i in in_flight))
        time.sleep(0.01)
        return n

    def finish(n: int, _: int) -> None:
        with lock:
            in_flight.remove(n)

    with in_order.InOrder(2, finish, most=3, budget=6) as q:
        for n, w in enumerate(weights):
            q.put(n, lambda n=n: job(n), weight=w)
    assert most_seen[0] <= 3
    assert most_seen[1] <= 10  # the heavy one alone (one job always fits), else <= 6


@pytest.mark.parametrize("threads", [1, 2])
def test_a_jobs_error_comes_in_its_turn_after_the_earlier_ones(threads):
    done: list[int] = []
    boom = RuntimeError("image 3")
    started, ended = [], []

    def job(n: int) -> int:
        started.append(n)
        time.sleep(0.01 * (5 - n) if n < 5 else 0.05)
        ended.append(n)
        if n == 3:
            raise boom
        return n

    queue = in_order.InOrder(threads, lambda k, r: done.append(k), most=4, budget=99)
    with pytest.raises(RuntimeError) as caught, queue as q:
        for n in range(8):
            q.put(n, lambda n=n: job(n))
    assert caught.value is boom
    assert done == [0, 1, 2]
    assert sorted(started) == sorted(ended), "no job still runs once the error is raised"


@pytest.mark.parametrize("threads", [1, 2])
def test_an_error_of_the_steps_own_thread_comes_after_the_jobs_put_before_it(threads):
    done: list[int] = []

    def job(n: int) -> int:
        time.sleep(0.03)
        return n

    queue = in_order.InOrder(threads, lambda k, r: done.append(k), most=4, budget=99)
    with pytest.raises(KeyError), queue as q:
        for n in range(6):
            if n == 4:
                raise KeyError("reading image 4")
            q.put(n, lambda n=n: job(n))
    assert done == [0, 1, 2, 3]


# ---- the anonymize step ----------------------------------------------------------------------


def mixed_input(root: Path) -> Path:
    """One study: CT slices with anatomy, a localizer with the name burned in (masked), an
    ultrasound cine and an RGB image with text burned in (masked; their series/instance
    numbers meet the CT's: the names ``_2`` depend on the order); and a held study (a dose
    screen full of text next to CT slices)."""
    jane, richard = PATIENTS[0], PATIENTS[1]
    mixed = root / "MIX00001"
    write_study(mixed, jane, "MIX00001", "20240115", "CT", 1, 5, size=256)
    write_localizer(mixed, jane, "MIX00001", "20240115")
    for n, path in enumerate(write_burned_in_ultrasound(root / "us", jane, "MIX00001", "20240115",
                                                        frames=6)):  # fmt: skip
        ds = pydicom.dcmread(path)  # the CT's instance numbers, its own SOP Instance UID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{ds.SOPInstanceUID}.{n}"
        ds.save_as(mixed / f"us{n}.dcm", enforce_file_format=True)
    shutil.rmtree(root / "us")
    held = root / "MIX00002"
    write_study(held, richard, "MIX00002", "20240116", "CT", 1, 3, size=128)
    write_screen_capture(held, richard, "MIX00002", "20240116")
    return root


def run(input_dir: Path, work: Path, **values):
    from sendit_ops.delivery.outbox import OutboxTarget
    from sendit_ops.pipeline.batch import Pipeline
    from sendit_ops.pipeline.run import RunRequest, run_folder

    settings = load_settings(
        {"work_root": str(work / "work"), "outbox": str(work / "outbox"), **values}
    )
    pipe = Pipeline(settings, SECRET, "sendit_test", run_id="run1")
    target = lambda: OutboxTarget.from_settings(settings)  # noqa: E731
    records = run_folder(pipe, input_dir, target, RunRequest()).records
    return pipe, records


def tree(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def outcome(pipe, records) -> dict[str, object]:
    """What a run came to: per batch its state, reasons, outputs (held entries without their
    timing) and image metrics; the delivered objects and the working copies, byte for byte."""
    out: dict[str, object] = {}
    for name, record in sorted(records.items()):
        outputs = record.outputs
        held = [{k: v for k, v in h.items() if k != "seconds"} for h in outputs.held or []]
        metrics = {k: v for k, v in record.metrics.items() if k.startswith(("images_", "pixel_"))}
        out[name] = (record.state, record.reasons, record.warnings, outputs.files, held,
                     outputs.masked, metrics)  # fmt: skip
    work = Path(pipe.settings.work_root)
    outbox = Path(pipe.settings.outbox)
    # the rows name where the archive is (this run's outbox): the rest is compared as is
    here = str(outbox).encode()
    out["outbox"] = {k: v.replace(here, b"<outbox>") for k, v in tree(outbox).items()}
    out["work"] = {k: v for k, v in tree(work).items() if "/anonymized/" in k or "/review/" in k}
    return out


def slow_first(monkeypatch):
    """The pixel stage of the first images of a series takes longer: the threads end out of
    order (what the step must put back in order)."""
    clean = anonymize.clean_pixels

    def slow(ds, *args, **kw):
        time.sleep(0.15 if int(ds.get("InstanceNumber") or 0) <= 2 else 0)
        return clean(ds, *args, **kw)

    monkeypatch.setattr(anonymize, "clean_pixels", slow)


def test_threads_deliver_record_and_name_what_a_sequential_run_does(tmp_path, monkeypatch):
    source = mixed_input(tmp_path / "input")
    slow_first(monkeypatch)
    one = outcome(*run(source, tmp_path / "one", pixel_threads=1, keep_work_files=True))
    two = outcome(*run(source, tmp_path / "two", pixel_threads=2, keep_work_files=True))
    assert one["MIX00001"][0] == "DONE" and one["MIX00002"][0] == "HELD"
    assert one["MIX00001"][5], "the localizer and the ultrasound images were masked"
    assert any(f.endswith("_2.dcm") for f in one["MIX00001"][3]), "names met"
    assert one["outbox"] and one["work"]
    assert two == one


def fail_on(monkeypatch, step: str, instance: int, error: Exception) -> None:
    """The anonymize step's ``step`` (a function it calls with the image's dataset first)
    raises ``error`` on the image of InstanceNumber ``instance``."""
    real = getattr(anonymize, step)

    def failing(ds, *args, **kw):
        if int(ds.InstanceNumber) == instance:
            raise error
        return real(ds, *args, **kw)

    monkeypatch.setattr(anonymize, step, failing)


@pytest.mark.parametrize(
    "error", [RuntimeError("pixel stage broke"), BatchError("an image cannot be cleaned")]
)
def test_an_error_in_one_images_pixel_stage_surfaces_as_it_would_sequentially(
    tmp_path, monkeypatch, error
):
    source = tmp_path / "input"
    write_study(source / "ERR00001", PATIENTS[0], "ERR00001", "20240115", "CT", 1, 6, size=128)
    slow_first(monkeypatch)
    fail_on(monkeypatch, "clean_pixels", 4, error)
    one = outcome(*run(source, tmp_path / "one", pixel_threads=1, keep_work_files=True))
    two = outcome(*run(source, tmp_path / "two", pixel_threads=2, keep_work_files=True))
    state, reasons = one["ERR00001"][:2]
    reason = " ".join(reasons)
    assert state == "ERROR" and "anonymize" in reason
    assert type(error).__name__ in reason or str(error) in reason
    written = {Path(k).name for k in one["work"]}  # the images before it (in the batch's order)
    assert written and "0001_0004.dcm" not in written and len(written) < 5
    assert two == one


def test_an_error_reading_an_image_comes_after_the_images_before_it(tmp_path, monkeypatch):
    source = tmp_path / "input"
    write_study(source / "ERR00002", PATIENTS[0], "ERR00002", "20240115", "CT", 1, 6, size=128)
    slow_first(monkeypatch)
    fail_on(monkeypatch, "anonymize_dataset", 5, ValueError("a header that cannot be cleaned"))
    one = outcome(*run(source, tmp_path / "one", pixel_threads=1, keep_work_files=True))
    two = outcome(*run(source, tmp_path / "two", pixel_threads=2, keep_work_files=True))
    assert one["ERR00002"][0] == "ERROR"
    assert "0001_0005.dcm" not in {Path(k).name for k in one["work"]}
    assert two == one


def test_a_forked_child_makes_its_own_threads():
    """A task process forked from one that ran a batch (e.g. a preloaded parent) has none of
    the parent's threads: its jobs still run."""
    with in_order.InOrder(2, lambda k, r: None, most=2, budget=9) as q:
        q.put(0, lambda: threading.current_thread().name)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        signal.alarm(30)  # a pool waiting for threads that are not there: killed, not hung
        done: list[str] = []
        with in_order.InOrder(2, lambda k, r: done.append(r), most=2, budget=9) as q:
            q.put(0, lambda: "ran")
        os.write(write, done[0].encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    assert status == 0 and os.read(read, 10) == b"ran"


CODEC_FILES = [
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR
    "JPEG2000.dcm",
    "emri_small_jpeg_2k_lossless.dcm",  # 10 frames
    "MR_small_RLE.dcm",
    "SC_rgb_rle_2frame.dcm",
    "JPEGLSNearLossless_16.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
]


def test_codecs_decode_and_encode_the_same_in_threads_at_once():
    """Images are decoded and re-encoded in several threads at once now (before: one image
    at a time): every codec plugin gives what it gives one call at a time."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from pydicom.data import get_testdata_file

    from sendit_ops.dicom.pixels.codec import decode, write_back

    def round_trip(name: str) -> tuple[bytes, bytes, str]:
        ds = pydicom.dcmread(get_testdata_file(name))
        decoded = decode(ds)
        frames = decoded.frames.copy()
        frames[:, :4, :4] = 0  # a small mask, as the stage's
        syntax = write_back(ds, frames, decoded)
        again = decode(ds)
        return decoded.frames.tobytes(), np.asarray(again.frames).tobytes(), str(syntax)

    names = CODEC_FILES * 4
    alone = {name: round_trip(name) for name in CODEC_FILES}
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(round_trip, names))
    assert together == [alone[name] for name in names]


def test_a_forked_child_runs_the_pixel_stages_frame_jobs():
    """The pixel stage's frame helpers (``stage._helpers``) are the parent's threads too:
    a child forked after a cine was screened in threads still runs its frame jobs, and the
    OCR engine's locks are not left held by a thread of the parent."""
    from sendit_ops.dicom.pixels import ocr, stage

    assert stage._run([lambda: 1, lambda: 2, lambda: 3], 2) == [1, 2, 3]
    read, write = os.pipe()
    with ocr._lock:  # held by the parent at the fork, as another thread may hold it
        child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        signal.alarm(30)  # a pool waiting for threads that are not there: killed, not hung
        ran = stage._run([lambda: "a", lambda: "b", lambda: "c"], 2)
        with ocr._lock, ocr._detecting:
            os.write(write, "".join(ran).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    assert status == 0 and os.read(read, 10) == b"abc"
