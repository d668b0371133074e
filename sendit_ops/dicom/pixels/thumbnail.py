"""Small PNGs of the masked output, for the reviewer of a held or cleaned image.

A held image gets a frame strip (``strip``): a thumbnail of every frame a reviewer must
see (the frames text was found on, masked or not) and, for a cine, a few others spread over
it, each with the boxes outlined in a colour that stays visible where the mask itself (a
black fill) does not: on a dark ultrasound background a filled box is invisible.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image, ImageDraw

from sendit_ops.dicom.pixels.display import Picture
from sendit_ops.dicom.pixels.model import Box, FrameThumb

MAX_SIDE = 256
# Why a cap: a held cine may have hundreds of frames; a 256 px PNG is 20-100 kB, so one
# thumbnail per frame would put megabytes per image in the batch's review folder and on the
# page, and render every frame once more. A reviewer needs the frames text was found on and
# a sample of the others (burned-in text is static and every box is masked on every frame),
# so at most MAX_FRAMES are made, one frame at a time; the rest are counted, not shown.
MAX_FRAMES = 12
SAMPLE = 4  # frames without findings shown besides those with, spread over the cine
MASKED_OUTLINE = (255, 0, 255)  # magenta: a masked box (rare in grey or ultrasound images)
TEXT_OUTLINE = (255, 255, 0)  # yellow: text read there and NOT masked (why it is held)
UNMASKED_SOURCE = "unmasked"  # source of a box where text was read and nothing masked
UNMASKED = frozenset(
    {"residual", UNMASKED_SOURCE}
)  # "residual": stage.RESIDUAL;  # box sources drawn in TEXT_OUTLINE


def png(rgb: Picture, max_side: int = MAX_SIDE, boxes: Iterable[Box] = ()) -> bytes:
    """PNG bytes of an (rows, columns, 3) uint8 image, shrunk to fit ``max_side``, with
    ``boxes`` (image coordinates) outlined: masked ones in MASKED_OUTLINE, text left
    unmasked (source in UNMASKED) in TEXT_OUTLINE."""
    rows, columns = rgb.shape[:2]
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    image.thumbnail((max_side, max_side))
    draw = ImageDraw.Draw(image)
    sx, sy = image.width / max(1, columns), image.height / max(1, rows)
    for b in boxes:
        # outside the box's edge (the line would hide a thin box's content), at least 2 px
        x0, y0 = max(0, int(b.x0 * sx) - 2), max(0, int(b.y0 * sy) - 2)
        x1 = min(image.width - 1, int(np.ceil(b.x1 * sx)) + 1)
        y1 = min(image.height - 1, int(np.ceil(b.y1 * sy)) + 1)
        colour = TEXT_OUTLINE if b.source in UNMASKED else MASKED_OUTLINE
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=2)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def chosen_frames(
    count: int, marked: Iterable[int], cap: int = MAX_FRAMES, sample: int = SAMPLE
) -> list[int]:
    """The frames a strip shows, in order: the ``marked`` ones (text found there; spread
    evenly when there are more than ``cap``), then up to ``sample`` others spread over the
    image (the first frame when nothing is marked), never more than ``cap`` in all."""
    if count <= 0:
        return []
    hits = sorted({f for f in marked if 0 <= f < count})
    if len(hits) > cap:
        hits = (
            [hits[round(i * (len(hits) - 1) / (cap - 1))] for i in range(cap)]
            if cap > 1
            else hits[:1]
        )
    room = min(sample, cap - len(hits)) if hits else min(max(sample, 1), cap)
    others = [f for f in range(count) if f not in set(hits)]
    extra: list[int] = []
    if room > 0 and others:
        if room == 1:
            extra = [others[0]]
        else:
            step = (len(others) - 1) / (room - 1)
            extra = list(dict.fromkeys(others[round(i * step)] for i in range(room)))
    return sorted(hits + extra)


def strip(
    count: int,
    marked: Iterable[int],
    render: Callable[[int], Picture],
    boxes: Iterable[Box],
    cap: int = MAX_FRAMES,
) -> tuple[tuple[FrameThumb, ...], int]:
    """The frame strip of an image of ``count`` frames: a thumbnail of each frame
    ``chosen_frames`` picks, ``render(frame)`` giving its RGB (the masked output), with the
    boxes outlined that apply to it (masked boxes apply to every frame: burned-in text is
    static; unmasked text only to the frame it was read on, or every frame when read on a
    projection). Frames are rendered one at a time: memory stays at one frame and the PNGs.
    Returns (thumbnails, frames not shown)."""
    boxes = tuple(boxes)
    shown = chosen_frames(count, marked, cap)
    thumbs = []
    for f in shown:
        on = tuple(b for b in boxes if b.source not in UNMASKED or b.frame is None or b.frame == f)
        thumbs.append(FrameThumb(f, png(render(f), boxes=on), on))
    return tuple(thumbs), count - len(shown)
