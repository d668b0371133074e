"""Text or not, for each line the screen chains, before any OCR (issue 22).

Why: every line the screen reports is read by the recognition model at the gate (~15 ms a
region) and, when it passes, read whole (~35 ms, often twice). On CT slices with anatomy
and on ultrasound speckle most lines are vessels, ribs and speckle grains that happen to
line up; the stroke count of ``screen.text_like`` lets ~7 a CT slice and ~23 a speckle
frame through. This step looks at what tells glyphs from those, on the line's own glyph
components and the grey crop around them:

- *separation*: glyphs are drawn at one value on a background of another; how much of
  the crop's grey variance the ink / background split explains (Otsu's measure). Speckle
  grains and vessels fade into their surroundings;
- *contrast* of ink to background over the *background's own spread* and the ink's
  spread: text stands out of its field by more than the field varies;
- *edges*: the grey gradient on the glyphs' border over the contrast (rendered glyphs
  step in a pixel or two; blurred anatomy ramps);
- *strokes*: the stroke width (distance transform) over the line's height and how much it
  varies; glyph heights' regularity; glyphs and holes per height of length; fill and the
  strokes crossed along the band (as ``text_like`` counts them).

The decision is a small ensemble of boosted trees over these features (100 trees of depth
3, evaluated with numpy, every tree a level at a time: ~0.1 ms a line), trained on generated data
(``devtools/train_line_classifier.py``: positives are the screen's lines on planted text
of several fonts, sizes, both polarities, turned by 90 degrees, on CT/MR anatomy, a
radiograph, ultrasound speckle and flat fields; negatives the screen's lines on text-free
generated CT/MR slices, speckle frames and the text-free real images), its weights in
``line_classifier.json``. Its threshold is set for recall, not
precision: a line dropped here is never read (a leak if it was text), a kept anatomy line
only costs a gate read. The threshold is the lowest score of any training line of text,
lowered by a margin (``margin`` in the JSON), so every training line is kept.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from sendit_ops.dicom.pixels.display import Picture

WEIGHTS = Path(__file__).with_name("line_classifier.json")
# the screen's component images: uint16 labels, or int32 where 16 bits could overflow
Labels = NDArray[np.integer[Any]]


def members(labels: Labels, ids: NDArray[np.int_]) -> NDArray[np.bool_]:
    """Where ``labels`` is one of ``ids`` (``np.isin``, the same result): by a lookup table
    over the labels up to the largest id (one past it False, for every larger label), ~5x
    faster than np.isin on a line's crop, and the screen asks it of ~25 lines a CT slice."""
    table = np.zeros(int(ids.max()) + 2, dtype=bool)
    table[ids] = True
    found: NDArray[np.bool_] = np.take(table, labels, mode="clip")
    return found


NAMES = (
    "log_height",
    "log_aspect",
    "glyphs_per_height",
    "fill",
    "runs_per_height",
    "separation",
    "contrast",
    "contrast_over_background",
    "contrast_over_ink",
    "edge",
    "stroke_over_height",
    "stroke_spread",
    "height_spread",
    "holes_per_height",
)


def quantiles(values: NDArray[Any], percents: tuple[float, ...]) -> list[float]:
    """``np.percentile(values, percents)`` (its default linear method, the same values to
    the bit) from one sort: a line's features take 7 quantiles of small arrays, and
    np.percentile's overhead per call was a third of the screen's time on speckle."""
    ordered = np.sort(values, axis=None)
    last = len(ordered) - 1
    out = []
    for percent in percents:
        position = last * (percent / 100)
        low = int(np.floor(position))
        weight = position - low
        a, b = ordered[low], ordered[min(low + 1, last)]
        step = float(b - a)
        out.append(float(b) - step * (1 - weight) if weight >= 0.5 else float(a) + step * weight)
    return out


def median(values: NDArray[Any]) -> float:
    """``np.median(values)`` (the same value to the bit), without its per-call overhead."""
    ordered = np.sort(values, axis=None)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2)


def features(
    gray: Picture, labels: Labels, stats: NDArray[np.int32],
    box: tuple[int, int, int, int], ids: NDArray[np.int_], across: bool,
) -> NDArray[np.float64]:  # fmt: skip
    """The features (``NAMES``) of one line: its box, the labels of its glyph components
    in ``labels`` and their ``stats`` (the screen's component image and
    ``connectedComponentsWithStats`` rows, label ``i`` at row ``i - 1``), and the 8-bit
    frame ``gray``."""
    x0, y0, x1, y1 = box
    rows, columns = gray.shape
    tall0 = (x1 - x0) if across else (y1 - y0)
    pad = max(2, tall0 // 3)
    cx0, cy0, cx1, cy1 = (
        max(0, x0 - pad),
        max(0, y0 - pad),
        min(columns, x1 + pad),
        min(rows, y1 + pad),
    )
    crop = gray[cy0:cy1, cx0:cx1].astype(np.float32)
    sub = labels[cy0:cy1, cx0:cx1]
    ink = members(sub, ids)
    inner = np.zeros_like(ink)
    inner[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0] = True
    if across:  # read along the line
        crop, ink, inner, sub = crop.T, ink.T, inner.T, sub.T
    ink_u8 = ink.astype(np.uint8)
    near = cv2.dilate(ink_u8, np.ones((3, 3), np.uint8)).astype(bool)
    background = ~near
    box_ink = ink[inner.any(axis=1)][:, inner.any(axis=0)]
    tall, long_ = box_ink.shape
    ink_values = crop[ink]
    bg_values = crop[background]
    if not len(bg_values):
        bg_values = crop[~ink] if (~ink).any() else crop.ravel()
    ink_q1, ink_med, ink_q3 = quantiles(ink_values, (25, 50, 75))
    bg_q1, bg_med, bg_q3 = quantiles(bg_values, (25, 50, 75))
    contrast = abs(ink_med - bg_med)
    bg_spread = bg_q3 - bg_q1
    ink_spread = ink_q3 - ink_q1
    # Otsu's separation: share of the variance explained by the ink / background split
    both = np.concatenate([ink_values, bg_values])
    total = float(both.var()) + 1e-6
    w = len(ink_values) / len(both)
    between = w * (1 - w) * (float(ink_values.mean()) - float(bg_values.mean())) ** 2
    separation = between / total
    # gradient on the glyphs' border over the contrast
    gx = cv2.Sobel(crop, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(crop, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.hypot(gx, gy) / 4.0  # a unit step reads 4 on a 3x3 Sobel
    border = near & ~cv2.erode(ink_u8, np.ones((3, 3), np.uint8)).astype(bool)
    edge = quantiles(magnitude[border], (75,))[0] / (contrast + 4.0) if border.any() else 0.0
    # strokes: twice the distance to the background on the ridge of each stroke
    distance = cv2.distanceTransform(ink_u8, cv2.DIST_L2, 3)
    ridge = ink & (distance >= cv2.dilate(distance, np.ones((3, 3), np.uint8)))
    widths = 2 * distance[ridge] if ridge.any() else np.array([1.0])
    stroke = median(widths)
    stroke_spread = float(widths.std()) / (stroke + 1e-6)
    # glyph heights and holes
    h_arr = stats[ids - 1, cv2.CC_STAT_WIDTH if across else cv2.CC_STAT_HEIGHT].astype(np.float64)
    height_spread = float(h_arr.std() / (h_arr.mean() + 1e-6))
    # holes: background pieces not touching the box's border
    n_bg, bg_lab = cv2.connectedComponents((~box_ink).astype(np.uint8), connectivity=4)
    edge_labels = np.unique(np.concatenate([bg_lab[0], bg_lab[-1], bg_lab[:, 0], bg_lab[:, -1]]))
    holes = max(0, n_bg - 1 - int((edge_labels > 0).sum()))
    lo = int(0.2 * tall)
    band = box_ink[lo : max(lo + 1, int(np.ceil(0.8 * tall)))]
    runs = int((band[:, :1].sum(axis=1) + (band[:, 1:] & ~band[:, :-1]).sum(axis=1)).max())
    lengths = long_ / max(1, tall)
    return np.array([
        np.log(tall),
        np.log(lengths),
        len(ids) / lengths,
        float(box_ink.mean()),
        runs / lengths,
        separation,
        contrast / 255.0,
        np.log((contrast + 1.0) / (bg_spread + 1.0)),
        np.log((contrast + 1.0) / (ink_spread + 1.0)),
        edge,
        stroke / tall,
        stroke_spread,
        height_spread,
        holes / lengths,
    ])  # fmt: skip


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    """The trained model (``line_classifier.json``), checked against ``NAMES``."""
    data: dict[str, Any] = json.loads(WEIGHTS.read_text())
    if tuple(data["names"]) != NAMES:
        raise ValueError("line_classifier.json was trained on other features: retrain it")
    return data


def _arrays(model: dict[str, Any]) -> tuple[NDArray[Any], ...]:
    """The trees as arrays (trees x nodes, padded), a leaf pointing to itself."""
    trees = model["trees"]
    width = max(len(t["feature"]) for t in trees)
    feature = np.zeros((len(trees), width), np.int64)
    threshold = np.zeros((len(trees), width))
    left = np.tile(np.arange(width), (len(trees), 1))
    right = left.copy()
    value = np.zeros((len(trees), width))
    for i, t in enumerate(trees):
        n = len(t["feature"])
        inner = np.asarray(t["left"]) != -1
        feature[i, :n] = np.where(inner, t["feature"], 0)
        threshold[i, :n] = t["threshold"]
        left[i, :n] = np.where(inner, t["left"], np.arange(n))
        right[i, :n] = np.where(inner, t["right"], np.arange(n))
        value[i, :n] = t["value"]
    depth = 1
    while (1 << depth) < width + 1:
        depth += 1
    return feature, threshold, left, right, value, np.array(depth)


def raw_score(
    model: dict[str, Any],
    values: NDArray[np.float64],
    arrays: tuple[NDArray[Any], ...] | None = None,
) -> float:
    """The boosted trees' log-odds for one line's features: the bias plus the rate times
    the leaf each tree sends the line to (a tree's node goes left when its feature is at
    most its threshold; a leaf has no children, ``left`` -1). All trees step together."""
    feature, threshold, left, right, value, depth = arrays or _arrays(model)
    rows = np.arange(len(feature))
    node = np.zeros(len(feature), np.int64)
    for _ in range(int(depth)):
        f = feature[rows, node]
        node = np.where(values[f] <= threshold[rows, node], left[rows, node], right[rows, node])
    return float(model["bias"]) + float(model["rate"]) * float(value[rows, node].sum())


@lru_cache(maxsize=1)
def _compiled() -> tuple[NDArray[Any], ...]:
    return _arrays(load())


def score(values: NDArray[np.float64]) -> float:
    """The model's log-odds for one line's features (higher: more like text)."""
    return raw_score(load(), values, _compiled())


def is_text(
    gray: Picture, labels: Labels, stats: NDArray[np.int32],
    box: tuple[int, int, int, int], ids: NDArray[np.int_], across: bool,
) -> bool:  # fmt: skip
    """Whether the line may be text (kept for OCR): its score at or above the threshold."""
    values = features(gray, labels, stats, box, ids, across)
    return score(values) >= float(load()["threshold"])
