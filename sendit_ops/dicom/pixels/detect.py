"""Which lines OCR reads are masked, and the boxes around them.

A box is masked because it holds a text line: at least two letters or digits, read with a
confidence that fits printed text, in a box shaped like a line (as high as text is, longer
than high, a small part of the image). A single character, or a low-confidence read, never
creates a mask: OCR reads "A" 0.52 or "C" 0.70 in the texture of a CT slice, and the box
around such a read can span most of the image (issue 22: three text-free CT images were
98 %, 40 % and 99.7 % blacked out). Reads that are not masked are still verified
(``check.residual``): if one is identifying or not on the allow-list, the image is held.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from sendit_ops.dicom.pixels import ocr
from sendit_ops.dicom.pixels.display import Picture
from sendit_ops.dicom.pixels.model import OCR, Box

MIN_CHARACTERS = 2  # letters or digits in a line that is masked
MIN_SCORE = 0.6  # recognition confidence of a line that is masked
MIN_HEIGHT = 4  # pixels across the line
MAX_HEIGHT = 96
MAX_LINE_SHARE = 0.10  # of the image's area: one line's box (a 40 px line across 512 px: 8 %)
_ALNUM = re.compile(r"[0-9A-Za-z]")


def pad_for(height: int) -> int:
    """Margin around a text line: a fifth of its height, at least 2 pixels."""
    return max(2, round(height * 0.2))


def fits_text(hit: ocr.TextHit, rows: int, columns: int) -> bool:
    """True when an OCR read is a text line worth masking (see the module docstring)."""
    if len(_ALNUM.findall(hit.text)) < MIN_CHARACTERS or hit.score < MIN_SCORE:
        return False
    w, h = hit.x1 - hit.x0, hit.y1 - hit.y0
    across, along = min(w, h), max(w, h)
    if not MIN_HEIGHT <= across <= min(MAX_HEIGHT, max(rows, columns) // 4):
        return False
    if along < across:
        return False
    return w * h <= MAX_LINE_SHARE * rows * columns


def hit_box(hit: ocr.TextHit, frame: int | None, rows: int, columns: int) -> Box | None:
    """The box to mask for one OCR hit (padded, clipped to the image)."""
    across = min(hit.y1 - hit.y0, hit.x1 - hit.x0)
    box = Box(hit.x0, hit.y0, hit.x1, hit.y1, frame, OCR).padded(pad_for(across))
    return box.clipped(rows, columns)


INK = 28  # grey levels a glyph pixel differs from the line's background


def _run_around(profile: NDArray[np.bool_]) -> tuple[int, int] | None:
    """The run of non-zero entries holding (or nearest to) the middle of ``profile``."""
    nonzero = np.flatnonzero(profile)
    if not len(nonzero):
        return None
    middle = len(profile) // 2
    seed = int(nonzero[np.argmin(np.abs(nonzero - middle))])
    lo = hi = seed
    while lo > 0 and profile[lo - 1]:
        lo -= 1
    while hi < len(profile) - 1 and profile[hi + 1]:
        hi += 1
    return lo, hi + 1


def tighten(box: Box, gray: Picture) -> Box:
    """``box`` shrunk to the ink of its own line, padded again (never grown).

    The detector's boxes are generous (its text regions are unclipped by 1.6, then padded):
    on a real ultrasound image with lines 16 px apart they held twice the text's area and
    the neighbouring lines' ink. The ink is what differs from the box's border (the
    background) by more than INK grey levels; across the line only the run of inked rows
    around the box's middle is kept (a neighbouring line is masked by its own box)."""
    crop = gray[box.y0 : box.y1, box.x0 : box.x1].astype(np.int16)
    if crop.shape[0] < 3 or crop.shape[1] < 3:
        return box
    border = np.concatenate((crop[0], crop[-1], crop[:, 0], crop[:, -1]))
    ink = np.abs(crop - int(np.median(border))) > INK
    vertical = crop.shape[0] > crop.shape[1]  # a line rotated by 90 degrees
    # inked rows (columns when vertical); np.any with an axis gives an array
    inked: NDArray[np.bool_] = np.any(ink, axis=0 if vertical else 1)
    run = _run_around(inked)
    if run is None:
        return box
    if vertical:
        ink = ink[:, run[0] : run[1]]
        used = np.flatnonzero(ink.any(axis=1))
        x0, x1, y0, y1 = run[0], run[1], int(used.min()), int(used.max()) + 1
    else:
        ink = ink[run[0] : run[1]]
        used = np.flatnonzero(ink.any(axis=0))
        x0, x1, y0, y1 = int(used.min()), int(used.max()) + 1, run[0], run[1]
    pad = pad_for(min(x1 - x0, y1 - y0))
    return Box(
        max(box.x0, box.x0 + x0 - pad),
        max(box.y0, box.y0 + y0 - pad),
        min(box.x1, box.x0 + x1 + pad),
        min(box.y1, box.y0 + y1 + pad),
        box.frame,
        box.source,
    )


def _inked(band: NDArray[np.int16], background: int) -> NDArray[np.bool_]:
    """Per position along a band (its rows): whether any pixel of it is ink."""
    hits: NDArray[np.bool_] = np.any(np.abs(band - background) > INK, axis=1)
    return hits


def pitch(hit: ocr.TextHit) -> int:
    """The width of one character of a read line: its length over the characters read."""
    along = max(hit.x1 - hit.x0, hit.y1 - hit.y0)
    return max(1, round(along / max(1, len(hit.text.strip()))))


def continued(box: Box, gray: Picture, reach: int) -> Box:
    """``box`` (a tightened line) grown at each end along its line over ink that continues
    in the line's band, by at most ``reach`` (one character's width, ``pitch``) per end.

    OCR's detector ends a line at the last glyph it sees whole: a glyph half on a field of
    the text's own value (dark text whose end runs onto the black border) is left outside
    its box, yet its other half shows (issue 22: a turned 40 px line masked 94 %). The band
    beyond each end is the box's rows (columns for a line turned by 90 degrees); a position
    is ink when one of its pixels differs from the line's background (the median of the
    box's border) by more than INK; the box grows over the run of inked positions touching
    its end. On a plain field (the usual annotation bar) nothing differs and the box keeps
    its size; on anatomy or speckle it grows by at most one character."""
    crop = gray[box.y0 : box.y1, box.x0 : box.x1].astype(np.int16)
    if crop.shape[0] < 3 or crop.shape[1] < 3:
        return box
    border = np.concatenate((crop[0], crop[-1], crop[:, 0], crop[:, -1]))
    background = int(np.median(border))
    rows, columns = gray.shape[:2]
    vertical = crop.shape[0] > crop.shape[1]
    view = gray.T if vertical else gray  # along the line: axis 1 of ``view``
    b0, b1 = (box.x0, box.x1) if vertical else (box.y0, box.y1)  # across the line
    a0, a1 = (box.y0, box.y1) if vertical else (box.x0, box.x1)  # along it
    length = rows if vertical else columns
    before = view[b0:b1, max(0, a0 - reach) : a0].astype(np.int16).T[::-1]
    after = view[b0:b1, a1 : min(length, a1 + reach)].astype(np.int16).T
    grow = []
    for band in (before, after):
        inked = _inked(band, background) if band.size else np.zeros(0, bool)
        stop = np.flatnonzero(~inked)
        grow.append(int(stop[0]) if len(stop) else len(inked))
    a0, a1 = a0 - grow[0], a1 + grow[1]
    if vertical:
        return Box(box.x0, a0, box.x1, a1, box.frame, box.source)
    return Box(a0, box.y0, a1, box.y1, box.frame, box.source)


CARRY_CHARS = 8  # characters a read line's box is carried on past each end at most
CARRY_GAP = 2.5  # characters between two strokes of a line (a space, glyphs hidden) at most
CARRY_BUSY = 0.4  # share of positions beyond the line with a stroke: texture, not a line
CARRY_TOLERANCE = 12  # grey levels a pixel may differ from the line's ink and be its ink


def _stroke_kernel(across: int) -> NDArray[np.uint8]:
    size = max(3, across // 4) | 1  # wider than a stroke, narrower than a glyph
    return np.ones((size, size), np.uint8)


def _strokes(crop: Picture, sign: int, kernel: NDArray[np.uint8]) -> NDArray[np.int16]:
    """How much a closing (``sign`` -1: dark strokes) or an opening (bright ones) by
    ``kernel`` changes each pixel of ``crop``: large on a thin stroke of that polarity,
    nothing on the edge of a field."""
    import cv2

    op = cv2.MORPH_CLOSE if sign < 0 else cv2.MORPH_OPEN
    changed: NDArray[np.int16] = np.abs(
        cv2.morphologyEx(crop, op, kernel).astype(np.int16) - crop.astype(np.int16)
    )
    return changed


def _ink_level(box: Box, gray: Picture) -> tuple[int, int] | None:
    """The grey level of a line's ink and its sign (-1: darker than around it).

    The polarity is that of the more pixels on thin strokes (``_strokes`` by 3x3 and 5x5:
    a glyph's strokes; its counters, wider, hardly count), not the box's border: a line
    read on bright tissue next to air has a border half dark. The level is the quartile of
    those pixels farthest from the background (antialiased edges lie between)."""
    crop = np.ascontiguousarray(gray[box.y0 : box.y1, box.x0 : box.x1])
    if crop.shape[0] < 3 or crop.shape[1] < 3:
        return None
    kernels = [np.ones((k, k), np.uint8) for k in (3, 5)]
    inks = {
        sign: np.concatenate([crop[_strokes(crop, sign, k) > INK] for k in kernels])
        for sign in (-1, 1)
    }
    sign = -1 if inks[-1].size >= inks[1].size else 1
    border = np.concatenate((crop[0], crop[-1], crop[:, 0], crop[:, -1]))
    if not inks[sign].size or sign * (int(np.median(inks[sign])) - int(np.median(border))) < 0:
        return None  # the box's background says the other polarity: unsure
    return int(np.percentile(inks[sign], 25 if sign < 0 else 75)), sign


def carried(box: Box, gray: Picture, reach: int) -> Box:
    """``box`` (a tightened, continued line) carried on along its line over what is left
    of glyphs OCR did not read: by at most CARRY_CHARS characters (``reach``: one
    character's width) past each end, to the last position beyond it that holds a stroke
    of the line's ink.

    A dark line that runs from bright tissue onto air or lung is read only where it shows
    on the tissue; beyond, its glyphs hide on a field of nearly their own value, and what
    shows of them is the strokes that cut a brighter vessel or edge (issue 22: six lines
    masked 73-95 %). Such a stroke is a pixel within CARRY_TOLERANCE of the line's ink
    level (``_ink_level``) that a small closing of its neighbourhood brightens by more
    than INK: thin and dark (the edge of a field does not count); a position along the
    line holds a stroke when an eighth of its band's width (2 pixels at least) does.
    Walking away from the end, positions whose band lies on a field of the ink's level
    (the glyphs would hide there) are passed over; positions of plain background end the
    walk after one character of them in all, and CARRY_GAP characters without a stroke
    end it too; the box ends at the last stroke found (never shrinks), and only when the
    walk crossed half a character of such a field (strokes next to the end on plain
    background are anatomy: a radiograph line carried 11 px was held at verification).
    A band with strokes at more than CARRY_BUSY of its positions is texture (speckle:
    ultrasound lines were carried across the picture) and the box keeps its size; so it
    does on a plain annotation bar, where nothing beyond the end holds a stroke.

    Dark ink only: its hiding fields (air, lung) are smooth, and a vessel is cut by a
    glyph or not; at the level of bright ink lie bone and its cortex, thin themselves, all
    strokes by this test (bright lines read whole were carried on 20-70 px over bone, and
    one image, 9.0 % masked, was held for its mask share)."""
    found = _ink_level(box, gray)
    if found is None or found[1] > 0:
        return box
    level, sign = found
    rows, columns = gray.shape[:2]
    vertical = (box.y1 - box.y0) > (box.x1 - box.x0)
    b0, b1 = (box.x0, box.x1) if vertical else (box.y0, box.y1)  # across the line
    a0, a1 = (box.y0, box.y1) if vertical else (box.x0, box.x1)  # along it
    length = rows if vertical else columns
    span = CARRY_CHARS * reach
    lo, hi = max(0, a0 - span), min(length, a1 + span)
    view = gray.T if vertical else gray  # along the line: axis 1 of ``view``
    band = np.ascontiguousarray(view[b0:b1, lo:hi])
    changed = _strokes(band, sign, _stroke_kernel(b1 - b0))
    near = np.abs(band.astype(np.int16) - level) <= CARRY_TOLERANCE
    least = max(2, (b1 - b0) // 8)  # stroke pixels a position needs (not a speck)
    stroke = np.count_nonzero(near & (changed > INK), axis=0) >= least
    hidden = np.abs(np.median(band, axis=0) - level) <= CARRY_TOLERANCE
    beyond = np.r_[stroke[: a0 - lo], stroke[a1 - lo :]]
    if beyond.size and beyond.mean() > CARRY_BUSY:
        return box  # texture (speckle): strokes everywhere, no line's fragments in it
    ends = []
    for start, step, stop in ((a0 - 1 - lo, -1, -1), (a1 - lo, 1, hi - lo)):
        last, plain, since, hid = None, 0, 0, 0
        for i in range(start, stop, step):
            if stroke[i]:
                last, since = i, 0
                continue
            since += 1
            plain += not hidden[i]
            hid += bool(hidden[i])
            if plain > reach or since > CARRY_GAP * reach:
                break
        # only a line that ran onto a field of its ink's level hid glyphs there
        ends.append(last if hid >= reach / 2 else None)
    pad = pad_for(b1 - b0)
    if ends[0] is not None:
        a0 = max(0, lo + ends[0] - pad)
    if ends[1] is not None:
        a1 = min(length, lo + ends[1] + 1 + pad)
    if vertical:
        return Box(box.x0, a0, box.x1, a1, box.frame, box.source)
    return Box(a0, box.y0, a1, box.y1, box.frame, box.source)


def text_boxes(
    hits: list[tuple[int | None, ocr.TextHit]],
    rows: int,
    columns: int,
    gray: Callable[[int | None], list[Picture]] | None = None,
) -> list[Box]:
    """The padded boxes of the reads that fit text; with ``gray`` (the screen's views of a
    frame; for a projection, both projections) each is tightened to its ink (the union of
    what each view shows)."""
    out = []
    for frame, hit in hits:
        if not fits_text(hit, rows, columns):
            continue
        box = hit_box(hit, frame, rows, columns)
        if box is None:
            continue
        views = gray(frame) if gray is not None else []
        if views:
            reach = pitch(hit)
            tight = [carried(continued(tighten(box, view), view, reach), view, reach)
                     for view in views]  # fmt: skip
            x0, y0 = min(b.x0 for b in tight), min(b.y0 for b in tight)
            x1, y1 = max(b.x1 for b in tight), max(b.y1 for b in tight)
            box = Box(x0, y0, x1, y1, box.frame, box.source)
        out.append(box)
    return out


def covered_share(boxes: list[Box] | tuple[Box, ...], rows: int, columns: int) -> float:
    """The share of the image's area inside the union of ``boxes`` (all frames alike)."""
    if not boxes or not rows or not columns:
        return 0.0
    inside = np.zeros((rows, columns), dtype=bool)
    for b in boxes:
        inside[b.y0 : b.y1, b.x0 : b.x1] = True
    return float(inside.mean())


def _inside(inner: Box, outer: Box) -> bool:
    return (
        outer.x0 <= inner.x0
        and outer.y0 <= inner.y0
        and inner.x1 <= outer.x1
        and inner.y1 <= outer.y1
    )


def unique_boxes(boxes: list[Box]) -> list[Box]:
    """``boxes`` without those lying inside another (the same line read on several frames),
    in their first-seen order; the mask is the same."""
    kept: list[Box] = []
    for i, box in enumerate(boxes):
        later = boxes[i + 1 :]
        if any(_inside(box, other) for other in kept) or any(
            _inside(box, other) and not _inside(other, box) for other in later
        ):
            continue
        kept.append(box)
    return kept
