"""The text screen: a fast look at every frame for regions shaped like lines of text.

Why classical and not the OCR engine's detector: the screen runs on every frame of every
image (a CT study is hundreds of 512x512 frames), so it must cost a few milliseconds; the
detection model costs 100-300 ms per frame on one core. Its job is recall, not precision:
every region it reports is read by OCR (``ocr.read_regions``) and only a recognised text
line is ever masked, so a region of anatomy costs time, never pixels.

How (OpenCV, on the 8-bit view of a frame):

1. *strokes*: the white and the black top-hat with a square larger than a stroke of 40 px
   text keep what is thinner than the square and brighter OR darker than its surroundings,
   so text is found whatever its value (not only at the top of the range: a real CR carries
   it at 1001 of 1023) and on either polarity (dark text on a bright field); a contrast
   threshold keeps strokes, not noise; and, when a top-hat mask was texture (speckle),
   *flat strokes* (``flat_strokes``): the thin parts of the pixels at a value that is a
   spike of the frame's histogram (text is drawn at one value; speckle spreads over many),
   for dark text on speckle that no top-hat level separates from it (issue 22);
2. *glyphs*: connected components 3-48 px high (8-40 px text, with margin) and not wider
   than a short word;
3. *lines*: glyphs of similar height that overlap vertically and follow each other within
   about one height (horizontal text), or the same across (text rotated by 90 degrees);
   a line of at least two glyphs, 6-56 px high and longer than high, is a candidate region;
4. *strokes like text* (the pre-filter, ``text_like``): a line's own glyphs, crossed along
   the line on the rows of its middle band, show as many separate strokes as letters do (2+
   characters, most with two strokes or more; one fewer on a short line under 10 px high,
   whose strokes blur together), or fill their box like merged blocks of small text. A
   vessel with a dot beside it, the CT table's thin curve or a rib's edge is crossed once
   or twice per row over a length of several heights: dropped here, it costs no
   recognition read (``ocr.gate_regions``, ~15 ms a region);
5. *text or not* (``line_classifier``): what still lines up (a vessel's bends, speckle
   grains in a row, 6-7 px high, ~80 a 640x480 speckle frame) is scored on the line's
   glyphs and its grey crop (ink/background separation, contrast over the background's
   spread, edge sharpness, stroke width) by small boosted trees trained on generated data,
   with a threshold below every training line of text. It costs ~0.5 ms a line and drops
   ~3/4 of the CT anatomy lines and ~97 % of the speckle lines that step 4 keeps.

Frames larger than ``MAX_SIDE`` are screened at a reduced scale (text on those is larger).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import cv2
import numpy as np
from numpy.typing import NDArray

from sendit_ops.dicom.pixels import line_classifier
from sendit_ops.dicom.pixels.display import Picture
from sendit_ops.dicom.pixels.model import SCREEN, Box

# per-glyph numbers (coordinates, sizes: integers; middles: floats)
Column = NDArray[np.integer[Any]]
Labels = line_classifier.Labels  # a component image (uint16 or int32 labels)

# grey levels (of 255) a stroke stands out from its surroundings: several levels, as MSER
# does, so letters touching a fainter thin structure (a vessel, a fold) come apart at a
# level between the two
CONTRASTS = (14, 48, 120)
_SQUARE = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))
GLYPH_MIN, GLYPH_MAX = 3, 48  # glyph heights (pixels)
LINE_MIN, LINE_MAX = 6, 56  # line heights (pixels)
MAX_SIDE = 1024  # larger frames are screened at a reduced scale
# a stroke mask covering more than this share of the frame is texture (noise, speckle) at
# that contrast level; text on it comes apart at a higher level, which is still screened
MAX_DENSITY = 0.12
MAX_GLYPHS = 1500  # glyph-sized components in one mask: more is texture, as above
# the pre-filter (``text_like``), measured on planted lines and CT/MR slices with anatomy
# (docs/performance.md, 7 Dec 2026): strokes crossed along the band of a line; a short line
# (up to SHORT heights long: 2-3 characters) needs RUNS_SHORT of them, a longer one RUNS
# and RUNS_PER_HEIGHT per height of its length (every character of a Latin or CJK font is
# at most about one height wide and is crossed at least once); a box its glyphs fill more
# than BLOCK_FILL is a block of merged strokes (small or blurred text), fuller than an
# ellipse fills its box (pi/4: a rib, a dot); blocks in 2+ pieces fill less (the gaps):
# more than BLOCKS_FILL
BAND = (0.2, 0.8)  # the middle band of a line, as shares of its height
RUNS_SHORT, RUNS, RUNS_PER_HEIGHT, SHORT = 3, 4, 1.0, 2.5
SMALL = 10  # a short line lower than this (px) needs one stroke fewer
BLOCK_FILL, BLOCKS_FILL = 0.85, 0.7
# flat strokes (``flat_strokes``, issue 22): a grey value is a spike of the frame's
# histogram when it holds at least FLAT_LEAST pixels more than the median of its six
# neighbouring values (three each side), and more than FLAT_SIGMA times the square root of
# that median (counting noise); the FLAT_VALUES largest spikes are screened
FLAT_LEAST, FLAT_SIGMA, FLAT_VALUES = 30, 6.0, 3
# a flat-stroke line with this share of its box inside a kept top-hat line is a repeat
REPEAT = 0.7
_NEAR = (-3, -2, -1, 1, 2, 3)
# the pixels at a flat value are closed by this square (``flat_mask``): gaps of one pixel in
# a stroke (where the text's edge blends with the picture) are filled
_GAPS = np.ones((3, 3), np.uint8)


def strokes(gray: Picture) -> list[tuple[Picture, bool]]:
    """1 where a thin structure is brighter or darker than its surroundings by each of
    CONTRASTS, each mask with whether its strokes are the darker ones (the black top-hat:
    a line of them may be dark text, or the gaps between bright letters, ``Region.dark``).
    Bright and dark apart, not combined: the gaps between bright letters are dark thin
    structures themselves, and together they would fill a word into one block."""
    opened = cv2.morphologyEx(gray, cv2.MORPH_OPEN, _SQUARE)
    closed = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, _SQUARE)
    out = []
    for dark, contrast in enumerate((cv2.subtract(gray, opened), cv2.subtract(closed, gray))):
        peak = int(contrast.max())
        for level in CONTRASTS:
            if level < peak:
                out.append(((contrast > level).astype(np.uint8), bool(dark)))
    return out


def flat_values(gray: Picture) -> list[int]:
    """The grey values burned-in text may be drawn at: spikes of the histogram (see
    FLAT_LEAST). Speckle, anatomy and noise spread over neighbouring values; text is drawn
    at one value, so its inked pixels stand out of the histogram even when they stand out
    of the picture by less than the picture varies (dark text on speckle)."""
    counts = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()
    padded = np.concatenate([np.zeros(3, np.float32), counts, np.zeros(3, np.float32)])
    near = np.median(np.stack([padded[3 + d : 259 + d] for d in _NEAR]), axis=0)
    excess = counts - near
    spikes = np.flatnonzero((excess >= FLAT_LEAST) & (excess >= FLAT_SIGMA * np.sqrt(near + 1)))
    return [int(v) for v in spikes[np.argsort(-excess[spikes], kind="stable")][:FLAT_VALUES]]


def flat_mask(gray: Picture, value: int) -> Picture:
    """1 where the 8-bit grey frame is at ``value``, closed by a 3x3 square (``_GAPS``).

    Why closed: only a fully inked pixel carries the text's value exactly; where a thin
    stroke of small text (or a turned line, resampled) blends with the picture, the pixels
    at the value are broken every pixel or two, and the strokes fell apart into dots the
    screen did not chain and OCR did not read (dark text on speckle, turned: 0 % masked,
    issue 22). Closing fills those one-pixel gaps; lone speckle pixels at the value stay
    lone (the square only joins pixels at most one pixel apart)."""
    at = (gray == value).astype(np.uint8)
    return np.asarray(cv2.morphologyEx(at, cv2.MORPH_CLOSE, _GAPS), dtype=np.uint8)


def flat_strokes(gray: Picture, seen: Picture | None = None) -> list[Picture]:
    """1 on the thin parts of the pixels at each of ``flat_values``: what is left of
    them after an opening by the screen's square (a flat area wider than a stroke, such as
    the black around an ultrasound sector, is taken away; strokes, thinner, stay), less
    what is nonzero in ``seen`` (the top-hat masks screened: text they hold is found there,
    and on a real image with much text its strokes again cost ~20 ms of chaining a frame).
    One mask per value, in the order of ``flat_values`` (``regions`` pairs them).

    Why (issue 22): dark text drawn over ultrasound speckle is darker than its
    surroundings by less than the speckle varies, so the black top-hat at a contrast low
    enough to hold it covers the speckle too (more than MAX_DENSITY: skipped as texture)
    and at a higher level it does not reach the strokes. Its strokes are drawn at one
    value, though, and speckle (a spread of values) holds few pixels of any one value."""
    out = []
    for value in flat_values(gray):
        at = (gray == value).astype(np.uint8)
        thin = cv2.subtract(at, cv2.morphologyEx(at, cv2.MORPH_OPEN, _SQUARE))
        if seen is not None:
            thin = cv2.subtract(thin, seen)
        out.append(np.asarray(thin, dtype=np.uint8))
    return out


def _aligned(tall: Column, mid: NDArray[np.floating[Any]]) -> bool:
    """Glyphs of one line look like letters on a baseline: most of similar height, their
    middles on one line (lung vessels chained together are not)."""
    median = line_classifier.median(tall)
    similar = (tall >= 0.6 * median) & (tall <= 1.5 * median)
    if similar.sum() < 2 or similar.mean() < 0.6:
        return False
    middles = mid[similar]
    return float(middles.max() - middles.min()) <= max(2.0, 0.35 * median)


def _chains(
    a0: Column, b0: Column, a1: Column, b1: Column
) -> tuple[NDArray[np.int_], NDArray[np.int_]]:
    """Glyphs (a: along the line, b: across it) chained into lines: each glyph is linked
    to the glyphs starting after it within about one height along the line, that overlap
    it across the line by half the smaller height. Returns the glyph indices grouped by
    chain (a lone glyph is a chain too) and where each chain starts among them: chains
    ordered by their first glyph, indices ascending within a chain.

    In numpy, not a Python loop over pairs: a 640x480 speckle frame has ~1,000 glyphs and
    ~30,000 pairs within reach, and the loop was half of the screen's time (Dec 2026)."""
    n = len(a0)
    tall = b1 - b0
    order = np.argsort(a0, kind="stable")
    reach = a1 + np.maximum(3, (0.9 * tall).astype(np.int64))
    starts = a0[order]
    first = np.searchsorted(starts, a0, side="left")
    count = np.maximum(np.searchsorted(starts, reach, side="right") - first, 0)
    # every (i, j) with j's start in [a0[i], reach[i]]
    i = np.repeat(np.arange(n), count)
    step = np.arange(len(i)) - np.repeat(np.cumsum(count) - count, count)
    j = order[np.repeat(first, count) + step]
    overlap = np.minimum(b1[i], b1[j]) - np.maximum(b0[i], b0[j])
    linked = (i != j) & (overlap >= 0.5 * np.minimum(tall[i], tall[j]))
    i, j = i[linked], j[linked]
    # connected components: each glyph takes the smallest index it is linked to, until
    # nothing changes (with pointer jumping, a few rounds even for long lines)
    label = np.arange(n)
    while len(i):
        low = np.minimum(label[i], label[j])
        new = label.copy()
        np.minimum.at(new, i, low)
        np.minimum.at(new, j, low)
        new = new[new]
        if np.array_equal(new, label):
            break
        label = new
    grouped = np.argsort(label, kind="stable")
    return grouped, np.flatnonzero(np.r_[True, np.diff(label[grouped]) != 0])


Line = tuple[tuple[int, int, int, int], NDArray[np.int_]]


# glyphs of different masks are chained in one call, each mask shifted this far across
# the line from the others (so no glyph of one overlaps a glyph of another)
_APART = 1 << 20


def _lines(masks: list[NDArray[np.int32]], across: bool) -> list[list[Line]]:
    """Glyph boxes chained along the reading direction into lines, for the component
    stats of each of a frame's masks: per mask, its lines as (x0, y0, x1, y1) and the
    labels of the line's glyphs (components ``1 + index into stats``).

    A chain is a line when it is 6-56 px high across the line and longer than high, and is
    either one merged word (2.5 times longer than high) or glyphs that line up like letters
    (``_aligned``). A mask with more than MAX_GLYPHS glyphs is texture: no line of it.

    The masks are chained together, each shifted ``_APART`` across the line: one pass of
    numpy calls a frame instead of one a mask (on a CT slice their overhead was most of
    this step's time, Dec 2026)."""
    parts = []
    for k, stats in enumerate(masks):
        x, y, w, h, area = (stats[:, i].astype(np.int64) for i in range(5))
        if across:
            x, y, w, h = y, x, h, w
        glyph = (h >= GLYPH_MIN) & (h <= GLYPH_MAX) & (w <= 6 * GLYPH_MAX) & (area >= 4)
        idx = np.flatnonzero(glyph)
        if len(idx) and len(idx) <= MAX_GLYPHS:
            parts.append((np.full(len(idx), k), idx, x[idx], y[idx] + k * _APART, w[idx], h[idx]))
    out: list[list[Line]] = [[] for _ in masks]
    if not parts:
        return out
    mask_of, idx, a0, b0, w, h = (np.concatenate(p) for p in zip(*parts, strict=True))
    a1, b1 = a0 + w, b0 + h
    grouped, starts = _chains(a0, b0, a1, b1)
    # each chain's box and size at once (a CT slice has hundreds of chains, most one glyph:
    # a Python loop over them was a third of the screen's time, Dec 2026)
    la0, lb0 = np.minimum.reduceat(a0[grouped], starts), np.minimum.reduceat(b0[grouped], starts)
    la1, lb1 = np.maximum.reduceat(a1[grouped], starts), np.maximum.reduceat(b1[grouped], starts)
    sizes = np.diff(np.r_[starts, len(grouped)])
    tall, long_ = lb1 - lb0, la1 - la0
    # one glyph: a line only as a merged word; more: longer than high, and aligned
    fits = (tall >= LINE_MIN) & (tall <= LINE_MAX)
    fits &= np.where(sizes == 1, long_ >= 2.5 * tall, long_ >= 1.2 * tall)
    for c in np.flatnonzero(fits):
        chain = grouped[starts[c] : starts[c] + sizes[c]]
        k = int(mask_of[chain[0]])
        shift = k * _APART
        if sizes[c] > 1 and not _aligned(h[chain], (b0[chain] - shift + b1[chain] - shift) / 2):
            continue
        c0, c1 = lb0[c] - shift, lb1[c] - shift
        box = (c0, la0[c], c1, la1[c]) if across else (la0[c], c0, la1[c], c1)
        out[k].append((_box(box), idx[chain] + 1))
    return out


def _box(values: tuple[Any, ...]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(v) for v in values)
    return x0, y0, x1, y1


def text_like(labels: Labels, line: Line, across: bool) -> bool:
    """The pre-filter: whether a line's own glyphs (its components in ``labels``, nothing
    else inside its box) show the strokes of 2+ characters (see the module doc, step 4)."""
    (x0, y0, x1, y1), ids = line
    ink = line_classifier.members(labels[y0:y1, x0:x1], ids)
    if across:  # text rotated by 90 degrees: read along the columns
        ink = ink.T
    tall, long_ = ink.shape
    fill = float(ink.mean())
    if fill > BLOCK_FILL:
        return True
    band = ink[int(BAND[0] * tall) : max(int(BAND[0] * tall) + 1, int(np.ceil(BAND[1] * tall)))]
    # strokes crossed on each row of the band: runs of ink along the line
    runs = int((band[:, :1].sum(axis=1) + (band[:, 1:] & ~band[:, :-1]).sum(axis=1)).max())
    if runs >= 2 and fill > BLOCKS_FILL:
        return True
    if long_ <= SHORT * tall:
        # below SMALL px the strokes of a letter blur together: two may show as one
        return runs >= (RUNS_SHORT - 1 if tall < SMALL else RUNS_SHORT)
    return runs >= RUNS and runs * tall >= RUNS_PER_HEIGHT * long_


def lines(gray: Picture) -> list[tuple[Line, Labels, NDArray[np.int32], bool]]:
    """Step 3 on one 8-bit grey frame (already at the screen's scale): every chained line
    with the component image it was found in, the components' stats (label ``i`` at row
    ``i - 1``) and whether it runs across (turned text)."""
    return _lines_of(gray)[0]


def _lines_of(
    gray: Picture,
) -> tuple[list[tuple[Line, Labels, NDArray[np.int32], bool]], int, list[int | None], list[bool]]:
    """``lines``, how many of them (the first ones) come from the top-hat masks
    (``strokes``; the rest come from ``flat_strokes``), the view of each line: None
    (top-hat) or the flat value its strokes are drawn at, and whether each is of dark
    top-hat strokes (``Region.dark``)."""
    found: list[tuple[Labels, NDArray[np.int32]]] = []
    limit = MAX_DENSITY * gray.size
    polar = strokes(gray)
    masks = [mask for mask, _ in polar]
    darks = [dark for _, dark in polar]
    tophat = len(masks)
    kept_tophat = 0
    # flat strokes only where a top-hat mask was texture (skipped): text on texture; on a
    # smooth picture the top-hat holds text, and the values clipped by the grey view (bone,
    # air on a CT slice) make flat thin edges (8 regions more on deid-data's CT brains)
    seen = np.zeros_like(gray)
    texture = False
    for mask in masks:
        if cv2.countNonZero(mask) <= limit:
            cv2.bitwise_or(seen, mask, dst=seen)
        else:
            texture = True
    values: list[int | None] = [None] * tophat
    if texture:
        thin = flat_strokes(gray, seen)
        masks += thin
        values += flat_values(gray)[: len(thin)]
        darks += [False] * len(thin)  # (the flat view is black print on white already)
    kept_values: list[int | None] = []
    kept_darks: list[bool] = []
    for k, mask in enumerate(masks):
        ink = cv2.countNonZero(mask)
        if ink > limit:
            continue
        # 16-bit labels when they cannot overflow (fewer ink pixels than 65,535: fewer
        # components): OpenCV labels and counts them ~3x faster than in 32 bits (1.0 against
        # 3.2 ms a 512x512 mask, the same labels and stats; Dec 2026, docs/performance.md)
        ltype = cv2.CV_16U if ink < np.iinfo(np.uint16).max else cv2.CV_32S
        count, all_labels, all_stats, _ = cv2.connectedComponentsWithStats(
            mask, connectivity=8, ltype=ltype
        )
        # cv2's stubs leave the dtype open: stats are int32 (CV_32S), labels uint16 or int32
        stats = np.asarray(all_stats[1:count], dtype=np.int32)
        found.append((np.asarray(all_labels), stats))
        kept_values.append(values[k])
        kept_darks.append(darks[k])
        kept_tophat += k < tophat
    stats_of = [stats for _, stats in found]
    along, turned = _lines(stats_of, False), _lines(stats_of, True)
    out = []
    views: list[int | None] = []
    line_darks: list[bool] = []
    first_flat = 0
    for k, ((labels, stats), flat, upright) in enumerate(zip(found, along, turned, strict=True)):
        out += [(line, labels, stats, False) for line in flat]
        out += [(line, labels, stats, True) for line in upright]
        views += [kept_values[k]] * (len(flat) + len(upright))
        line_darks += [kept_darks[k]] * (len(flat) + len(upright))
        if k < kept_tophat:
            first_flat = len(out)
    return out, first_flat, views, line_darks


def _repeats(box: tuple[int, int, int, int], kept: list[tuple[int, int, int, int]]) -> bool:
    """Whether REPEAT of ``box``'s area lies inside one of the ``kept`` boxes."""
    x0, y0, x1, y1 = box
    area = REPEAT * (x1 - x0) * (y1 - y0)
    for k0, l0, k1, l1 in kept:
        if max(0, min(x1, k1) - max(x0, k0)) * max(0, min(y1, l1) - max(y0, l0)) >= area:
            return True
    return False


def screen_scale(gray: Picture) -> tuple[Picture, float]:
    """The frame at the scale the screen reads it (``MAX_SIDE``) and that scale."""
    rows, columns = gray.shape
    if max(rows, columns) <= MAX_SIDE:
        return gray, 1.0
    scale = MAX_SIDE / max(rows, columns)
    resized = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    # cv2's stubs leave the dtype open: resizing uint8 gives uint8 (no copy here)
    return np.asarray(resized, dtype=np.uint8), scale


class Region(NamedTuple):
    """A candidate region and the view it was found on: ``flat`` None for the top-hat
    strokes (the frame as rendered), else the grey value (of the 8-bit view) of the flat
    strokes that made it: its text is read on the *flat view* (``flat_view``). ``dark``:
    found among the strokes darker than their surroundings (the black top-hat): a window
    mostly of such regions (``ocr.windows``) read as nothing is read once more stretched
    over its darker values (``stage.Looker._read``)."""

    box: Box
    flat: int | None
    dark: bool = False


def flat_view(gray: Picture, value: int) -> Picture:
    """The flat view of an 8-bit grey frame for ``value``, as RGB: black where the frame is
    at ``value``, white elsewhere (the same geometry as the frame). Dark text on speckle,
    drawn at one value, reads there as black print on white (issue 22)."""
    flat = np.where(flat_mask(gray, value) > 0, 0, 255).astype(np.uint8)
    return np.repeat(flat[..., None], 3, axis=-1)


def candidates(
    gray: Picture, frame: int | None = None, prefilter: bool = True, classify: bool = True
) -> list[Box]:
    """Regions of one 8-bit grey frame that may hold a line of text (see the module doc);
    ``prefilter`` False: every line of step 3 (without steps 4-5, for measurements);
    ``classify`` False: without step 5 (``line_classifier``, for measurements)."""
    return [r.box for r in regions(gray, frame, prefilter, classify)]


def regions(
    gray: Picture, frame: int | None = None, prefilter: bool = True, classify: bool = True
) -> list[Region]:
    """``candidates``, each with the view it was found on (``Region``)."""
    gray, scale = screen_scale(gray)
    found: list[tuple[int, int, int, int]] = []
    found_views: list[int | None] = []
    found_darks: list[bool] = []
    every, first_flat, views, darks = _lines_of(gray)
    kept_tophat = 0
    for n, (line, labels, stats, across) in enumerate(every):
        # a flat-stroke line where a top-hat line was kept is the same text again: it would
        # cost a gate read and add nothing (real ultrasound with much text, Dec 2026)
        if n >= first_flat and _repeats(line[0], found[:kept_tophat]):
            continue
        if prefilter and not text_like(labels, line, across):
            continue
        if (
            prefilter
            and classify
            and not line_classifier.is_text(gray, labels, stats, *line, across)
        ):
            continue
        found.append(line[0])
        found_views.append(views[n])
        found_darks.append(darks[n])
        if n < first_flat:
            kept_tophat = len(found)
    out = []
    for (x0, y0, x1, y1), view, dark in zip(found, found_views, found_darks, strict=True):
        box = Box(round(x0 / scale), round(y0 / scale), round(x1 / scale), round(y1 / scale),
                  frame, SCREEN)  # fmt: skip
        out.append(Region(box, view, dark))
    return out
