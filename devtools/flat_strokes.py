"""The screen's flat-stroke masks (issue 22, ``screen.flat_strokes``): what they cost and
what they find, before/after in one process, interleaved (the machine's load falls on both).

- *cost*: on text-free ultrasound speckle frames (``sample_data.ultrasound_picture``,
  640x480) and on frames of the real ultrasound images the tests use (pydicom-data,
  deid-data: much text), the screen's regions, the gate's passes (``ocr.gate_regions`` on
  the frame's rendering) and the screen's CPU ms a frame (median of ``--repeats``), without
  the flat masks ("before") and with them ("after");
- *found*: on the ultrasound cases of ``stage_recall`` with dark text (level 0 or 20 of
  255), the regions on the line's ink, those the gate passes, and what the window reads
  (``ocr.read_window``) read there: on the frame's rendering (as the stage reads) and on
  the *flat view* of each flat value (black where the frame is at that value, white
  elsewhere), on which the stage reads flat-stroke regions (``screen.flat_view``).

    .venv/bin/python -m devtools.flat_strokes --frames 10 --repeats 5

Read texts are printed: the planted lines are made-up identifiers (never run it on real
data).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from devtools.gate_recall import TESTS, planted_case


def _real_frames() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, grey view, RGB rendering) of one frame of each real ultrasound image."""
    import deid_data
    import pydicom
    from pydicom.data import get_testdata_file

    from sendit_ops.dicom.pixels.codec import decode
    from sendit_ops.dicom.pixels.display import Display

    deid = Path(deid_data.__file__).parent / "data" / "ultrasounds"
    sets = [(Path(p).name, pydicom.dcmread(p)) for p in (
        deid / "GREYSCALE_IMAGE.dcm", deid / "RGB_IMAGE.dcm", get_testdata_file("US1_UNCR.dcm"),
        get_testdata_file("gdcm-US-ALOKA-16.dcm"), get_testdata_file("OBXXXX1A.dcm"))]  # fmt: skip
    with zipfile.ZipFile(deid / "GREYSCALE_CINE.zip") as archive:
        name = next(n for n in archive.namelist() if not n.endswith("/"))
        sets.append(("GREYSCALE_CINE", pydicom.dcmread(io.BytesIO(archive.read(name)))))
    out = []
    for name, ds in sets:
        decoded = decode(ds)
        display = Display(decoded, ds)
        frames = decoded.frames
        single = frames.ndim == 2 or (frames.ndim == 3 and ds.get("SamplesPerPixel", 1) == 3)
        stack = frames[np.newaxis] if single else frames
        out.append((name, display.gray(stack[0]), display.render(stack[:1])[0]))
    return out


def _screen(gray: np.ndarray, flat: bool) -> tuple[list[Any], float]:
    from sendit_ops.dicom.pixels import screen

    keep = screen.flat_strokes
    if not flat:
        screen.flat_strokes = lambda gray, seen=None: []  # type: ignore[assignment]
    try:
        start = time.process_time()
        boxes = screen.candidates(gray, 0)
        return boxes, 1000 * (time.process_time() - start)
    finally:
        screen.flat_strokes = keep  # type: ignore[method-assign]


def cost(frames: int, repeats: int) -> dict[str, Any]:
    from sendit_ops.dicom.pixels import ocr
    from sendit_ops.sample_data import ultrasound_picture

    speckle = []
    for seed in range(frames):
        gray = ultrasound_picture(480, 640, seed)
        speckle.append((f"speckle {seed}", gray, np.repeat(gray[..., None], 3, -1)))
    groups = {"text-free speckle 640x480": speckle, "real ultrasound": _real_frames()}
    report: dict[str, Any] = {}
    for group, items in groups.items():
        rows = {}
        for name, gray, rgb in items:
            row: dict[str, Any] = {}
            for when, flat in (("before", False), ("after", True)):
                boxes, _ = _screen(gray, flat)
                passed = sum(ocr.gate_regions(rgb, boxes)) if boxes else 0
                row[when] = {"regions": len(boxes), "passed": int(passed), "ms": []}
            for n in range(repeats):
                for when in ("before", "after") if n % 2 == 0 else ("after", "before"):
                    row[when]["ms"].append(_screen(gray, when == "after")[1])
            for when in ("before", "after"):
                row[when]["ms"] = round(float(np.median(row[when]["ms"])), 2)
            rows[name] = row
        mean = {
            when: {k: round(float(np.mean([r[when][k] for r in rows.values()])), 2)
                   for k in ("regions", "passed", "ms")}
            for when in ("before", "after")
        }  # fmt: skip
        report[group] = {"per_frame_mean": mean, "frames": rows}
    return report


def found(lines: int, start: int, seed: int) -> list[dict[str, Any]]:
    from devtools.gate_recall import _views
    from sendit_ops.dicom.pixels import ocr, screen

    rng = np.random.default_rng(seed)
    out = []
    for n in range(start + lines):
        case = planted_case(n, rng)
        level = int(case["label"].split(" level ")[1].split()[0])
        if n < start or not case["label"].startswith("ultrasound") or level > 128:
            continue
        if case["shows"].sum() < 20:
            continue
        gray, rgb = _views(case["modality"], case["picture"])
        shows = case["shows"]
        boxes = [b for b in screen.candidates(gray, 0) if shows[b.y0 : b.y1, b.x0 : b.x1].any()]
        passed = [b for b, ok in zip(boxes, ocr.gate_regions(rgb, boxes) if boxes else [],
                                     strict=True) if ok]  # fmt: skip
        reads: dict[str, list[str]] = {"rendering": []}
        views = {"rendering": rgb}
        for value in screen.flat_values(gray)[:2]:
            flat = np.where(gray == value, 0, 255).astype(np.uint8)
            views[f"flat view {value}"] = np.repeat(flat[..., None], 3, -1)
        flat_gate = {}
        for name, view in views.items():
            reads[name] = [h.text for w in ocr.windows(passed, *rgb.shape[:2])
                           for h in ocr.read_window(view, w)]  # fmt: skip
            if name != "rendering":
                flat_gate[name] = int(sum(ocr.gate_regions(view, boxes))) if boxes else 0
        out.append({"case": f"{n}: {case['label']}", "regions_on_ink": len(boxes),
                    "gate_passed": len(passed), "flat_view_gate_passed": flat_gate,
                    "reads": reads})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--start", type=int, default=60)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(TESTS))
    import cv2

    from sendit_ops.dicom.pixels import ocr

    cv2.setNumThreads(1)
    ocr.engine()  # models loaded before any clock
    report = {"cost": cost(args.frames, args.repeats),
              "dark_ultrasound": found(args.lines, args.start, args.seed)}  # fmt: skip
    print(json.dumps(report, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
