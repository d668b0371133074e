"""The frame strip of a held image (issue 25): thumbnails of the frames text was found on
and a sample of the others, boxes outlined in a colour a reviewer sees on a dark image,
at most ``thumbnail.MAX_FRAMES`` of them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pixel_images import Planted, plant, us_dataset

from sendit_ops.core.settings import Settings
from sendit_ops.dicom.pixels import Box, PixelPlan, clean, thumbnail
from sendit_ops.sample_data import ultrasound_picture

SIZE, FRAMES = 256, 8


def rgb_of(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def outline_pixels(png: bytes, colour: tuple[int, int, int] = thumbnail.MASKED_OUTLINE):
    """(rows, columns) of the pixels of ``colour`` in a PNG."""
    return np.argwhere(np.all(rgb_of(png) == colour, axis=-1))


def cine(lines_on: dict[int, list[Planted]], frames: int = FRAMES):
    """An 8-bit grey ultrasound cine with ``lines_on[frame]`` burned into those frames only."""
    pictures = np.stack([ultrasound_picture(SIZE, SIZE, seed=3) for _ in range(frames)])
    for f, lines in lines_on.items():
        plant(pictures[f], lines)
    ds = us_dataset(pictures[0], seed=4)
    ds.NumberOfFrames = frames
    ds.PixelData = np.ascontiguousarray(pictures).tobytes()
    return ds


@pytest.mark.unit
def test_strip_shows_the_frames_with_boxes_outlined_and_a_sample():
    frames = np.zeros((30, 200, 100, 3), dtype=np.uint8)  # dark: a black mask is invisible
    boxes = [Box(10, 20, 60, 40, 2), Box(5, 150, 90, 170, 5), Box(0, 0, 8, 8, 9, "unmasked")]
    thumbs, rest = thumbnail.strip(30, [2, 5, 9], lambda f: frames[f], boxes)
    shown = [t.frame for t in thumbs]
    assert {2, 5, 9} <= set(shown) and 0 in shown  # the marked frames and a sample
    assert len(shown) == 3 + thumbnail.SAMPLE and rest == 30 - len(shown)
    two = next(t for t in thumbs if t.frame == 2)
    # masked boxes apply to every frame; unmasked text only to the frame it was read on
    assert {b.frame for b in two.boxes} == {2, 5}
    nine = next(t for t in thumbs if t.frame == 9)
    assert any(b.source == "unmasked" for b in nine.boxes)
    size = Image.open(io.BytesIO(two.png)).size
    assert max(size) <= thumbnail.MAX_SIDE
    # the outline is drawn around the box, scaled to the thumbnail (x 10-60, y 20-40 of a
    # 100x200 image shrunk to 128x256: 1.28 px per pixel)
    ys, xs = outline_pixels(two.png).T
    assert len(ys) and xs.min() <= 12 and ys.min() <= 25 and ys.max() >= 50
    assert len(outline_pixels(nine.png, thumbnail.TEXT_OUTLINE))
    assert not len(outline_pixels(two.png, thumbnail.TEXT_OUTLINE))


@pytest.mark.unit
def test_strip_is_capped_and_says_how_many_are_left_out():
    count = 500
    marked = range(0, count, 7)  # 72 frames with findings
    rendered: list[int] = []

    def render(f: int) -> np.ndarray:
        rendered.append(f)
        return np.full((64, 64, 3), f % 256, dtype=np.uint8)

    thumbs, rest = thumbnail.strip(count, marked, render, [Box(1, 1, 9, 9, 0)])
    assert len(thumbs) == thumbnail.MAX_FRAMES and rest == count - thumbnail.MAX_FRAMES
    assert sorted(rendered) == [t.frame for t in thumbs]  # only the shown frames rendered
    assert thumbs[0].frame == 0 and thumbs[-1].frame == 497  # spread over the findings
    assert all(t.frame % 7 == 0 for t in thumbs)
    # a single frame, nothing marked: that frame alone
    assert thumbnail.chosen_frames(1, []) == [0]
    assert thumbnail.chosen_frames(3, []) == [0, 1, 2]


@pytest.mark.emulator  # OCR on every frame of a small cine (a few seconds)
def test_held_cine_shows_the_frames_text_was_found_on_with_outlined_boxes():
    ds = cine(
        {
            2: [Planted("DOE, JANE Q", 20, 60, 18)],
            5: [Planted("MRN-100234", 40, 200, 18)],
        }
    )
    plan = PixelPlan(None, (), SIZE, SIZE)  # screened (pixel_screening all), no header risk
    # a mask share this small holds the image: what a reviewer of a cine sees
    settings = Settings(pixel_cleaning="ocr", pixel_mask_max_share=0.0001)
    outcome = clean(ds, plan, settings, lambda text: False)
    assert not outcome.cleaned and "pixel_mask_max_share" in (outcome.held_reason or "")
    assert (outcome.rows, outcome.columns, outcome.frames) == (SIZE, SIZE, FRAMES)
    frames = {t.frame: t for t in outcome.strip}
    assert {2, 5} <= set(frames), sorted(frames)
    assert len(frames) <= thumbnail.MAX_FRAMES
    assert outcome.frames_not_shown == FRAMES - len(frames)
    for f, y in ((2, 60), (5, 200)):
        found = [b for b in frames[f].boxes if b.frame == f]
        assert found and any(b.y0 <= y + 9 <= b.y1 for b in found)
        ys, _ = outline_pixels(frames[f].png).T  # 256 px: the thumbnail is full size
        assert ((ys >= y - 8) & (ys <= y)).any() and ((ys >= y + 16) & (ys <= y + 28)).any()
    # nothing of the text read is in the outcome
    assert "DOE" not in repr(outcome) + str(outcome.as_dict())
