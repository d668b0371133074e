"""Recall of the whole pixel stage on planted lines (issue 22): what ``stage.clean`` does
with each line, not only whether the screen and the gate find it (``gate_recall``).

The cases are ``gate_recall``'s (one random line of identifying text per picture: the
tests' fonts and others, Latin and Japanese, 8-40 px, bright and dark, a third turned by
90 degrees, on CT and MR slices with anatomy, a radiograph and an ultrasound picture),
each made into the acquisition the tests make and cleaned as the pipeline cleans it
(screening all, the header plan when the header says the image is risky). A line is

- ``covered``: delivered with at least COVERED of its visible ink inside the masks;
- ``held``: the image was held (with a reason a reviewer sees);
- ``missed``: delivered with less of it masked (the share is listed).

For each delivered image the independent reader (rapidocr with its own defaults, as the
tests read) also reads the output: ``readable`` counts images in which it still reads a
string naming one of the planted identifiers. Figures by picture kind and polarity
(bright: the line's level above half the range; dark: below).

    .venv/bin/python -m devtools.stage_recall --lines 200 --start 60
    .venv/bin/python -m devtools.stage_recall --lines 200 --start 60 --kinds ultrasound

Needs the test helpers (tests/) and the fonts ``gate_recall`` names; minutes on one core
(a case costs ~0.5-1 s).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

import numpy as np

from devtools.gate_recall import KINDS, TESTS, planted_case

COVERED = 0.95  # the planted-text tests' share (tests/test_pixel_screen.py)


def _outcome(case: dict[str, Any]) -> dict[str, Any]:
    """``stage.clean`` on one case: covered / held / missed, the masked share of the
    line's visible ink, and whether the independent reader still reads an identifier."""
    from pixel_images import acquisition
    from test_pixel_screen import IDENTIFIERS, SETTINGS, inside, plan_for, readable

    from sendit_ops.dicom.pixels import stage

    ds = acquisition(case["modality"], case["picture"])
    outcome = stage.clean(ds, plan_for(ds), SETTINGS, IDENTIFIERS)
    if not outcome.cleaned:
        return {"result": "held", "masked": None, "readable": False,
                "reason": str(outcome.held_reason).split(":")[0][:60]}  # fmt: skip
    rows, columns = case["shows"].shape
    masked = float(inside(outcome.boxes, rows, columns)[case["shows"]].mean())
    left = any(IDENTIFIERS(t) for t in readable(ds))
    return {"result": "covered" if masked >= COVERED else "missed",
            "masked": round(masked, 3), "readable": left}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--start", type=int, default=0, help="first case (skip the ones before)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--each", action="store_true", help="list every case's outcome")
    parser.add_argument(
        "--kinds",
        default="",
        help="only these picture kinds, comma-separated (of: "
        + ", ".join(sorted({k for _, k in KINDS}))
        + "); the same cases as a full run",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(TESTS))
    kinds = set(filter(None, args.kinds.split(",")))
    rng = np.random.default_rng(args.seed)
    counts: dict[str, Counter[str]] = {}
    missed = []
    every: list[str] = []
    for n in range(args.start + args.lines):
        case = planted_case(n, rng)  # (drawn in order: the same cases for the same seed)
        kind = case["label"].split()[0]
        if n < args.start or case["shows"].sum() < 20:  # dark on black air: nothing shows
            continue
        if kinds and kind not in kinds:
            continue
        got = _outcome(case)
        level = int(case["label"].split(" level ")[1].split()[0])
        group = f"{kind} {'bright' if level > 128 else 'dark'}"
        counts.setdefault(group, Counter())[got["result"]] += 1
        counts[group]["readable"] += got["readable"]
        if args.each:
            every.append(f"{n}: {case['label']}: {got['result']} {got['masked']}"
                         f"{' ' + got['reason'] if got.get('reason') else ''}")  # fmt: skip
        if got["result"] == "missed" or got["readable"]:
            missed.append(f"{n}: {case['label']}: masked {got['masked']}"
                          f"{', identifier readable' if got['readable'] else ''}")  # fmt: skip
    total: Counter[str] = Counter()
    for c in counts.values():
        total.update(c)
    report = {"by_group": {k: dict(v) for k, v in sorted(counts.items())},
              "total": dict(total), "missed_or_readable": missed}  # fmt: skip
    if args.each:
        report["each"] = every
    print(json.dumps(report, indent=1, ensure_ascii=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
