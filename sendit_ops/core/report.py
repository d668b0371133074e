"""Run summaries and sendit's ``export_metrics`` TSV, from the batch records (PHI-free)."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sendit_ops.core.atomic_files import write_atomic, write_json
from sendit_ops.core.ledger import Ledger
from sendit_ops.core.lifecycle import STATES, State
from sendit_ops.core.records import BatchRecord

TSV_COLUMNS = (
    "batch_id",
    "status",
    "size_mb",
    "start",
    "finish",
    "seconds",
    "minutes",
    "mb_per_min",
    "images",
    "reasons",
)


def _span(record: BatchRecord) -> tuple[float, float]:
    starts = [t[0] for t in record.times.values() if t and t[0]]
    ends = [t[1] for t in record.times.values() if len(t) > 1 and t[1]]
    return (min(starts), max(ends)) if starts and ends else (0.0, 0.0)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts else ""


def batch_metrics(record: BatchRecord) -> dict[str, Any]:
    """One batch's line: state, size, processing time and throughput (sendit's
    export_metrics). ``seconds`` is the batch's processing time, the sum of its steps' own
    times (``step_seconds``); ``span_seconds`` the wall time from its first step's start
    to its last step's end, which in a staged run also holds the waits between steps."""
    start, finish = _span(record)
    seconds = record.processing_seconds()
    size_mb = record.metrics.get("bytes_in", 0) / 1e6
    return {
        "batch_id": record.key,
        "status": record.state,
        "size_mb": round(size_mb, 3),
        "start": _iso(start),
        "finish": _iso(finish),
        "seconds": seconds,
        "minutes": round(seconds / 60, 4),
        "mb_per_min": round(size_mb / (seconds / 60), 2) if seconds > 0 else 0.0,
        "span_seconds": round(max(finish - start, 0.0), 3),
        "step_seconds": record.step_seconds(),
        "map_index": dict(record.map_index),
        "images": record.metrics.get("images_accepted", 0) - record.metrics.get("images_held", 0),
        "pixel_cleaned": record.metrics.get("images_pixel_cleaned", 0),
        "held": [
            {
                "file": h["file"],
                "reason": h.get("held_reason") or "",
                "boxes": [[b["x0"], b["y0"], b["x1"], b["y1"]] for b in h.get("boxes", [])],
                "thumbnail": h.get("thumbnail", ""),
            }
            for h in record.outputs.held or []
        ],
        "reasons": "; ".join(record.reasons),
    }


def summarize(
    records: Iterable[BatchRecord],
    run_id: str,
    notes: Sequence[str] = (),
    wall: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The run summary: counts per state, totals, and one line per batch.

    Two times, kept apart: ``batch_seconds`` adds up the batches' processing times (the
    work done, whatever ran in parallel or waited), ``wall_seconds`` is the run's elapsed
    time, from ``wall`` (the run's start and end, epoch seconds) or else from the first
    batch step's start to the last one's end; the run's throughput ``mb_per_min`` is the
    input MB over that wall time."""
    lines = [batch_metrics(r) for r in records]
    counts = Counter(line["status"] for line in lines)
    total_mb = sum(line["size_mb"] for line in lines)
    spans = [(line["start"], line["finish"]) for line in lines if line["start"]]
    seconds = sum(line["seconds"] for line in lines)
    first = min((s for s, _ in spans), default="")
    last = max((f for _, f in spans), default="")
    if wall is not None:
        started, ended = wall
    elif first and last:
        started = datetime.fromisoformat(first).timestamp()
        ended = datetime.fromisoformat(last).timestamp()
    else:
        started = ended = 0.0
    wall_seconds = round(max(ended - started, 0.0), 3)
    return {
        "run_id": run_id,
        "batches": len(lines),
        "states": {s: counts.get(s, 0) for s in STATES if counts.get(s)},
        "images_delivered": sum(line["images"] for line in lines if line["status"] == State.DONE),
        "images_pixel_cleaned": sum(
            line["pixel_cleaned"] for line in lines if line["status"] == State.DONE
        ),
        "images_held": sum(len(line["held"]) for line in lines),
        "size_mb": round(total_mb, 3),
        "batch_seconds": round(seconds, 3),
        "wall_seconds": wall_seconds,
        "started": _iso(started),
        "ended": _iso(ended),
        "mb_per_min": round(total_mb / (wall_seconds / 60), 2) if wall_seconds > 0 else 0.0,
        "first_start": first,
        "last_finish": last,
        "notes": list(notes),
        "batch_lines": lines,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable summary for logs and the CLI."""
    states = ", ".join(f"{k} {v}" for k, v in summary["states"].items()) or "no batches"
    out = [
        f"sendit run {summary['run_id']}: {summary['batches']} batch(es): {states}",
        f"  {summary['images_delivered']} images delivered, {summary['size_mb']:.1f} MB in; "
        f"run wall time {summary.get('wall_seconds', 0.0):.1f} s, "
        f"{summary['mb_per_min']:.1f} MB/min; "
        f"batch processing {summary['batch_seconds']:.2f} s in all (each batch's own steps)",
    ]
    if summary.get("images_pixel_cleaned") or summary.get("images_held"):
        out.append(
            f"  burned-in text: {summary.get('images_pixel_cleaned', 0)} delivered image(s) "
            f"masked and verified by OCR, {summary.get('images_held', 0)} held back"
        )
    for line in summary["batch_lines"]:
        reason = f"  ({line['reasons']})" if line["reasons"] else ""
        out.append(
            f"  {line['batch_id']}  {line['status']:<14} {line['images']:>4} images "
            f"{line['size_mb']:>8.2f} MB {line['seconds']:>7.2f} s processing{reason}"
        )
    for line in summary["batch_lines"]:
        for held in line.get("held", []):
            out.append(
                f"  held {line['batch_id']}/{held['file']}: {held['reason']} "
                f"({len(held['boxes'])} masked box(es); "
                + (
                    "masked thumbnail on the batches page and in the batch's review folder)"
                    if held.get("thumbnail")
                    else "no picture: the image could not be decoded)"
                )
            )
    out += [f"  note: {n}" for n in summary["notes"]]
    return "\n".join(out)


def safe_name(run_id: str) -> str:
    """A run id usable as a folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def write_run_report(ledger: Ledger, summary: dict[str, Any]) -> Path:
    """Write ``runs/<run>/summary.json`` and merge the run's batches into ``metrics.tsv``."""
    folder = ledger.root / "runs" / safe_name(summary["run_id"])
    write_json(folder / "summary.json", summary)
    write_atomic(folder / "summary.txt", format_summary(summary) + "\n", mode=0o644)
    refresh_metrics(ledger, summary["batch_lines"])
    return folder


def refresh_metrics(ledger: Ledger, lines: Iterable[dict[str, Any]]) -> None:
    """Update ``metrics.tsv`` (one line per batch ever seen, by batch id) with ``lines``.

    The file itself is read and rewritten, not every batch record: a run's report costs one
    sequential read, not one file per batch the ledger ever kept (20,000 records took ~1 s
    to read, warm). When the file is missing, unreadable or has other columns, it is
    rebuilt from the records."""
    path = ledger.root / "metrics.tsv"
    rows = _read_metrics(path)
    if rows is None:
        rows = {r.key: batch_metrics(r) for r in ledger.all()}
    rows.update((line["batch_id"], line) for line in lines)
    write_atomic(path, _tsv(rows[k] for k in sorted(rows)), mode=0o644)


def _read_metrics(path: Path) -> dict[str, dict[str, Any]] | None:
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            if tuple(reader.fieldnames or ()) != TSV_COLUMNS:
                return None
            return {row["batch_id"]: row for row in reader}
    except (OSError, csv.Error, UnicodeDecodeError):
        return None


def _tsv(lines: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, TSV_COLUMNS, delimiter="\t", lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows(lines)
    return buf.getvalue()
