"""``make bench``: throughput of sendit's pipeline against baselines, on one core.

1. **pipeline**: sendit's in-process steps (filter, identifiers, pseudonyms, header recipe,
   write, leak check, package + verify) over a corpus of generated 512x512 16-bit CT studies;
2. **plain pydicom**: read each file, delete a few tags, remove private tags, write, and pack
   each batch as tar.gz at the same level: the floor of any header-editing pipeline; once
   with sendit's packer (ISA-L deflate) and once with stdlib tarfile + zlib;
3. **naive deid**: what sendit (2017) did: ``get_identifiers`` + ``replace_identifiers`` per
   batch with the recipe given by path (parsed again for every file), deid's default recipe,
   then stdlib tar.gz; and the same path with sendit's own recipe.

Also: the pipeline on a mixed corpus (``mixed``: ~10% of the files ultrasound with a name,
an id and a date burned in, which go through the pixel stage: OCR, mask, re-encode, verify),
peak RSS of the pipeline on a small and a big study (memory must not grow with the number of
files), two worker processes against one (scale-out), the parse time of the DAG file, a
run's bookkeeping with 20,000 old records in the ledger's database (``history``), the pixel
stage per 512x512 frame (``pixels``), the overhead of Airflow, and retrieval from a local
PACS (``retrieval``: Debian's Orthanc loaded with the corpus; MB/s by C-GET, C-MOVE and
DICOMweb, so a user sees whether the PACS step or the pipeline bounds a whole request). The
last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

KEY = b"bench-secret-key-0123456789abcdef"
WARM_RUNS = 5
SETTLE_SECONDS = 3


def corpus(root: Path, studies: int, images: int, size: int = 512) -> int:
    """Generate (or reuse) a corpus; return its size in bytes."""
    from sendit_ops.sample_data import make_bench_corpus

    marker = root / f".made-{studies}-{images}-{size}"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        make_bench_corpus(root, studies, images, size)
        marker.touch()
    return sum(p.stat().st_size for p in root.rglob("*.dcm"))


MIXED_US_SHARE = 0.1  # of the mixed corpus's files: ultrasound with burned-in text
MIXED_US_FRAMES = 8  # frames of each ultrasound cine (each US study: a cine and an RGB image)


def mixed_corpus(root: Path, studies: int, images: int) -> tuple[int, int, int]:
    """Generate (or reuse) a mixed corpus: CT studies as in ``corpus`` (one study fewer per
    ten) and ultrasound studies with a name, an id and a date burned in (a grey cine of
    MIXED_US_FRAMES frames and an RGB image each), ~10% of the files. Returns its size in
    bytes, its number of files and of ultrasound files."""
    from sendit_ops.sample_data import (
        PATIENTS,
        make_bench_corpus,
        write_burned_in_ultrasound,
    )

    ct_studies = max(1, round(studies * (1 - MIXED_US_SHARE)))
    us_files = max(2, round(ct_studies * images * MIXED_US_SHARE / (1 - MIXED_US_SHARE)))
    us_studies = us_files // 2
    marker = root / f".made-{ct_studies}-{images}-{us_studies}-{MIXED_US_FRAMES}"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        make_bench_corpus(root, ct_studies, images)
        for n in range(us_studies):
            acc = f"USBURN{n:05d}"
            write_burned_in_ultrasound(
                root / acc, PATIENTS[n % len(PATIENTS)], acc, "20240307", frames=MIXED_US_FRAMES
            )
        marker.touch()
    paths = list(root.rglob("*.dcm"))
    return sum(p.stat().st_size for p in paths), len(paths), 2 * us_studies


def pixel_cleaned(work: Path) -> int:
    """Images that the last ``run_pipeline`` into ``work`` delivered masked and verified."""
    from sendit_ops.core.ledger import Ledger

    ledger = Ledger(work / "work", "bench")
    return sum(int(r.metrics.get("images_pixel_cleaned", 0) or 0) for r in ledger.all())


def run_pipeline(
    input_dir: Path,
    work: Path,
    folders: list[str] | None = None,
    gzip_level: int = 1,
    timed_delivery: bool = False,
) -> float:
    """sendit's run in-process over (some of) the batches (``run_folder``, the runner the
    DAG's tasks use: lock, steps, finalize, deliver, report); returns seconds.

    Timed: discover, filter (with identifiers), pseudonyms, header recipe, write, verify,
    package: the issue's definition, and what the baselines do. The delivery to the local
    outbox and the report are not counted, unless ``timed_delivery`` (the same work as a
    DAG run, for the Airflow comparison)."""
    from sendit_ops.core.settings import load_settings
    from sendit_ops.delivery.outbox import OutboxTarget
    from sendit_ops.pipeline.batch import Pipeline
    from sendit_ops.pipeline.run import RunRequest, run_folder

    settings = load_settings(
        {"work_root": str(work / "work"), "outbox": str(work / "outbox"), "gzip_level": gzip_level}
    )
    pipe = Pipeline(settings, KEY, "bench", run_id="bench")
    # every run of the bench does the work again (as a reprocess run does), whatever was
    # delivered by an earlier round into the same work root; the runner the DAG's tasks use
    request = RunRequest(batches=tuple(folders or ()), reprocess=True)
    result = run_folder(pipe, input_dir, lambda: OutboxTarget.from_settings(settings), request)
    if not result.records:
        raise SystemExit("bench: no batch was chosen: nothing would be measured")
    bad = [name for name, r in result.records.items() if r.state != "DONE"]
    if bad:
        raise SystemExit(f"bench: {len(bad)} batch(es) did not end DONE: {bad[:3]}")
    # timed as the issue defines it (choose + the batch steps); the delivery too on request
    phases = ["choose", "steps", *(["deliver"] if timed_delivery else [])]
    return sum(result.seconds[p] for p in phases)


def _pack(folder: Path, target: Path, level: int, packer: str = "sendit") -> None:
    """Pack a folder as tar.gz: with sendit's packer, or the straightforward stdlib way."""
    if packer == "zlib":
        import tarfile

        target.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(target, "w:gz", compresslevel=level) as tar:
            for path in sorted(folder.iterdir()):
                tar.add(path, arcname=path.name)
        return
    from sendit_ops.packaging.archive import write_archive  # no deid import

    write_archive([(p.name, p) for p in sorted(folder.iterdir())], target, level)


def run_plain(input_dir: Path, work: Path, level: int = 1, packer: str = "sendit") -> float:
    """Read, edit a few tags, write, pack: plain pydicom (``packer``: sendit's ISA-L packer,
    or stdlib tarfile + zlib)."""
    import pydicom

    shutil.rmtree(work / "plain", ignore_errors=True)
    started = time.perf_counter()
    for batch in sorted(p for p in input_dir.iterdir() if p.is_dir()):
        out = work / "plain" / batch.name
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(batch.iterdir()):
            ds = pydicom.dcmread(path)
            for keyword in (
                "PatientName",
                "PatientID",
                "PatientBirthDate",
                "AccessionNumber",
                "InstitutionName",
                "ReferringPhysicianName",
            ):
                if keyword in ds:
                    delattr(ds, keyword)
            ds.remove_private_tags()
            ds.save_as(out / path.name)
        _pack(out, work / "plain-archives" / f"{batch.name}.tar.gz", level, packer)
    return time.perf_counter() - started


def run_naive_deid(input_dir: Path, work: Path, recipe: str, level: int = 1) -> float:
    """The naive deid path, in a fresh process with deid as released (no speed fix)."""
    code = (
        "import sys; from pathlib import Path; "
        "from devtools.bench import naive_deid; "
        "print(naive_deid(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(input_dir), str(work), str(level), recipe],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def naive_deid(input_dir: Path, work: Path, level: int, recipe: str = "sendit") -> float:
    """get_identifiers + replace_identifiers per batch with the recipe given by path (parsed
    again for every file), then stdlib tar.gz packing.

    ``recipe``: "default" is what sendit (2017) ran: deid's default recipe, sequences
    stripped, private tags removed; "sendit" is sendit's own recipe through the same path.
    """
    from deid.dicom import get_identifiers, replace_identifiers

    deid = (
        None
        if recipe == "default"
        else str(Path(__file__).parents[1] / "sendit_ops" / "dicom" / "recipes" / "deid.sendit")
    )
    if "sendit_ops.dicom.deid_patches" in sys.modules:
        raise RuntimeError("the naive baseline must run with deid as released")

    started = time.perf_counter()
    for batch in sorted(p for p in input_dir.iterdir() if p.is_dir()):
        files = [str(p) for p in sorted(batch.iterdir())]
        ids = get_identifiers(files)
        for path in ids:
            ids[path].update(
                {
                    "entity_suid": "P1",
                    "item_suid": "S1",
                    "jitter": -10,
                    "remap_uid": lambda field=None, **_: "2.25.1",
                }
            )
        out = work / "naive" / batch.name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        replace_identifiers(
            files,
            deid=deid,
            ids=ids,
            save=True,
            output_folder=str(out),
            overwrite=True,
            remove_private=True,
            strip_sequences=recipe == "default",
        )
        _pack(out, work / "naive-archives" / f"{batch.name}.tar.gz", level, "zlib")
    return time.perf_counter() - started


def _worker(args: tuple[str, str, list[str]]) -> float:
    input_dir, work, folders = args
    return run_pipeline(Path(input_dir), Path(work), folders)


def _warm_up(_: int) -> int:
    """Start a pool worker and import the pipeline in it (long-lived workers, as in
    Airflow, do this once)."""
    import sendit_ops.pipeline.batch  # noqa: F401

    time.sleep(0.5)  # long enough that every worker of the pool takes one
    return os.getpid()


def scaleout(input_dir: Path, work: Path) -> float:
    """Wall time with one worker process divided by wall time with two (started workers,
    batches split evenly)."""
    batches = sorted(p.name for p in input_dir.iterdir() if p.is_dir())
    timings = {}
    for workers in (1, 2):
        parts = [batches[i::workers] for i in range(workers)]
        shutil.rmtree(work / f"scale{workers}", ignore_errors=True)
        with ProcessPoolExecutor(workers) as pool:
            if len(set(pool.map(_warm_up, range(workers)))) != workers:
                raise SystemExit("bench: the pool did not start every worker")
            started = time.perf_counter()
            list(
                pool.map(
                    _worker,
                    [
                        (str(input_dir), str(work / f"scale{workers}" / str(i)), p)
                        for i, p in enumerate(parts)
                    ],
                )
            )
            timings[workers] = time.perf_counter() - started
    return timings[1] / timings[2]


def own_peak_rss_mb() -> float:
    """Peak RSS (MB) of this process's own memory: ``VmHWM`` of /proc/self/status.

    Not ``getrusage``'s ``ru_maxrss``: Linux carries it over fork and exec, so a process
    started by the bench reports at least the bench's own RSS at the fork (with the OCR
    models loaded, ~550 MB), whatever the child uses."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mb(input_dir: Path, work: Path) -> float:
    """Peak RSS (MB) of a fresh process running the pipeline on ``input_dir``."""
    code = (
        "import sys; from pathlib import Path; "
        "from devtools.bench import own_peak_rss_mb, run_pipeline; "
        "run_pipeline(Path(sys.argv[1]), Path(sys.argv[2])); "
        "print(own_peak_rss_mb())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(input_dir), str(work)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def dag_parse_seconds() -> float:
    """Seconds the DAG processor spends parsing dags/sendit_folders.py (4 input folders)."""
    code = (
        "import json, os, time\n"
        "os.environ['AIRFLOW_VAR_SENDIT_INPUT_FOLDERS'] = json.dumps("
        "[f'/data/1_{i}' for i in range(4)])\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "import sendit_ops.airflow.dag_bundle as b\n"
        "folder = os.path.dirname(b.__file__) if b.__file__ else list(b.__path__)[0]\n"
        "t = time.perf_counter(); bag = DagBag(folder); dt = time.perf_counter() - t\n"
        "assert len(bag.dags) == 4, bag.import_errors\n"
        "print(dt)\n"
    )
    env = {
        **os.environ,
        "AIRFLOW_HOME": tempfile.mkdtemp(prefix="bench-af-"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def history_overhead(root: Path, records: int = 20_000, batches: int = 40) -> dict[str, float]:
    """Seconds of a run's bookkeeping with a long ledger history: ``records`` old batches
    (copies of a real record, their folders gone from the input) in the ledger's database and
    ``batches`` in the input folder. Timed: discover's delivered lookup, report's
    ``metrics.tsv`` refresh (and its rebuild from every record, once after an upgrade), a
    watch-trigger poll after the first; but for the rebuild, none of them should depend on
    ``records``."""
    from dataclasses import replace

    from sendit_ops.core.arrivals import pending_folders
    from sendit_ops.core.ledger import Ledger
    from sendit_ops.core.report import refresh_metrics, summarize

    inbox, work = root / "history-in", root / "history-work"
    shutil.rmtree(work, ignore_errors=True)
    if not inbox.is_dir():
        corpus(inbox, batches, 1, size=64)
    run_pipeline(inbox, work)
    ledger = Ledger(work / "work", "bench")  # run_pipeline's dag id and SQLite database
    current = ledger.all()
    template = current[0]
    # what thousands of studies a day leave behind, written as the pipeline writes records
    ledger.save_many(
        replace(template, key=f"h{i:015x}", source_path=f"{inbox}-gone/{i}") for i in range(records)
    )
    held = sum(ledger.state_counts().values())
    if held != records + len(current):
        raise SystemExit(f"bench: the history ledger holds {held} records, not {records}+")
    found = [r.key for r in current]
    timings = {}
    started = time.perf_counter()
    delivered = Ledger(work / "work", "bench").delivered(found)  # a new run's own handle
    timings["discover"] = time.perf_counter() - started
    if len(delivered) != len(found):
        raise SystemExit(f"bench: {len(found) - len(delivered)} history batch(es) not DONE")
    (ledger.root / "metrics.tsv").unlink(missing_ok=True)
    started = time.perf_counter()
    refresh_metrics(ledger, [])  # a first report after the upgrade rebuilds the file
    timings["rebuild"] = time.perf_counter() - started
    lines = summarize(current, "bench")["batch_lines"]
    started = time.perf_counter()
    refresh_metrics(ledger, lines)
    timings["report"] = time.perf_counter() - started
    watched = Ledger(work / "work", "bench")  # the trigger keeps its ledger between polls
    pending_folders(inbox, watched)
    started = time.perf_counter()
    pending = pending_folders(inbox, watched)
    timings["poll"] = time.perf_counter() - started
    if pending:
        raise SystemExit(f"bench: the watch poll found {len(pending)} delivered folder(s) pending")
    return timings


def _run_seconds(stack: Any, dag_id: str, run_id: str) -> float:
    """A finished run's time in Airflow: from queued (trigger accepted) to end."""
    run = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
    queued, end = (datetime.fromisoformat(run[k]) for k in ("queued_at", "end_date"))
    return (end - queued).total_seconds()


def airflow_overhead(
    root: Path, studies: int = 40, images: int = 3, settings: dict[str, Any] | None = None
) -> dict[str, float]:
    """Seconds for small studies through a running scheduler (LocalExecutor, PostgreSQL, the
    task-start settings sendit ships) against in-process, for both task layouts: two DAGs on
    the same input, each run once after start-up, then WARM_RUNS times with ``reprocess``.
    The figure is the median of those, against the median of as many in-process runs, each
    made just before one of the Airflow runs after SETTLE_SECONDS of an idle stack: this
    machine kind's speed drifts by up to 2x over minutes, and figures taken minutes apart
    do not compare. The median of in-process runs before the stack started is returned too
    (``in_process_before_start``)."""
    import secrets as _secrets

    from devtools.airflow_stack import (
        SHIPPED_PARSE_INTERVAL,
        AirflowStack,
        create_database,
    )

    small = root / "small"
    corpus(small, studies, images, size=256)

    def in_process() -> float:
        shutil.rmtree(root / "small-work", ignore_errors=True)
        return run_pipeline(small, root / "small-work", timed_delivery=True)

    timings: dict[str, float] = {
        "in_process_before_start": statistics.median(in_process() for _ in range(WARM_RUNS))
    }
    for name in ("af", "af-home"):
        shutil.rmtree(root / name, ignore_errors=True)
    layouts = {"sendit_bench": "steps", "sendit_bench_fused": "fused"}
    folders = [
        {
            "path": str(small),
            "name": dag_id.removeprefix("sendit_"),
            "settings": {
                "task_layout": layout,
                "work_root": str(root / "af" / layout / "work"),
                "outbox": str(root / "af" / layout / "outbox"),
            },
        }
        for dag_id, layout in layouts.items()
    ]
    env = {
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS": json.dumps(folders),
        "AIRFLOW_VAR_SENDIT_SETTINGS": json.dumps(settings or {}),
        "AIRFLOW_VAR_SENDIT_SECRET_KEY": KEY.decode(),
    }
    dags = Path(__file__).parents[1] / "sendit_ops" / "airflow" / "dag_bundle"
    stack = AirflowStack(
        root / "af-home",
        dags,
        create_database(f"sendit_bench_{_secrets.token_hex(4)}"),
        env=env,
        parse_interval=SHIPPED_PARSE_INTERVAL,  # as deployed, not the live tests' 5 s
    )
    stack.start()
    try:
        for dag_id, layout in layouts.items():
            stack.wait_dag(dag_id)
            seconds, alone = [], []
            for conf in [{}] + [{"reprocess": True}] * WARM_RUNS:
                if conf:
                    time.sleep(SETTLE_SECONDS)  # the stack idle again, as before its start
                    alone.append(in_process())
                run_id = stack.trigger(dag_id, conf)
                state = stack.wait_run(dag_id, run_id, timeout=900)
                if state != "success":
                    raise SystemExit(f"bench: the Airflow run of {dag_id} ended {state}")
                seconds.append(_run_seconds(stack, dag_id, run_id))
            timings[f"{layout}_first"] = seconds[0]
            timings[f"{layout}_warm"] = statistics.median(seconds[1:])
            timings[f"{layout}_in_process"] = statistics.median(alone)
    finally:
        stack.stop()
    return timings


@dataclass(frozen=True)
class PixelTiming:
    """Milliseconds per frame of the pixel stage: wall clock, and CPU time of the process
    (the engine runs one thread, so CPU time is what the wall clock shows on an idle core;
    it stays put when other work shares the machine)."""

    wall_ms: float
    cpu_ms: float


def pixel_ms_per_frame(images: int = 5) -> PixelTiming:
    """The pixel stage (OCR detect, mask, re-encode, OCR verify) on a 512x512 ultrasound
    frame with a name, an id and a date burned in, one core (the engine runs one thread):
    medians over ``images`` runs, after one warm-up (model loading)."""
    from sendit_ops.core.settings import Settings
    from sendit_ops.dicom.identifiers import collect_needles, ocr_matcher
    from sendit_ops.dicom.pixels import clean, plan_pixels
    from sendit_ops.sample_data import PATIENTS, make_burned_in_ultrasound

    settings = Settings(pixel_cleaning="ocr")
    wall: list[float] = []
    cpu: list[float] = []
    for n in range(images + 1):
        ds = make_burned_in_ultrasound(
            PATIENTS[n % len(PATIENTS)], f"PIX{n:05d}", "20240115", 1, rows=512, columns=512
        )
        matcher = ocr_matcher(collect_needles(ds))
        start, start_cpu = time.perf_counter(), time.process_time()
        outcome = clean(ds, plan_pixels(ds), settings, matcher)
        if n:  # the first run loads the models
            frames = max(outcome.frames, 1)
            wall.append((time.perf_counter() - start) / frames)
            cpu.append((time.process_time() - start_cpu) / frames)
    return PixelTiming(statistics.median(wall) * 1000, statistics.median(cpu) * 1000)


# ---- the text screen (issue 22) -----------------------------------------------------------
#
# Written to run against an older checkout too (the "before" column of docs/performance.md):
# settings and modules that did not exist there are looked up, not assumed.


def _settings(**values: Any) -> Any:
    """Settings with ``values``, leaving out those this checkout does not know."""
    from dataclasses import fields

    from sendit_ops.core.settings import Settings

    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in values.items() if k in known})


def screen_ms_per_frame(frames: int = 40) -> dict[str, float]:
    """The text screen alone on 512x512 16-bit CT slices, one core: ``anatomy`` (generated
    slices with lungs, vessels, ribs: what a real CT looks like to the screen) and
    ``noise`` (the bench corpus's pixels); median ms per frame. 0 when there is no screen."""
    try:
        import cv2

        from sendit_ops.dicom.pixels import screen
        from sendit_ops.dicom.pixels.display import Display
    except ImportError:
        return {"anatomy": 0.0, "noise": 0.0}
    from sendit_ops.dicom.pixels.codec import decode
    from sendit_ops.sample_data import PATIENTS, anatomy_slice, make_image

    cv2.setNumThreads(1)
    out = {}
    rng = np.random.default_rng(0)
    for kind in ("anatomy", "noise"):
        times = []
        for n in range(frames + 1):
            ds = make_image(PATIENTS[0], "SCREEN", "20240115", "CT", 1, n + 1, size=512)
            if kind == "anatomy":
                ds.PixelData = anatomy_slice(512, n, "CT").tobytes()
            else:
                ds.PixelData = rng.integers(0, 4096, (512, 512), dtype=np.uint16).tobytes()
            start = time.process_time()
            decoded = decode(ds)
            display = Display(decoded, ds)
            screen.candidates(display.gray(decoded.frames[0]), 0)
            if n:
                times.append(time.process_time() - start)
        out[kind] = round(statistics.median(times) * 1000, 2)
    return out


def anatomy_corpus(root: Path, studies: int = 2, images: int = 40) -> int:
    """CT studies whose 512x512 slices have anatomy (lungs, vessels, ribs, spine), no text:
    what the screen meets in practice (the bench corpus is noise). Returns the file count."""
    from sendit_ops.sample_data import PATIENTS, anatomy_slice, make_image

    marker = root / f".made-{studies}-{images}"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        for n in range(studies):
            acc = f"ANAT{n:05d}"
            folder = root / acc
            folder.mkdir(parents=True)
            for i in range(1, images + 1):
                ds = make_image(PATIENTS[n % 3], acc, "20240115", "CT", 1, i, size=512, seed=n)
                ds.PixelData = anatomy_slice(512, n * 1000 + i, "CT").tobytes()
                ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        marker.touch()
    return len(list(root.rglob("*.dcm")))


def run_pipeline_with(input_dir: Path, work: Path, **values: Any) -> float:
    """``run_pipeline``'s timed part (choose + the batch steps, through ``run_folder``) with
    extra settings (e.g. pixel_screening); seconds."""
    from sendit_ops.core.settings import load_settings
    from sendit_ops.delivery.outbox import OutboxTarget
    from sendit_ops.pipeline.batch import Pipeline
    from sendit_ops.pipeline.run import RunRequest, run_folder

    base = {"work_root": str(work / "work"), "outbox": str(work / "outbox")}
    known = {f.name for f in __import__("dataclasses").fields(_settings().__class__)}
    settings = load_settings({**base, **{k: v for k, v in values.items() if k in known}})
    pipe = Pipeline(settings, KEY, "bench", run_id="bench")
    request = RunRequest(reprocess=True)
    result = run_folder(pipe, input_dir, lambda: OutboxTarget.from_settings(settings), request)
    if not result.records:
        raise SystemExit("bench: no batch was chosen: nothing would be measured")
    states = sorted({r.state for r in result.records.values()})
    if states != ["DONE"]:  # held images (a review) are work done all the same: say so
        print(f"bench: batches ended {states} with {values}")
    return sum(result.seconds[p] for p in ("choose", "steps"))


def screening_ratios(
    corpora: dict[str, Path], work: Path, rounds: int = 2
) -> dict[str, dict[str, float]]:
    """CT pipeline throughput (files/s) with ``pixel_screening`` all against header, per
    corpus, best of ``rounds`` interleaved runs. The OCR engine's code is imported first, as
    the task preload does for a task process (``sendit_ops.airflow.preload``); its engines
    are made in the timed run."""
    with contextlib.suppress(ImportError):  # a checkout without OCR (the "before" column)
        importlib.import_module("rapidocr.main")
    out = {}
    for name, folder in corpora.items():
        files = len(list(folder.rglob("*.dcm")))
        best: dict[str, float] = {}
        for _ in range(rounds):
            for mode in ("header", "all"):
                shutil.rmtree(work / f"screen-{name}-{mode}", ignore_errors=True)
                seconds = run_pipeline_with(
                    folder, work / f"screen-{name}-{mode}", pixel_screening=mode
                )
                best[mode] = min(best.get(mode, seconds), seconds)
        out[name] = {
            "header_files_s": round(files / best["header"], 1),
            "all_files_s": round(files / best["all"], 1),
            "ratio": round(best["header"] / best["all"], 3),
        }
    return out


CINE = r"""
import json, sys, time
from sendit_ops.core.settings import Settings
from sendit_ops.dicom.pixels import clean, plan_pixels
from sendit_ops.sample_data import PATIENTS, make_burned_in_ultrasound
ds = make_burned_in_ultrasound(PATIENTS[0], "CINE00001", "20240115", 1, frames=120,
                               rows=480, columns=640)
try:  # the study's one identifier source (issue 23)
    from sendit_ops.dicom.identifiers import collect_needles, ocr_matcher
    matcher = ocr_matcher(collect_needles(ds))
except ImportError:  # an older checkout (the "before" column)
    from sendit_ops.dicom.pixels import header_identifiers, identifier_matcher
    matcher = identifier_matcher(*header_identifiers(ds))
from sendit_ops.dicom.pixels import ocr
ocr.engine()  # models loaded before the clock starts
start, cpu = time.perf_counter(), time.process_time()
outcome = clean(ds, plan_pixels(ds), Settings(pixel_cleaning="ocr"), matcher)
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
with open("/proc/self/status") as fh:
    rss = next(int(l.split()[1]) / 1024 for l in fh if l.startswith("VmHWM:"))
print(json.dumps({"seconds": wall, "cpu_seconds": cpu, "peak_rss_mb": rss,
                  "cleaned": outcome.cleaned, "frames": outcome.frames}))
"""


def cine_seconds() -> dict[str, Any]:
    """The pixel stage on a 120-frame 640x480 grey ultrasound cine with a name, an id and a
    date burned in (every frame screened, key views read, masked, re-encoded, verified), in
    a fresh process: seconds (models already loaded) and the process's peak RSS."""
    # run in the checkout this bench belongs to: ``python -c`` puts its working directory
    # first on the path, and a "before" run from another checkout measured that one instead
    run = subprocess.run(
        [sys.executable, "-c", CINE], capture_output=True, text=True, check=True, timeout=900,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    return json.loads(run.stdout.strip().splitlines()[-1])


def text_free_images() -> list[tuple[str, Any]]:
    """The text-free set of the precision test (tests/test_pixel_screen.py): images of
    pydicom-data and deid-data without burned-in text, and generated CT/MR slices."""
    import warnings

    import deid_data
    import pydicom
    from pydicom.data import get_testdata_file

    from sendit_ops.sample_data import PATIENTS, anatomy_slice, make_image

    warnings.filterwarnings("ignore", module="pydicom")
    deid = Path(deid_data.__file__).parent / "data"
    names = ["CT_small.dcm", "MR_small.dcm", "bad_sequence.dcm", "eCT_Supplemental.dcm",
             "emri_small.dcm", "JPEG2000.dcm", "MR2_UNCR.dcm", "SC_rgb_small_odd.dcm"]  # fmt: skip
    out = [(n, pydicom.dcmread(get_testdata_file(n))) for n in names]
    for path in [deid / "humans" / "ctbrain1.dcm", deid / "humans" / "ctbrain2.dcm",
                 *sorted((deid / "dicom-cookies").glob("*.dcm"))]:  # fmt: skip
        out.append((path.name, pydicom.dcmread(path)))
    for modality in ("CT", "MR"):
        for seed in range(4):
            ds = make_image(PATIENTS[0], "FREE1", "20240115", "CT", 1, seed + 1, size=512)
            ds.Modality = modality
            ds.PixelData = anatomy_slice(512, 100 + seed, modality).tobytes()
            out.append((f"generated {modality} {seed}", ds))
    return out


def masked_share_text_free() -> dict[str, Any]:
    """What the pixel stage does to the text-free set, with the plan the pipeline makes
    (header risk: the header's plan; else, when the checkout screens every image, a screen
    plan; else the image is not looked at): the largest share of an image masked, how many
    images had any pixel masked, how many were held."""
    from sendit_ops.dicom.filters import load_filter_recipe
    from sendit_ops.dicom.pixels import PixelPlan, clean, identifier_matcher, plan_pixels
    from sendit_ops.dicom.pixels.codec import decode

    recipe = load_filter_recipe(None)
    settings = _settings(pixel_cleaning="ocr")
    screens = hasattr(settings, "pixel_screening")
    worst, masked, held, shares = 0.0, 0, 0, {}
    for name, ds in text_free_images():
        plan = plan_pixels(ds, recipe)
        if not plan.needed:
            if not screens:
                continue
            plan = PixelPlan(None, (), int(ds.Rows), int(ds.Columns))
        before = decode(ds).frames.copy()
        outcome = clean(ds, plan, settings, identifier_matcher([]))
        if not outcome.cleaned:
            held += 1
            continue
        after = decode(ds).frames
        share = float((before != after).reshape(before.shape[0], -1).any(axis=0).mean()) if (
            after.shape == before.shape) else 1.0  # fmt: skip
        shares[name] = round(share, 4)
        worst = max(worst, share)
        masked += share > 0
    named = ("bad_sequence.dcm", "eCT_Supplemental.dcm", "ctbrain1.dcm")
    return {
        "max_share": round(worst, 4),
        "images_masked": masked,
        "held": held,
        "named": {k: v for k, v in shares.items() if k in named},
    }


def screen_figures(root: Path, ct: Path, work: Path, rounds: int) -> dict[str, Any]:
    """The issue-22 figures, printed and returned for the JSON line."""
    out: dict[str, Any] = {}
    screen_ms = screen_ms_per_frame()
    out["screen_ms_per_frame"] = screen_ms["anatomy"]
    out["screen_ms_per_frame_noise"] = screen_ms["noise"]
    print(
        f"text screen: {screen_ms['anatomy']} ms per 512x512 16-bit CT slice with anatomy, "
        f"{screen_ms['noise']} ms on the corpus's noise (CPU, one core)"
    )
    anatomy = root / "anatomy"
    anatomy_corpus(anatomy)
    ratios = screening_ratios({"ct": ct, "anatomy": anatomy}, work, rounds)
    for name, r in ratios.items():
        out[f"screening_ratio_{name}"] = r["ratio"]
        out[f"screening_all_files_s_{name}"] = r["all_files_s"]
        out[f"screening_header_files_s_{name}"] = r["header_files_s"]
        print(
            f"CT pipeline ({name} corpus), pixel_screening all vs header: "
            f"{r['all_files_s']} vs {r['header_files_s']} files/s = {r['ratio']}x"
        )
    cine = cine_seconds()
    out["cine_120_s"] = round(cine["seconds"], 2)
    out["cine_120_peak_rss_mb"] = round(cine["peak_rss_mb"])
    print(
        f"120-frame 640x480 cine: {cine['seconds']:.1f} s ({cine['cpu_seconds']:.1f} s CPU), "
        f"peak RSS {cine['peak_rss_mb']:.0f} MB, delivered: {cine['cleaned']}"
    )
    free = masked_share_text_free()
    out["masked_share_text_free"] = free["max_share"]
    out["text_free_held"] = free["held"]
    print(
        f"text-free set: largest share masked {free['max_share']}, "
        f"{free['images_masked']} image(s) with masked pixels, {free['held']} held; "
        f"issue 22's three images: {free['named']}"
    )
    return out


def retrieval_mb_s(root: Path, input_dir: Path, rounds: int) -> dict[str, float]:
    """MB/s of retrieving the corpus's studies from a local Orthanc by each method (best of
    ``rounds``; the find step is not timed). The PACS and sendit share this machine's cores:
    a PACS elsewhere adds the network, and frees the cores."""
    from devtools.orthanc_server import free_port, start_orthanc
    from sendit_ops.pacs.job import RetrieveJob
    from sendit_ops.pacs.model import PacsConnection, RetrievePolicy, StudyRequest

    shutil.rmtree(root, ignore_errors=True)
    move_port = free_port()
    pacs = start_orthanc(root / "orthanc", {"sendit": ("SENDIT", "127.0.0.1", move_port)})
    try:
        pacs.upload(sorted(input_dir.rglob("*.dcm")))
        request = StudyRequest(date_from="19000101", date_to="21001231")
        rates: dict[str, float] = {}
        for _ in range(rounds):
            for method in ("c-get", "c-move", "dicomweb"):
                conn = PacsConnection(
                    "bench",
                    port=pacs.dicom_port,
                    called_ae=pacs.aet,
                    method=method,
                    move_port=move_port,
                    dicomweb_url=pacs.dicomweb_url,
                    timeout=60,
                )
                work = root / method
                shutil.rmtree(work, ignore_errors=True)
                job = RetrieveJob(conn, work / "work", work / "in", KEY, RetrievePolicy(1))
                keys = job.find(request).to_fetch
                start = time.perf_counter()
                results = job.retrieve(keys)
                seconds = time.perf_counter() - start
                if any(r.state != "RETRIEVED" for r in results):
                    raise SystemExit(f"bench: retrieval by {method} did not complete")
                rate = sum(r.bytes for r in results) / 1e6 / seconds
                rates[method] = max(rates.get(method, 0.0), rate)
        return rates
    finally:
        pacs.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--images", type=int, default=50, help="images per study")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each figure (best)")
    parser.add_argument("--big-mb", type=int, default=2000, help="size of the big RSS study")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "sendit-bench")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=[
            "naive",
            "rss",
            "scaleout",
            "parse",
            "history",
            "airflow",
            "pixels",
            "mixed",
            "screen",
            "retrieval",
        ],
    )
    parser.add_argument(
        "--airflow-run",
        default="40x3",
        metavar="STUDIESxIMAGES",
        help="size of the Airflow comparison's run (the issue's case: 40x3)",
    )
    parser.add_argument(
        "--airflow-settings",
        type=json.loads,
        default={},
        help="sendit settings for the Airflow run, e.g. '{\"chunk_size\": 10}'",
    )
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    input_dir = args.dir / "corpus"
    size = corpus(input_dir, args.studies, args.images)
    files = args.studies * args.images
    mb = size / 1e6
    print(
        f"corpus: {args.studies} CT studies x {args.images} images of 512x512 16-bit, "
        f"{files} files, {mb:.0f} MB ({input_dir})"
    )
    if "mixed" not in args.skip:
        mixed_dir = args.dir / "mixed"
        mixed_size, mixed_files, us_files = mixed_corpus(mixed_dir, args.studies, args.images)
        print(
            f"mixed corpus: {mixed_files - us_files} CT files and {us_files} ultrasound files "
            f"with burned-in text ({MIXED_US_FRAMES}-frame grey cines and RGB images), "
            f"{mixed_size / 1e6:.0f} MB ({mixed_dir})"
        )
    results: dict[str, float | None] = {}

    def report(name: str, seconds: float) -> float:
        rate = mb / seconds
        print(
            f"{name:<14} {files / seconds:7.1f} files/s {rate:7.1f} MB/s ({seconds:.1f} s, "
            f"best of {args.rounds})"
        )
        return round(rate, 2)

    work = args.dir / "work"
    shutil.rmtree(work, ignore_errors=True)
    # each figure is the best of --rounds runs, the runs of all figures interleaved: the
    # machine's speed drifts by +-20% over minutes, and the ratios compare figures taken at
    # different moments; the best run is the least disturbed one (as timeit reports)
    runs: dict[str, list[float]] = {}

    def timed(name: str, fn: Any) -> None:
        runs.setdefault(name, []).append(fn())

    for _ in range(args.rounds):
        shutil.rmtree(work / "pipeline", ignore_errors=True)
        timed("pipeline", lambda: run_pipeline(input_dir, work / "pipeline"))
        if "mixed" not in args.skip:
            shutil.rmtree(work / "mixed", ignore_errors=True)
            timed("mixed", lambda: run_pipeline(mixed_dir, work / "mixed"))
            cleaned = pixel_cleaned(work / "mixed")
            if cleaned != us_files:
                raise SystemExit(f"bench: {cleaned} of {us_files} ultrasound files pixel-cleaned")
        timed("plain pydicom", lambda: run_plain(input_dir, work))
        timed("plain, zlib", lambda: run_plain(input_dir, work, packer="zlib"))
        if "naive" not in args.skip:
            timed("naive deid", lambda: run_naive_deid(input_dir, work, "default"))
            timed("naive, recipe", lambda: run_naive_deid(input_dir, work, "sendit"))
    for name, key in (
        ("pipeline", "pipeline_mb_s"),
        ("plain pydicom", "plain_pydicom_mb_s"),
        ("plain, zlib", "plain_pydicom_zlib_mb_s"),
        ("naive deid", "naive_deid_mb_s"),
        ("naive, recipe", "naive_deid_sendit_recipe_mb_s"),
    ):
        if name in runs:
            results[key] = report(name, min(runs[name]))
    if "mixed" in runs:
        seconds = min(runs["mixed"])
        results["mixed_files_per_s"] = round(mixed_files / seconds, 1)
        results["mixed_mb_per_s"] = round(mixed_size / 1e6 / seconds, 2)
        print(
            f"{'mixed (10% US)':<14} {mixed_files / seconds:7.1f} files/s "
            f"{mixed_size / 1e6 / seconds:7.1f} MB/s ({seconds:.1f} s, best of {args.rounds}; "
            f"{us_files} ultrasound files masked and verified by OCR)"
        )
    pipeline = results["pipeline_mb_s"]
    for name, key in (
        ("naive deid", "naive_deid_mb_s"),
        ("naive deid, sendit's recipe", "naive_deid_sendit_recipe_mb_s"),
        ("plain pydicom", "plain_pydicom_mb_s"),
        ("plain pydicom + zlib", "plain_pydicom_zlib_mb_s"),
    ):
        if results.get(key):
            ratio = round(pipeline / results[key], 2)
            results["pipeline_vs_" + key.removesuffix("_mb_s")] = ratio
            print(f"pipeline / {name} = {ratio}x")
    if "retrieval" not in args.skip:
        if shutil.which("Orthanc"):
            rates = retrieval_mb_s(args.dir / "pacs", input_dir, args.rounds)
            for method, rate in rates.items():
                results[f"retrieval_{method.replace('-', '_')}_mb_s"] = round(rate, 2)
            print(
                "retrieval from a local Orthanc: "
                + ", ".join(f"{m} {r:.1f} MB/s" for m, r in rates.items())
                + f" (the pipeline: {pipeline:.1f} MB/s; the slower step bounds a request)"
            )
        else:
            print("retrieval: skipped (apt-get install orthanc orthanc-dicomweb)")
    if "scaleout" not in args.skip:
        results["scaleout_2w_ratio"] = round(scaleout(input_dir, work), 2)
        print(f"scale-out: 2 workers are {results['scaleout_2w_ratio']}x one worker")
    if "rss" not in args.skip:
        small = args.dir / "rss-small"
        corpus(small, 1, 40)  # ~21 MB
        big = args.dir / "rss-big"
        corpus(big, 1, max(40, args.big_mb * 1_000_000 // 525_000))
        rss_small = peak_rss_mb(small, work / "rss-small")
        rss_big = peak_rss_mb(big, work / "rss-big")
        results["rss_small_mb"], results["rss_big_mb"] = round(rss_small), round(rss_big)
        results["rss_ratio_2gb_vs_20mb"] = round(rss_big / rss_small, 2)
        print(
            f"peak RSS: {rss_small:.0f} MB for a 20 MB study, {rss_big:.0f} MB for a "
            f"{args.big_mb} MB study (ratio {results['rss_ratio_2gb_vs_20mb']})"
        )
    if "parse" not in args.skip:
        results["dag_parse_s"] = round(dag_parse_seconds(), 3)
        print(f"DAG file parse: {results['dag_parse_s']} s for 4 input folders")
    if "history" not in args.skip:
        hist = history_overhead(args.dir)
        for name, seconds in hist.items():
            results[f"history_{name}_s"] = round(seconds, 4)
        print(
            "with 20,000 old batch records in the ledger's database: discover's lookup "
            f"{hist['discover']:.4f} s, report's metrics.tsv {hist['report']:.3f} s "
            f"({hist['rebuild']:.2f} s to rebuild it from every record), "
            f"a watch poll {hist['poll']:.4f} s"
        )
    if "pixels" not in args.skip:
        timing = pixel_ms_per_frame()
        results["pixel_ms_per_frame"] = round(timing.wall_ms)
        results["pixel_cpu_ms_per_frame"] = round(timing.cpu_ms)
        print(
            f"pixel stage: {timing.wall_ms:.0f} ms per 512x512 ultrasound frame "
            f"({timing.cpu_ms:.0f} ms CPU; OCR detect, mask, re-encode, OCR verify; one core)"
        )
    if "screen" not in args.skip:
        results.update(screen_figures(args.dir, input_dir, work, args.rounds))
    if "airflow" not in args.skip:
        studies, images = (int(n) for n in args.airflow_run.lower().split("x"))
        af = airflow_overhead(args.dir / "airflow", studies, images, args.airflow_settings)
        results["in_process_s"] = round(af["steps_in_process"], 2)
        results["in_process_fused_s"] = round(af["fused_in_process"], 2)
        results["in_process_before_start_s"] = round(af["in_process_before_start"], 2)
        results["airflow_first_run_s"] = round(af["steps_first"], 2)
        results["airflow_s"] = round(af["steps_warm"], 2)
        results["airflow_overhead_ratio"] = round(af["steps_warm"] / af["steps_in_process"], 2)
        results["airflow_fused_s"] = round(af["fused_warm"], 2)
        results["airflow_overhead_ratio_fused"] = round(
            af["fused_warm"] / af["fused_in_process"], 2
        )
        print(
            f"{studies} studies x {images} images through a running scheduler (LocalExecutor), "
            "run queued to "
            f"end, median of {WARM_RUNS} warm runs against the median of the in-process runs "
            f"made between them: {af['steps_warm']:.1f} s vs {af['steps_in_process']:.1f} s "
            f"with a task per step ({results['airflow_overhead_ratio']}x; "
            f"{af['steps_first']:.1f} s for the first run after start), {af['fused_warm']:.1f} s "
            f"vs {af['fused_in_process']:.1f} s fused ({results['airflow_overhead_ratio_fused']}x)"
            f"; in-process before the stack started: {af['in_process_before_start']:.1f} s"
        )
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
