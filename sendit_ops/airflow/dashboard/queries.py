"""What the dashboard shows, queried from each DAG's ledger: rows, totals, throughput, the
batches being worked on and the images held for review.

Each view is a few indexed queries on the ledgers' databases (``sendit_batches`` is indexed
by ledger, state and change time), never a read of whole records for the history: a page
costs what it shows, whatever the number of batches ever processed. Whole records are read
only for the few batches whose stage or held images are shown.

Everything returned is PHI-free by construction: batch ids are keyed hashes, reasons name
rules and tags, and the columns read here exclude ``source_path`` (the folder name, often an
accession number) and ``data`` (the whole record). Held images carry their output file name,
reason and masked boxes, never the text OCR read.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sendit_ops.airflow.config import read_input_folders, server_settings
from sendit_ops.core.ledger import Ledger
from sendit_ops.core.lifecycle import BATCH_STEPS, STATES, Stage, State, Step
from sendit_ops.core.records import BatchRecord
from sendit_ops.dicom.pixels.thumbnail import UNMASKED

RUNNING_STATES = (State.QUEUE, State.PROCESSING, State.DONEPROCESSING)
THROUGHPUT_HOURS = 48  # the chart's window when none is given
BUCKET_MINUTES = (1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
MAX_BUCKETS = 240  # a window longer than this many hours is drawn in wider buckets
FIT_BARS = 60  # the default range (fitted to the data) is drawn in at most this many bars
RUNNING_LIMIT = 100  # per DAG and state: a run registers all its batches QUEUE at once
HELD_LIMIT = 50  # held batches shown with thumbnails, per DAG
LAST_INSTANT = 253402300800  # 10000-01-01: a bound past it is a typing error

# the pipeline's steps as they appear in reasons ("filter: …") -> the task that ran them
STEP_TASKS = {
    "steps": {s.value: s.task_id for s in (*BATCH_STEPS, Step.DELIVER)},
    "fused": {s.value: Step.PROCESS.task_id for s in (*BATCH_STEPS, Step.DELIVER)},
}
MAPPED_TASKS = frozenset({s.task_id for s in BATCH_STEPS} | {Step.PROCESS.task_id})
# outputs.stage of a PROCESSING batch -> what it has done, and what comes next
STAGES = {
    Stage.NEW: "being filtered",
    Stage.FILTERED: "filtered; pseudonyms next",
    Stage.PSEUDONYMIZED: "pseudonymized; headers next",
    Stage.ANONYMIZED: "anonymized; packaging next",
    Stage.PACKAGED: "packaged; verification next",
}


class BadQuery(ValueError):
    """A filter the dashboard cannot apply (an unreadable date, an unknown time zone)."""


# ---- time --------------------------------------------------------------------------------


def zone(name: str | None) -> tzinfo:
    """The browser's time zone (IANA name) for dates typed without one; UTC by default."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadQuery(f"unknown time zone {name!r}") from exc


def instant(text: str | None, tz: tzinfo = UTC, end: bool = False) -> float | None:
    """A filter bound as a POSIX time: epoch seconds, an ISO 8601 time (one without an offset
    is in ``tz``, the browser's zone) or a date, which as an upper bound (``end``) means the
    end of that day: "from 1 March to 7 March" includes the 7th."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        return _in_range(number, text)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    try:
        if day is not None:
            start = datetime(day.year, day.month, day.day, tzinfo=tz)
            ts = (start + timedelta(days=1) if end else start).timestamp()
        else:
            when = datetime.fromisoformat(text)
            ts = (when if when.tzinfo else when.replace(tzinfo=tz)).timestamp()
    except (ValueError, OverflowError) as exc:
        raise BadQuery(f"not a date or time: {text!r}") from exc
    return _in_range(ts, text)


def _in_range(ts: float, text: str) -> float:
    if not 0 <= ts < LAST_INSTANT:
        raise BadQuery(f"not a date or time sendit could have seen: {text!r}")
    return ts


def iso(ts: float) -> str:
    """A POSIX time as ISO 8601 UTC to the second (microseconds help no reader)."""
    return datetime.fromtimestamp(int(ts), UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Window:
    """The time window of a view: ``[since, until)`` in POSIX seconds, open when None."""

    since: float | None = None
    until: float | None = None

    @classmethod
    def parse(cls, since: str | None, until: str | None, tz: str | None = None) -> Window:
        """The window typed in the page's filters (or given to the JSON API)."""
        where = zone(tz)
        window = cls(instant(since, where), instant(until, where, end=True))
        if window.since is not None and window.until is not None and window.until <= window.since:
            raise BadQuery("the end of the time window is before its start")
        return window

    def as_json(self) -> dict[str, str | None]:
        """The window's bounds for JSON answers."""
        return {
            "since": iso(self.since) if self.since is not None else None,
            "until": iso(self.until) if self.until is not None else None,
        }


# ---- ledgers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One DAG's ledger and the task layout its DAG was built with (for log links)."""

    ledger: Ledger
    task_layout: str

    @property
    def dag_id(self) -> str:
        """The DAG of this ledger."""
        return self.ledger.dag_id


def sources(dag_id: str | None = None) -> list[Source]:
    """The ledgers of the configured DAGs that have a database (no run yet: none), found
    with the tasks' own settings resolver so the dashboard reads what the tasks write."""
    found = []
    for folder in read_input_folders():
        if dag_id and folder.dag_id != dag_id:
            continue
        settings = server_settings(folder)
        ledger = Ledger(settings.work_root, folder.dag_id, settings.ledger_url)
        if ledger.has_database():
            found.append(Source(ledger, settings.task_layout))
    return found


def _sources(dag_id: str | None, found: list[Source] | None) -> list[Source]:
    # ``found``: the sources a page already resolved (the settings Variable is read from
    # the metadata database once per view, not once per section)
    return found if found is not None else sources(dag_id)


def dag_ids() -> list[str]:
    """Every configured sendit DAG (for the page's DAG filter), ledger or not."""
    return [folder.dag_id for folder in read_input_folders()]


# ---- links into the Airflow UI -----------------------------------------------------------


def run_path(dag_id: str, run_id: str) -> str:
    """A DAG run's page in the Airflow UI, relative to the UI's base URL."""
    return f"dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}" if run_id else ""


def log_task(source: Source, state: str, reasons: list[str]) -> str:
    """The task whose log tells most about the batch: for a DONE batch the task that
    delivered it, for an ERROR the task of the step named in its reason ("filter: …"),
    else ``report`` (the run summary lists every batch with its state and reasons)."""
    if state == State.DONE:
        return STEP_TASKS.get(source.task_layout, STEP_TASKS["steps"])["deliver"]
    if reasons:
        step = reasons[-1].split(":", 1)[0].strip()
        task = STEP_TASKS.get(source.task_layout, STEP_TASKS["steps"]).get(step)
        if task:
            return task
    return Step.REPORT.task_id


def log_path(dag_id: str, run_id: str, task_id: str, chunks: dict[str, int] | None = None) -> str:
    """A task's page (its log) in the Airflow UI. For a mapped task, the instance that ran
    the batch: ``chunks`` is the record's ``map_index`` (step -> map index of the chunk that
    ran it); a record without one (written before it was kept) links the list of chunks."""
    if not run_id:
        return ""
    path = f"{run_path(dag_id, run_id)}/tasks/{quote(task_id, safe='')}"
    if task_id not in MAPPED_TASKS:
        return path
    # the steps that ran in this task (in the fused layout all of them: the same chunk)
    steps = {s.value for s in (*BATCH_STEPS, Step.DELIVER) if s.task_id == task_id}
    if task_id == Step.PROCESS.task_id:
        steps = {s.value for s in (*BATCH_STEPS, Step.DELIVER)}
    found = [index for step, index in (chunks or {}).items() if step in steps]
    return f"{path}/mapped/{found[-1]}" if found else f"{path}/mapped"


# ---- batches -----------------------------------------------------------------------------


def _reasons(raw: str | None) -> list[str]:
    return json.loads(raw) if raw and raw != "[]" else []


def _row(source: Source, r: dict[str, Any]) -> dict[str, Any]:
    """A ledger summary (``Ledger.summaries``) as the page's PHI-free row."""
    reasons = _reasons(r["reasons"])
    task = log_task(source, r["state"], reasons)
    run_id = r["run_id"]
    return {
        "dag_id": source.dag_id,
        "batch_id": r["key"],
        "state": r["state"],
        "images": r["images"],
        "images_found": r["images_found"],
        "size_mb": round(r["bytes_in"] / 1e6, 3),
        "reasons": reasons,
        "warnings": r["warnings"],
        "run_id": run_id,
        "changed": iso(r["changed"]) if r["changed"] else "",
        "changed_ts": int(r["changed"] or 0),
        "object": r["object_name"],
        "run_path": run_path(source.dag_id, run_id),
        "log_task": task if run_id else "",
        "log_path": log_path(source.dag_id, run_id, task, json.loads(r["data"]).get("map_index")),
    }


def batch_rows(
    state: str | None = None,
    dag_id: str | None = None,
    limit: int | None = None,
    window: Window | None = None,
    *,
    found: list[Source] | None = None,
) -> list[dict[str, Any]]:
    """The newest ``limit`` batch records (all by default) of the configured DAGs as
    PHI-free rows, newest change first, changed inside ``window``: queried from the
    ledgers' databases, no cache of their own (a state change shows on the next view)."""
    window = window or Window()
    rows = []
    for source in _sources(dag_id, found):
        summaries = source.ledger.summaries(state, limit, window.since, window.until)
        rows += [_row(source, r) for r in summaries]
    rows.sort(key=lambda r: r["changed_ts"], reverse=True)
    return rows if limit is None else rows[:limit]


def _state_sums(source: Source, window: Window) -> dict[str, dict[str, Any]]:
    return {
        state: {"batches": n, "images": images, "bytes": size}
        for state, (n, images, size) in source.ledger.totals(window.since, window.until).items()
    }


def _total(dag_id: str | None, by_state: dict[str, dict[str, Any]]) -> dict[str, Any]:
    states = {
        s: {
            "batches": by_state[s]["batches"],
            "images": by_state[s]["images"],
            "mb": round(by_state[s]["bytes"] / 1e6, 3),
        }
        for s in STATES
        if s in by_state
    }
    total = {
        "batches": sum(v["batches"] for v in by_state.values()),
        "images": sum(v["images"] for v in by_state.values()),
        "mb": round(sum(v["bytes"] for v in by_state.values()) / 1e6, 3),
        "states": states,
    }
    return total if dag_id is None else {"dag_id": dag_id, **total}


def totals(
    dag_id: str | None = None, window: Window | None = None, *, found: list[Source] | None = None
) -> dict[str, Any]:
    """Per DAG and over all of them: batches, images and MB (input size) in each state,
    for the batches whose last change is inside ``window`` (one GROUP BY per ledger)."""
    window = window or Window()
    dags: list[dict[str, Any]] = []
    everything: dict[str, Any] = {}
    for source in _sources(dag_id, found):
        sums = _state_sums(source, window)
        dags.append(_total(source.dag_id, sums))
        for state, v in sums.items():
            acc = everything.setdefault(state, {"batches": 0, "images": 0, "bytes": 0})
            for k in acc:
                acc[k] += v[k]
    return {**window.as_json(), "dags": dags, "total": _total(None, everything)}


def batch_counts(
    dag_id: str | None = None, window: Window | None = None, *, found: list[Source] | None = None
) -> dict[str, int]:
    """Batches per state over the configured DAGs."""
    sums = totals(dag_id, window, found=found)["total"]["states"]
    return {s: v["batches"] for s, v in sums.items()}


# ---- throughput --------------------------------------------------------------------------


def bucket_minutes(window: Window, wanted: int | None = None) -> int:
    """The chart's bucket: ``wanted`` (one of BUCKET_MINUTES), else an hour, widened so a
    long window is still at most MAX_BUCKETS bars."""
    span_min = ((window.until or 0) - (window.since or 0)) / 60
    if wanted is not None:
        if wanted not in BUCKET_MINUTES:
            raise BadQuery(f"bucket must be one of {', '.join(map(str, BUCKET_MINUTES))} minutes")
        if span_min / wanted > 10 * MAX_BUCKETS:
            raise BadQuery("too many buckets for this window: choose wider buckets")
        return wanted
    for minutes in BUCKET_MINUTES:
        if minutes >= 60 and span_min / minutes <= MAX_BUCKETS:
            return minutes
    if span_min / BUCKET_MINUTES[-1] > 10 * MAX_BUCKETS:
        raise BadQuery("the time window is too long for the chart: choose a shorter one")
    return BUCKET_MINUTES[-1]


def _bucket_start(ts: float, size: int, tz: tzinfo) -> int:
    """The start of the bucket holding ``ts``: buckets follow the wall clock of ``tz`` (a
    day starts at local midnight, an hour on the hour even in a +05:30 zone)."""
    t = int(ts)
    offset = int(datetime.fromtimestamp(t, tz).utcoffset().total_seconds())  # type: ignore[union-attr]
    return (t + offset) // size * size - offset


def _bucket_starts(since: float, until: float, size: int, tz: tzinfo) -> list[int]:
    starts, t = [], _bucket_start(since, size, tz)
    while t < until:
        starts.append(t)
        nxt = _bucket_start(t + size, size, tz)
        if nxt <= t:  # a 25-hour day (daylight saving time ends): its next midnight
            nxt = _bucket_start(t + size + 3600, size, tz)
        t = nxt
    return starts


def fitted_bucket(span_seconds: float) -> int:
    """The narrowest bucket that draws ``span_seconds`` in at most FIT_BARS bars: a
    one-minute run is a few one-minute bars, not two days of empty hours."""
    for minutes in BUCKET_MINUTES:
        if span_seconds / (minutes * 60) <= FIT_BARS:
            return minutes
    return BUCKET_MINUTES[-1]


def throughput(
    dag_id: str | None = None,
    window: Window | None = None,
    bucket: int | None = None,
    tz: str | None = None,
    now: float | None = None,
    *,
    found: list[Source] | None = None,
) -> dict[str, Any]:
    """Delivered work over time: the DONE batches bucketed by their change time (when they
    were delivered), with MB (input size) per minute and images per hour averaged over each
    bucket. Empty buckets are listed too, so the chart has a true time axis.

    Without a start the range fits the data: from the first delivery of the last
    THROUGHPUT_HOURS hours up to now, in buckets narrow enough for that span (the whole
    THROUGHPUT_HOURS in hours when nothing was delivered)."""
    now = time.time() if now is None else now
    window = window or Window()
    until = window.until if window.until is not None else now
    since = window.since if window.since is not None else until - THROUGHPUT_HOURS * 3600
    points = [
        p
        for source in _sources(dag_id, found)
        for p in source.ledger.delivered_over_time(since, until)
    ]
    if window.since is None and points and bucket is None:
        first = min(changed for changed, _, _ in points)
        bucket = fitted_bucket(until - first)
        since = max(since, first - first % (bucket * 60))
    window = Window(since, until)
    minutes = bucket_minutes(window, bucket)
    size, where = minutes * 60, zone(tz)
    starts = _bucket_starts(since, until, size, where)
    sums = {s: [0, 0, 0] for s in starts}  # batches, images, bytes
    for changed, images, size_in in points:
        acc = sums.get(_bucket_start(changed, size, where))
        if acc is not None:
            acc[0] += 1
            acc[1] += images
            acc[2] += size_in
    out: list[dict[str, Any]] = [
        {
            "start": iso(s),
            "start_ts": s,
            "batches": n,
            "images": images,
            "mb": round(size_in / 1e6, 3),
            "mb_per_min": round(size_in / 1e6 / minutes, 4),
            "images_per_h": round(images * 60 / minutes, 2),
        }
        for s, (n, images, size_in) in sums.items()
    ]
    hours = (until - since) / 3600
    mb = sum(b["mb"] for b in out)
    images = sum(b["images"] for b in out)
    return {
        **window.as_json(),
        "bucket_minutes": minutes,
        "buckets": out,
        "total": {
            "batches": sum(b["batches"] for b in out),
            "images": images,
            "mb": round(mb, 3),
            "mb_per_min": round(mb / (hours * 60), 4) if hours else 0.0,
            "images_per_h": round(images / hours, 2) if hours else 0.0,
        },
    }


# ---- batches being worked on -------------------------------------------------------------


def stage(record: BatchRecord) -> dict[str, Any]:
    """Where a batch in QUEUE, PROCESSING or DONEPROCESSING is: what it has done and what
    comes next, and the last step it finished. A step's start is saved only with its
    result, so the ledger knows the steps done, not the one running now."""
    finished = [(t[1], step) for step, t in record.times.items() if len(t) > 1 and t[1]]
    last_at, last = max(finished) if finished else (0.0, "")
    if record.state == State.QUEUE:
        label = "queued"
    elif record.state == State.DONEPROCESSING:
        label = "packaged and verified; delivery next"
    else:
        label = STAGES.get(Stage(record.outputs.stage), "in progress")
    return {
        "stage": str(record.outputs.stage),
        "label": label,
        "last_step": last,
        "last_step_at": iso(last_at) if last_at else "",
        "last_step_ts": int(last_at),
    }


def running(
    dag_id: str | None = None, limit: int = RUNNING_LIMIT, *, found: list[Source] | None = None
) -> list[dict[str, Any]]:
    """The batches in QUEUE, PROCESSING or DONEPROCESSING with their stage, oldest change
    first (the one waiting longest on top); at most ``limit`` per DAG and state."""
    out = []
    for source in _sources(dag_id, found):
        for state in RUNNING_STATES:
            for r in source.ledger.summaries(state, limit, oldest_first=True):
                record = source.ledger.get(r["key"])
                if record is None:  # changed since the query: on the next view
                    continue
                row = _row(source, r)
                out.append({**row, **stage(record)})
    out.sort(key=lambda r: r["changed_ts"])
    return out


# ---- held for review -----------------------------------------------------------------------

BATCH_ID = re.compile(r"^b[0-9a-f]{15}$")


def find(batch_id: str) -> tuple[Ledger, BatchRecord] | None:
    """The ledger and record of a batch id (None: no such batch in any DAG)."""
    if not BATCH_ID.match(batch_id):
        return None
    for source in sources():
        record = source.ledger.get(batch_id)
        if record is not None:
            return source.ledger, record
    return None


def review_files(record: BatchRecord) -> set[str]:
    """The names of the thumbnails a batch record lists (the only files the dashboard
    serves from its review folder)."""
    names = set()
    for h in record.outputs.held or []:
        names.add(h.get("thumbnail") or "")
        names.update(s.get("file") or "" for s in h.get("strip") or [])
    return names - {""}


def held_images(record: BatchRecord) -> list[dict[str, Any]]:
    """A held batch's images for a reviewer: file (output name), why, the masked boxes,
    the image's size, the thumbnail's URL and the frame strip (each shown frame's number,
    URL and boxes; ``not_shown`` frames left out by the pixel stage's cap), URLs relative to
    the dashboard; never the text OCR read, never a source path."""
    base = f"review/{record.key}/"

    def box(b: dict[str, Any]) -> list[int]:
        return [b["x0"], b["y0"], b["x1"], b["y1"]]

    return [
        {
            "file": h["file"],
            "reason": h.get("held_reason") or "",
            "risk": h.get("risk", ""),
            "frames": h.get("frames", 0),
            "rows": int(h.get("rows") or 0),
            "columns": int(h.get("columns") or 0),
            "boxes": [box(b) for b in h.get("boxes", [])],
            "masked_share": float(h.get("masked_share") or 0.0),
            "thumbnail": base + h["thumbnail"] if h.get("thumbnail") else "",
            "strip": [
                {
                    "frame": int(s["frame"]),
                    "url": base + s["file"],
                    "boxes": [box(b) for b in s.get("boxes", [])],
                    "unmasked": sum(b.get("source") in UNMASKED for b in s.get("boxes", [])),
                    # text was read on this frame (else: one of the sample of the others)
                    "found": any(b.get("frame") == s["frame"] for b in s.get("boxes", [])),
                }
                for s in h.get("strip") or []
            ],
            "not_shown": int(h.get("frames_not_shown") or 0),
        }
        for h in record.outputs.held or []
    ]


def held(
    dag_id: str | None = None, limit: int = HELD_LIMIT, *, found: list[Source] | None = None
) -> list[dict[str, Any]]:
    """The HELD batches (newest first, at most ``limit`` per DAG) with their images, for
    the review section."""
    out = []
    for source in _sources(dag_id, found):
        for r in source.ledger.summaries(State.HELD, limit):
            record = source.ledger.get(r["key"])
            if record is not None:
                review = record.outputs.review or {}
                out.append({**_row(source, r), "held": held_images(record), "review": review})
    out.sort(key=lambda r: r["changed_ts"], reverse=True)
    return out
