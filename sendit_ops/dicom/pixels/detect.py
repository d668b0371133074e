"""Boxes around the text OCR reads, grown a little to cover anti-aliased glyph edges."""

from __future__ import annotations

import numpy as np

from sendit_ops.dicom.pixels import ocr
from sendit_ops.dicom.pixels.display import Display
from sendit_ops.dicom.pixels.model import OCR, Box


def pad_for(height: int) -> int:
    """Margin around a text line: a fifth of its height, at least 2 pixels."""
    return max(2, round(height * 0.2))


def hit_box(hit: ocr.TextHit, frame: int | None, rows: int, columns: int) -> Box | None:
    """The box to mask for one OCR hit (padded, clipped to the image)."""
    box = Box(hit.x0, hit.y0, hit.x1, hit.y1, frame, OCR).padded(pad_for(hit.y1 - hit.y0))
    return box.clipped(rows, columns)


def ocr_boxes(display: Display, frames: np.ndarray, engine: str) -> list[Box]:
    """Boxes of every text line OCR finds in the views of ``frames`` (see Display.views)."""
    rows, columns = frames.shape[1:3]
    boxes: list[Box] = []
    for frame, image in display.views(frames):
        for hit in ocr.read(image, engine):
            box = hit_box(hit, frame, rows, columns)
            if box is not None:
                boxes.append(box)
    return boxes


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
