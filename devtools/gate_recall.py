"""Recall and cost of the text screen's filters (issue 22), case by case in one run
(interleaved, so the machine's load falls on all alike): ``--modes`` among ``none`` (every
chained line), ``text_like`` (the stroke pre-filter alone: main before the line classifier)
and ``classifier`` (the pre-filter then ``line_classifier``, the screen as it runs); the
first mode given is "before", the last "after".

Planted lines: random lines of identifying text (the tests' ``random_lines``: 8-40 px,
several fonts, bright and dark) and, for every other line, a line in a font the tests do not
use (Liberation Serif, Noto Sans Mono) or a Japanese line (kanji and kana, Droid Sans
Fallback), on CT and MR slices with anatomy, a radiograph (text at 1001 of 1023) and an
ultrasound picture; a third of the pictures turned by 90 degrees. A line counts as found
when a region that passes the screen (and the pre-filter) and the gate
(``ocr.gate_regions``, as ``stage.Looker`` calls it: one batch per frame) holds at least
one of its visible ink pixels. Anatomy: generated CT slices without text, regions per
slice and CPU ms per slice of the screen and of the gate.

    .venv/bin/python -m devtools.gate_recall --lines 200 --slices 20

Needs the test helpers (tests/) and the fonts named above when present (lines in a missing
font are drawn in Pillow's default font instead).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

TESTS = Path(__file__).resolve().parent.parent / "tests"
FONTS = Path("/usr/share/fonts/truetype")
EXTRA = {
    "latin": [
        FONTS / "liberation/LiberationSerif-Regular.ttf",
        FONTS / "noto/NotoSansMono-Regular.ttf",
    ],
    "japanese": [FONTS / "droid/DroidSansFallbackFull.ttf"],
}
LATIN = ["DOE, JANE", "MRN-100234", "03/04/1971", "ROE RICHARD", "Smith^John", "F 45Y"]
JAPANESE = ["山田 太郎", "ヤマダ タロウ", "東京病院 放射線科", "患者 123456", "昭和46年3月4日"]
KINDS = [("CT", "anatomy"), ("MR", "anatomy"), ("CR", "radiograph"), ("US", "ultrasound")]


def _font_ink(path: Path, text: str, x: int, y: int, height: int, size: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    font = (ImageFont.truetype(str(path), height) if path.is_file()
            else ImageFont.load_default(height))  # fmt: skip
    image = Image.new("L", (size, size), 0)
    ImageDraw.Draw(image).text((x, y), text, fill=255, font=font)
    return np.asarray(image, dtype=np.float32) / 255.0


def planted_case(n: int, rng: np.random.Generator, size: int = 512) -> dict[str, Any]:
    """Case ``n``: a picture with one planted line, its visible ink and a PHI-free label."""
    from pixel_images import ink, stored_text
    from test_pixel_screen import picture_for, random_lines, visible_ink

    modality, kind = KINDS[n % len(KINDS)]
    picture = picture_for(kind, int(rng.integers(50)))
    if n % 2:
        (line,) = random_lines(rng, size, 1)
        cover, level, height = ink(line, size, size), line.level, line.height
        label = f"{line.font} {height}px"
    else:
        script = "japanese" if rng.random() < 0.4 else "latin"
        texts = JAPANESE if script == "japanese" else LATIN
        text = texts[int(rng.integers(len(texts)))]
        fonts = EXTRA[script]
        path = fonts[int(rng.integers(len(fonts)))]
        height = int(rng.integers(8, 41))
        width = int(height * (1.0 if script == "japanese" else 0.7) * len(text)) + 10
        x = int(rng.integers(0, max(1, size - width)))
        y = int(rng.integers(0, size - height - 4))
        cover = _font_ink(path, text, x, y, height, size)
        level = int(rng.choice([255, 230, 0, 20]))
        label = f"{path.stem} {script} {height}px"
    if kind == "radiograph" and level > 128:  # a real CR carries its text at 1001 of 1023
        level = 1001 * 255 // 1023
    before = picture.copy()
    picture = stored_text(picture, cover, level)
    turned = n % 3 == 0
    if turned:
        turn = (np.ascontiguousarray(np.rot90(a)) for a in (picture, before, cover))
        picture, before, cover = turn
    shows = visible_ink(before, picture, cover)
    return {"modality": modality, "picture": picture, "shows": shows,
            "label": f"{kind} {label} level {level}{' turned' if turned else ''}"}  # fmt: skip


def _views(modality: str, picture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The screen's grey view and the gate's RGB rendering, as the stage makes them."""
    from pixel_images import acquisition

    from sendit_ops.dicom.pixels.codec import decode
    from sendit_ops.dicom.pixels.display import Display

    ds = acquisition(modality, picture)
    decoded = decode(ds)
    display = Display(decoded, ds)
    return display.gray(decoded.frames[0]), display.render(decoded.frames[:1])[0]


MODES = {"none": (False, False), "text_like": (True, False), "classifier": (True, True)}


def look(gray: np.ndarray, rgb: np.ndarray, mode: str) -> dict[str, Any]:
    """Screen (with the filters of ``mode``) and gate one frame: regions, passed, CPU ms."""
    from sendit_ops.dicom.pixels import ocr, screen

    prefilter, classify = MODES[mode]
    start = time.process_time()
    regions = screen.candidates(gray, 0, prefilter=prefilter, classify=classify)
    screened = time.process_time()
    verdicts = ocr.gate_regions(rgb, regions) if regions else []
    gated = time.process_time()
    return {
        "regions": regions,
        "passed": [r for r, ok in zip(regions, verdicts, strict=True) if ok],
        "screen_ms": 1000 * (screened - start),
        "gate_ms": 1000 * (gated - screened),
    }


def _found(passed: list[Any], shows: np.ndarray) -> bool:
    return any(shows[b.y0 : b.y1, b.x0 : b.x1].any() for b in passed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--modes", default="text_like,classifier", help="of: " + ", ".join(MODES))
    args = parser.parse_args(argv)
    names = args.modes.split(",")
    first, last = names[0], names[-1]
    sys.path.insert(0, str(TESTS))
    import cv2

    from sendit_ops.dicom.pixels import ocr
    from sendit_ops.sample_data import anatomy_slice

    cv2.setNumThreads(1)
    ocr.engine()  # models loaded before any clock
    rng = np.random.default_rng(args.seed)
    modes = {m: m for m in names}
    found = dict.fromkeys(modes, 0)
    shown, lost, gained = 0, [], []
    for n in range(args.lines):
        case = planted_case(n, rng)
        if case["shows"].sum() < 20:  # dark text on black air: nothing to see or find
            continue
        shown += 1
        gray, rgb = _views(case["modality"], case["picture"])
        hit = {m: _found(look(gray, rgb, p)["passed"], case["shows"]) for m, p in modes.items()}
        for m in modes:
            found[m] += hit[m]
        if hit[first] and not hit[last]:
            lost.append(f"{n}: {case['label']}")
        if hit[last] and not hit[first]:
            gained.append(f"{n}: {case['label']}")
    totals: dict[str, dict[str, float]] = {m: {"regions": 0, "passed": 0, "screen_ms": 0.0,
                                               "gate_ms": 0.0} for m in modes}  # fmt: skip
    for n in range(args.slices):
        gray, rgb = _views("CT", anatomy_slice(512, 1000 + n, "CT"))
        for m, p in modes.items():
            seen = look(gray, rgb, p)
            totals[m]["regions"] += len(seen["regions"])
            totals[m]["passed"] += len(seen["passed"])
            totals[m]["screen_ms"] += seen["screen_ms"]
            totals[m]["gate_ms"] += seen["gate_ms"]
    per_slice = {m: {k: round(v / max(1, args.slices), 1) for k, v in t.items()}
                 for m, t in totals.items()}  # fmt: skip
    report = {
        "lines_shown": shown,
        "lines_found": found,
        "lost": lost,
        "gained": gained,
        "ct_anatomy_per_slice": per_slice,
        "ratios_after_before": {
            k: round(per_slice[last][k] / per_slice[first][k], 3)
            for k in ("regions", "passed", "screen_ms", "gate_ms")
            if per_slice[first][k]
        },
    }
    print(json.dumps(report, indent=1, ensure_ascii=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
