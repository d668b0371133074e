"""The pixel stage for one image: decode, find text, mask, re-encode, verify.

Runs on the header-anonymized dataset in memory, with the plan made from the original header.
An image is delivered only when OCR, reading the re-encoded output again, finds nothing but
allow-listed technical text; otherwise it is held with a PHI-free reason and its pixel data
is put back as it was. No exception escapes: a codec or engine failure is a held image.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
from pydicom.dataset import Dataset

from sendit_ops.core.settings import Settings
from sendit_ops.dicom.pixels import check, detect, mask, ocr, thumbnail
from sendit_ops.dicom.pixels.codec import (
    Decoded,
    UndecodableError,
    decode,
    restore,
    snapshot,
    write_back,
)
from sendit_ops.dicom.pixels.display import Display
from sendit_ops.dicom.pixels.model import Box, PixelOutcome, PixelPlan

log = logging.getLogger("sendit.pixels")
RESIDUAL = "residual"  # source of a box where text was still read after masking
EXTRA_ROUNDS = 1  # in "ocr" mode, text read at verification is masked once more, then verified


def _held(reason: str, start: float, **kw: object) -> PixelOutcome:
    log.info("pixel stage: image held (%s)", reason)
    return PixelOutcome(False, reason, seconds=time.perf_counter() - start, **kw)  # type: ignore[arg-type]


Hits = list[tuple[int | None, ocr.TextHit]]


MIN_CONTRAST = 8  # grey levels (of 255) a rendered view must span when the data is not flat


class FlatRenderingError(Exception):
    """The image renders (nearly) uniform although its data is not: OCR cannot vouch for it."""


def _read(display: Display, frames: np.ndarray, engine: str) -> Hits:
    """Every line OCR reads in the views of ``frames``, with the frame it was read on.

    A rendering that hides the data (all views almost one grey while the stored values vary)
    would let text through unread, so it raises FlatRenderingError instead."""
    views = list(display.views(frames))
    varies = bool(frames.min() < frames.max())
    if varies and all(int(v.max()) - int(v.min()) < MIN_CONTRAST for _, v in views):
        raise FlatRenderingError
    return [(f, hit) for f, image in views for hit in ocr.read(image, engine)]


def clean(
    ds: Dataset,
    plan: PixelPlan,
    settings: Settings,
    is_identifying: Callable[[str], bool],
    *,
    released: bool = False,
) -> PixelOutcome:
    """Clean the burned-in text of ``ds`` (modified in place only when the outcome is
    ``cleaned``). ``plan`` comes from :func:`plan_pixels` on the ORIGINAL header;
    ``is_identifying`` tells whether OCR text names the study's identifiers (see
    :func:`identifier_matcher`).

    ``released``: a reviewer has seen this image's masked thumbnail and released it. Text
    still read after masking then no longer holds the image: the masked output the reviewer
    saw is kept (``cleaned``, ``released`` set). An image that cannot be decoded or masked
    is held all the same: there is nothing a reviewer could have seen."""
    start = time.perf_counter()
    mode = settings.pixel_cleaning
    if mode == "off":
        return _held("pixel cleaning is off and the image may carry burned-in text", start)
    try:
        decoded = decode(ds)
    except UndecodableError as exc:
        return _held(str(exc), start)
    saved = snapshot(ds)
    try:
        return _clean(ds, decoded, plan, settings, is_identifying, start, released)
    except FlatRenderingError:
        restore(ds, saved)
        reason = "the image renders almost uniform: OCR cannot verify it"
        return _held(reason, start, frames=decoded.count)
    except Exception as exc:  # never let a codec or the engine stop the batch; never echo text
        restore(ds, saved)
        return _held(f"pixel stage failed ({type(exc).__name__})", start, frames=decoded.count)


def _clean(
    ds: Dataset,
    decoded: Decoded,
    plan: PixelPlan,
    settings: Settings,
    is_identifying: Callable[[str], bool],
    start: float,
    released: bool = False,
) -> PixelOutcome:
    rows, columns = decoded.frames.shape[1:3]
    engine = settings.ocr_engine
    boxes: list[Box] = [b for b in (x.clipped(rows, columns) for x in plan.boxes) if b]
    display = Display(decoded, ds)
    if settings.pixel_cleaning == "ocr":
        boxes = detect.unique_boxes(boxes + detect.ocr_boxes(display, decoded.frames, engine))
    value = mask.fill_value(decoded, ds)
    saved = snapshot(ds)
    rounds = EXTRA_ROUNDS if settings.pixel_cleaning == "ocr" else 0
    while True:
        masked = mask.apply(decoded.frames, boxes, value)
        syntax = write_back(ds, masked, decoded)
        again = decode(ds)
        if again.frames.shape != masked.shape or not np.array_equal(again.frames, masked):
            restore(ds, saved)
            return _held("re-encoded pixels differ from the masked pixels", start,
                         boxes=tuple(boxes), frames=decoded.count)  # fmt: skip
        seen = _read(display, again.frames, engine)
        left = check.residual([h for _, h in seen], settings.pixel_allow_list, is_identifying)
        if not left or (released and rounds == 0):
            break
        if rounds == 0:
            restore(ds, saved)
            extra = [
                Box(b.x0, b.y0, b.x1, b.y1, b.frame, RESIDUAL)
                for f, h in seen
                if h in left and (b := detect.hit_box(h, f, rows, columns)) is not None
            ]
            return _held(
                f"text remains after masking: {len(left)} line(s) not on the allow-list "
                "or naming an identifier",
                start,
                boxes=(*boxes, *extra),
                frames=decoded.count,
                thumbnail_png=thumbnail.png(display.render(masked[:1])[0]),
            )  # fmt: skip
        rounds -= 1
        restore(ds, saved)
        found = [b for f, h in seen if (b := detect.hit_box(h, f, rows, columns)) is not None]
        boxes = detect.unique_boxes(boxes + found)
    ds.BurnedInAnnotation = "NO"
    preview = display.render(masked[:1])[0]
    outcome = PixelOutcome(
        cleaned=True,
        held_reason=None,
        boxes=tuple(boxes),
        frames=decoded.count,
        thumbnail_png=thumbnail.png(preview),
        seconds=time.perf_counter() - start,
        transfer_syntax=str(syntax),
        released=bool(left),
    )
    log.info(
        "pixel stage: %d frame(s), %d box(es) masked, verified in %.2f s",
        outcome.frames,
        len(boxes),
        outcome.seconds,
    )
    return outcome
