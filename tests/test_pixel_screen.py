"""Issue 22: every frame of every image is screened for text, only text is masked, and only
what cannot be decided is held.

Planted text: 8-40 px high at random positions, bright and dark, rotated by 90 degrees, on
CT / MR / CR / DX / US / SC / PT images with and without header flags, and on 1-3 of the 40
frames of a cine, moving between frames. Each image must come out delivered with every
inked pixel inside a masked box and no identifier readable by an independent OCR reader
(rapidocr with its own defaults: it scales a frame UP to 736 px, unlike the stage), or HELD
with a reason. Precision: text-free images no one here drew, and generated slices with
anatomy, come out with 0 masked pixels (or held, counted).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import deid_data
import numpy as np
import pydicom
import pytest
from pixel_images import (
    Planted,
    acquisition,
    fonts,
    ink,
    stored_text,
    us_dataset,
)
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from sendit_ops.core.errors import ConfigError
from sendit_ops.core.settings import Settings, load_settings
from sendit_ops.dicom.filters import load_filter_recipe
from sendit_ops.dicom.pixels import PixelPlan, clean, identifier_matcher, plan_pixels, text_risk
from sendit_ops.dicom.pixels import screen as screen_module
from sendit_ops.dicom.pixels.codec import decode
from sendit_ops.dicom.pixels.display import Display
from sendit_ops.sample_data import anatomy_slice, ultrasound_picture

warnings.filterwarnings("ignore", module="pydicom")
RECIPE = load_filter_recipe(None)
SETTINGS = Settings()
DEID = Path(deid_data.__file__).parent / "data"
STRINGS = ["DOE, JANE", "MRN-100234", "03/04/1971", "ROE RICHARD", "ACC20001", "1958-07-12"]
IDENTIFIERS = identifier_matcher(
    ["DOE", "JANE", "MRN-100234", "100234", "ROE", "RICHARD", "ACC20001"],
    ["19710304", "19580712"],
)
_reader = None


def reader():
    """An OCR reader independent of the stage's settings (rapidocr's defaults)."""
    global _reader
    if _reader is None:
        from rapidocr import RapidOCR

        _reader = RapidOCR(params={"Global.log_level": "critical"})
    return _reader


def readable(ds: Dataset, frames: list[int] | None = None) -> list[str]:
    """What the independent reader reads on the given frames (all by default) of ``ds``."""
    decoded = decode(ds)
    display = Display(decoded, ds)
    chosen = range(decoded.count) if frames is None else frames
    out = []
    for f in chosen:
        rgb = display.render(decoded.frames[f : f + 1])[0]
        result = reader()(np.ascontiguousarray(rgb[..., ::-1]))
        out += [str(t) for t in (result.txts or ())]
    return out


def plan_for(ds: Dataset) -> PixelPlan:
    """The plan the pipeline makes (``pipeline.steps.anonymize.pixel_plan``, screening all)."""
    if text_risk(ds, RECIPE):
        return plan_pixels(ds, RECIPE)
    return PixelPlan(None, (), int(ds.Rows), int(ds.Columns))


def inside(boxes, rows: int, columns: int) -> np.ndarray:
    area = np.zeros((rows, columns), dtype=bool)
    for b in boxes:
        area[b.y0 : b.y1, b.x0 : b.x1] = True
    return area


def random_lines(rng: np.random.Generator, size: int, count: int = 2) -> list[Planted]:
    """Lines of identifying text, 8-40 px high, at random places that fit the image and do
    not overlap each other (annotations do not)."""
    names = fonts()
    out: list[Planted] = []
    taken: list[tuple[int, int, int, int]] = []
    for n in range(count):
        text = STRINGS[int(rng.integers(len(STRINGS)))]
        height = int(rng.integers(8, 41))
        width = int(height * 0.7 * len(text)) + 10
        for _ in range(50):
            x = int(rng.integers(0, max(1, size - width)))
            y = int(rng.integers(0, size - height - 4))
            box = (x - 4, y - 4, x + width + 4, y + height + 8)
            if not any(box[0] < t[2] and t[0] < box[2] and box[1] < t[3] and t[1] < box[3]
                       for t in taken):  # fmt: skip
                break
        taken.append(box)
        level = int(rng.choice([255, 230, 0, 20]))  # bright and dark text
        out.append(
            Planted(text, x, y, height, level, names[(n + int(rng.integers(9))) % len(names)])
        )
    return out


COVERED = 0.95  # of a line's visible ink inside the masks (anti-aliased ends aside)


def visible_ink(before: np.ndarray, after: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Inked pixels that actually show (the text differs from what was under it)."""
    diff = np.abs(after.astype(np.int64) - before.astype(np.int64))
    span = max(1, int(before.max()) - int(before.min()))
    return (cover > 0.5) & (diff > 0.15 * span)


# ---- the screen alone (fast: unit tier) --------------------------------------------------


@pytest.mark.unit
def test_screen_finds_planted_lines_of_every_size_polarity_and_direction():
    rng = np.random.default_rng(22)
    for trial in range(48):
        modality = ("CT", "MR")[trial % 2]
        view = anatomy_slice(512, trial % 6, modality)
        gray = (view.astype(np.float32) * 255 / view.max()).astype(np.uint8)
        lines = random_lines(rng, 512, 1)
        cover = np.maximum.reduce([ink(line, 512, 512) for line in lines])
        planted = stored_text(gray, cover, lines[0].level)
        if trial % 3 == 0:  # rotated by 90 degrees
            planted, cover, gray = (
                np.ascontiguousarray(np.rot90(a)) for a in (planted, cover, gray)
            )
        shows = visible_ink(gray, planted, cover)
        if shows.sum() < 20:
            continue  # dark text on black air: nothing to see, nothing to find
        boxes = screen_module.candidates(planted)
        found = inside([b.padded(3) for b in boxes], 512, 512)[shows].mean()
        assert found >= 0.3, (trial, lines[0])


@pytest.mark.unit
def test_screen_finds_nothing_in_noise_and_flat_images_and_little_in_real_slices():
    """The screen aims at recall (what it reports is read, never masked as such), but it
    must stay quiet where there is nothing: noise, a flat image; a few regions at most on
    real CT slices no one here drew."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (512, 512), dtype=np.uint8)
    assert screen_module.candidates(noise) == []
    assert screen_module.candidates(np.full((256, 256), 100, np.uint8)) == []
    for path in (DEID / "humans" / "ctbrain1.dcm", DEID / "humans" / "ctbrain2.dcm"):
        ds = pydicom.dcmread(path)
        decoded = decode(ds)
        assert len(screen_module.candidates(Display(decoded, ds).gray(decoded.frames[0]))) <= 5


JAPANESE_FONT = Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")


@pytest.mark.unit
def test_the_fonts_of_planted_text_are_installed():
    """The planted-text tests draw in DejaVu (three faces) and a Japanese font; without them
    they would quietly test fewer fonts (``make test-deps`` installs them)."""
    assert {"DejaVuSans.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf"} <= set(fonts())
    assert JAPANESE_FONT.is_file(), "install fonts-droid-fallback (make test-deps)"


def _whole_line(cover: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Labels of the glyphs in ``cover`` and the line of all of them, as the screen's step 3
    hands a line to its pre-filter."""
    mask = (cover > 0.5).astype(np.uint8)
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    rows, columns = np.nonzero(mask)
    box = (int(columns.min()), int(rows.min()), int(columns.max()) + 1, int(rows.max()) + 1)
    return labels.astype(np.int32), (box, np.arange(1, count))


def _japanese(text: str, height: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (512, 128), 0)
    font = ImageFont.truetype(str(JAPANESE_FONT), height)
    ImageDraw.Draw(image).text((10, 10), text, fill=255, font=font)
    return np.asarray(image, dtype=np.float32) / 255.0


@pytest.mark.unit
def test_prefilter_keeps_text_lines_and_drops_vessels_and_the_table_curve():
    """The screen's pre-filter (``screen.text_like``): a line of text in every font here,
    8-40 px, level or turned by 90 degrees, Latin or Japanese, shows the strokes of text; a
    vessel with a dot beside it, a thin curve (the CT table) and a rib do not. On CT slices
    with anatomy it drops most of the screen's lines and every line on the table.
    (Not pinned: a line of two single-stroke characters such as "11", or "45Y" 8 px high
    in a bold serif font, is dropped.)"""
    lines = [(text, font) for text in ("DOE, JANE", "03/04/1971", "MRN-100234", "45Y", "JD")
             for font in fonts()]  # fmt: skip
    lines += [("山田 太郎", "japanese"), ("東京病院 放射線科", "japanese"), ("ヤマダ", "japanese")]
    for text, font in lines:
        for height in (10, 16, 24, 32, 40) if text == "45Y" else (8, 12, 16, 24, 32, 40):
            if font == "japanese":
                cover = _japanese(text, height)
            else:
                cover = ink(Planted(text, 10, 10, height, 255, font), 128, 512)
            for turned in (False, True):
                labels, line = _whole_line(np.rot90(cover) if turned else cover)
                assert screen_module.text_like(labels, line, turned), (text, font, height, turned)
    canvas = np.zeros((128, 512), np.float32)
    cv2.line(canvas, (10, 10), (40, 24), 1.0, 2)  # a vessel segment and a dot beside it
    cv2.circle(canvas, (50, 18), 3, 1.0, -1)
    assert not screen_module.text_like(*_whole_line(canvas), False)
    canvas[:] = 0
    cv2.ellipse(canvas, (256, 20), (240, 30), 0, 0, 90, 1.0, 4)  # the table's curve
    assert not screen_module.text_like(*_whole_line(canvas), False)
    canvas[:] = 0
    cv2.ellipse(canvas, (60, 60), (18, 7), 20, 0, 360, 1.0, -1)  # a rib
    cv2.ellipse(canvas, (96, 62), (18, 7), 10, 0, 360, 1.0, -1)
    assert not screen_module.text_like(*_whole_line(canvas), False)
    before = after = 0
    for seed in range(6):
        view = anatomy_slice(512, 200 + seed, "CT")
        gray = (view.astype(np.float32) * 255 / view.max()).astype(np.uint8)
        before += len(screen_module.candidates(gray, prefilter=False))
        kept = screen_module.candidates(gray)
        after += len(kept)
        assert not [b for b in kept if b.y0 >= 400], seed  # the table lies below row 400
    assert after <= 0.3 * before, (before, after)


def _found_by_screen(gray: np.ndarray, shows: np.ndarray) -> bool:
    return any(shows[b.y0 : b.y1, b.x0 : b.x1].sum() >= 4 for b in screen_module.candidates(gray))


@pytest.mark.unit
def test_line_classifier_keeps_text_lines_and_drops_speckle_and_anatomy():
    """The screen's text / non-text decision (``line_classifier``, after ``text_like``): a
    line of text in every font here (DejaVu Serif Bold and Hershey complex were held out of
    its training; Japanese too), 10-40 px, bright or dark, level or turned by 90 degrees, on
    a flat field, a CT slice with anatomy and ultrasound speckle, is still reported wherever
    the pre-filter alone reports it; on speckle frames and CT slices without text it drops
    most of what the pre-filter lets through. (Not pinned: dark text with 1 px strokes on
    speckle, whose pieces the screen finds stand out of the speckle by less than the
    speckle varies: a 16 px dark Hershey line's fragment the gate reads as text is
    dropped. The gate reads none of 63 such lines on another speckle field.)"""
    lines = [(text, font) for text in ("DOE, JANE", "MRN-100234", "03/04/1971") for font in fonts()]
    lines += [("山田 太郎", "japanese"), ("東京病院 放射線科", "japanese")]
    fields = {
        "flat": np.full((512, 512), 40, np.uint8),
        "CT": anatomy_slice(512, 300, "CT"),
        "speckle": ultrasound_picture(512, 512, 300),
    }
    rng = np.random.default_rng(22)
    checked = 0
    for n, (text, font) in enumerate(lines):
        for height in (10, 16, 24, 40):
            for level in (255, 0):
                names = list(fields) if level else ["flat", "CT"]
                name = names[(n + height) % len(names)]
                field = fields[name]
                x, y = int(rng.integers(10, 160)), int(rng.integers(60, 440))
                if font == "japanese":
                    cover = np.zeros((512, 512), np.float32)
                    cover[y : y + 128] = _japanese(text, height)[: 512 - y]
                    cover = np.roll(cover, x, axis=1)
                else:
                    cover = ink(Planted(text, x, y, height, 255, font), 512, 512)
                picture = stored_text(field, cover, level)
                view = (picture.astype(np.float32) * 255 / picture.max()).astype(np.uint8)
                turned = bool(rng.integers(2))
                if turned:
                    view, cover = np.ascontiguousarray(np.rot90(view)), np.rot90(cover)
                shows = (cover > 0.5) & (
                    np.abs(
                        view.astype(int) - np.rot90(field).astype(int)
                        if turned
                        else view.astype(int) - field
                    )
                    > 30
                )
                before = screen_module.candidates(view, classify=False)
                if not any(shows[b.y0 : b.y1, b.x0 : b.x1].sum() >= 4 for b in before):
                    continue  # the pre-filter does not report it: nothing to keep
                checked += 1
                assert _found_by_screen(view, shows), (text, font, height, level, name, turned)
    assert checked >= 0.4 * len(lines) * 8, checked  # dark text on black air does not show
    for frames in (ultrasound_picture(480, 640, seed) for seed in range(4)):
        before = len(screen_module.candidates(frames, classify=False))
        after = len(screen_module.candidates(frames))
        assert after <= max(1, 0.2 * before), (before, after)
    before = after = 0
    for seed in range(6):
        view = anatomy_slice(512, 400 + seed, "CT")
        gray = (view.astype(np.float32) * 255 / view.max()).astype(np.uint8)
        before += len(screen_module.candidates(gray, classify=False))
        after += len(screen_module.candidates(gray))
    assert after <= 0.4 * before, (before, after)


@pytest.mark.unit
def test_flat_strokes_find_dark_text_on_speckle_and_add_nothing_to_text_free_speckle(
    monkeypatch,
):
    """Dark text on ultrasound speckle (level 0 or 20 of 255: darker than the speckle's mean
    by less than the speckle varies) is found by the screen's flat strokes (pixels at a
    histogram-spike value, thin) and kept by the pre-filter and the line classifier; the
    top-hat masks alone find none of these lines. On text-free speckle frames the flat
    strokes add no region. (The stage reads such regions on their flat view: below.)"""
    lines = [
        Planted("MRN 100234", 20, 200, 38, 20, "pillow-default"),
        Planted("03/04/1971", 30, 220, 22, 0, "hershey-simplex"),
        Planted("ROE RICHARD", 40, 240, 24, 20, "hershey-simplex"),
    ]
    cases = []
    for n, line in enumerate(lines):
        picture = ultrasound_picture(512, 512, 40 + n)
        cover = ink(line, 512, 512)
        text = stored_text(picture, cover, line.level)
        cases.append((line, text, visible_ink(picture, text, cover)))
    frames = [ultrasound_picture(480, 640, seed) for seed in range(4)]
    with_flat = [screen_module.candidates(frame) for frame in frames]
    for line, text, shows in cases:
        assert _found_by_screen(text, shows), line
    monkeypatch.setattr(screen_module, "flat_strokes", lambda gray, seen=None: [])
    for line, text, shows in cases:
        assert not _found_by_screen(text, shows), line
    assert with_flat == [screen_module.candidates(frame) for frame in frames]


@pytest.mark.emulator
def test_dark_text_on_speckle_is_read_on_its_flat_view_and_masked():
    """A flat-stroke region (``screen.Region.flat``) is gated and read on the flat view of
    its value (black at that value, white elsewhere), not on the rendering, where dark text
    on speckle does not read: the stage masks the line and the independent reader reads no
    identifier on the output (issue 22; before, these two were delivered 0 % and 10 %
    masked)."""
    lines = [
        (41, Planted("03/04/1971", 30, 220, 22, 0, "hershey-simplex")),
        (42, Planted("ROE RICHARD", 40, 240, 24, 20, "hershey-simplex")),
    ]
    for seed, line in lines:
        picture = ultrasound_picture(512, 512, seed)
        cover = ink(line, 512, 512)
        text = stored_text(picture, cover, line.level)
        shows = visible_ink(picture, text, cover)
        assert any(r.flat is not None and shows[r.box.y0 : r.box.y1, r.box.x0 : r.box.x1].any()
                   for r in screen_module.regions(text)), line  # fmt: skip
        ds = us_dataset(text)
        outcome = clean(ds, plan_for(ds), SETTINGS, IDENTIFIERS)
        assert outcome.cleaned, outcome.held_reason
        assert inside(outcome.boxes, 512, 512)[shows].mean() >= COVERED, line
        assert not [t for t in readable(ds) if IDENTIFIERS(t)], line


@pytest.mark.unit
def test_the_flat_view_closes_one_pixel_gaps_in_strokes_and_leaves_lone_pixels():
    """Only a fully inked pixel carries the text's value: a thin stroke broken every other
    pixel is read on the flat view as one stroke; a lone speckle pixel at the value stays
    one pixel (issue 22: dark turned text on speckle was read as nothing)."""
    gray = np.full((40, 40), 30, np.uint8)
    gray[10, 5:30:2] = 0  # a stroke broken every other pixel
    gray[30, 20] = 0  # a lone pixel
    black = screen_module.flat_view(gray, 0)[..., 0] == 0
    assert black[10, 5:29].all()
    assert black[28:33, 18:23].sum() == 1


@pytest.mark.unit
def test_a_window_of_dark_strokes_is_read_stretched_over_its_darker_values():
    """A window is dark when its dark-stroke regions outweigh its others (the gaps
    between dark letters make bright regions too), and a dark window's crop is stretched
    from its darkest value to its median: dark text over dark tissue beside bright bone
    comes out black on white (issue 22)."""
    from sendit_ops.dicom.pixels import ocr
    from sendit_ops.dicom.pixels.model import SCREEN, Box

    regions = [Box(10, 10, 60, 22, 0, SCREEN), Box(20, 12, 40, 20, 0, SCREEN)]
    (window,) = ocr.windows(regions, 200, 200, dark=[True, False])
    assert window.dark
    (window,) = ocr.windows(regions, 200, 200, dark=[False, True])
    assert not window.dark
    crop = np.full((20, 40, 3), 30, np.uint8)
    crop[5:15, 5:20] = 0  # the text
    crop[:, 30:] = 250  # bone
    stretched = ocr._stretched(crop, dark=True)
    assert stretched[0, 0, 0] == 255 and stretched[10, 10, 0] == 0
    assert ocr._stretched(crop)[0, 0, 0] < 40  # over the whole range: still dark


@pytest.mark.unit
def test_screen_view_is_not_flattened_by_outlier_values():
    """Text at 4095 in a 16-bit image with one 65535 pixel: the linear view would show it at
    16 of 255; the screen's robust view shows it."""
    picture = anatomy_slice(256, 1, "CT")
    cover = ink(Planted("MRN-100234", 20, 20, 16, 255, "hershey-simplex"), 256, 256)
    picture = np.where(cover > 0.5, 4095, picture).astype(np.uint16)
    picture[0, 0] = 65535
    ds = acquisition("CT", picture)
    ds.BitsStored, ds.HighBit = 16, 15
    decoded = decode(ds)
    boxes = screen_module.candidates(Display(decoded, ds).gray(decoded.frames[0]))
    assert inside(boxes, 256, 256)[cover > 0.5].mean() > 0.5


@pytest.mark.unit
def test_new_settings_are_validated():
    s = load_settings({"pixel_screening": "header", "pixel_device": "cpu",
                       "pixel_mask_max_share": "0.05"})  # fmt: skip
    assert (s.pixel_screening, s.pixel_device, s.pixel_mask_max_share) == ("header", "cpu", 0.05)
    assert Settings().pixel_screening == "all" and Settings().pixel_device == "auto"
    with pytest.raises(ConfigError, match=r"pixel_screening.*all, header"):
        load_settings({"pixel_screening": "some"})
    with pytest.raises(ConfigError, match="pixel_mask_max_share"):
        load_settings({"pixel_mask_max_share": 3})
    with pytest.raises(ConfigError, match="pixel_device"):
        load_settings({"pixel_device": "tpu"})
    assert Settings().pixel_threads == 0
    assert load_settings({"pixel_threads": "1"}).pixel_threads == 1
    with pytest.raises(ConfigError, match="pixel_threads"):
        load_settings({"pixel_threads": 9})


@pytest.mark.unit
def test_one_bit_images_decode_and_write_back():
    from sendit_ops.dicom.pixels.codec import write_back

    bits = np.zeros((2, 64, 80), np.uint8)
    bits[0, 10:30, 5:50] = 1
    bits[1, 40:60, 20:70] = 1
    ds = acquisition("SC", bits)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    from pydicom.pixels.utils import pack_bits

    ds.PixelData = pack_bits(bits.ravel())
    decoded = decode(ds)
    assert decoded.frames.shape == (2, 64, 80) and np.array_equal(decoded.frames, bits)
    changed = bits.copy()
    changed[:, 0:8, 0:8] = 1
    write_back(ds, changed, decoded)
    assert np.array_equal(decode(ds).frames, changed)


@pytest.mark.unit
def test_a_read_line_is_continued_over_ink_at_its_ends_by_one_character_at_most():
    """OCR's box of a line stops at the last glyph it sees whole; the half glyph beyond it
    (on a field of the text's own value) is taken in, by one character's width at most,
    and only where the band beyond holds ink: on a plain field the box keeps its size."""
    from sendit_ops.dicom.pixels.detect import continued, pitch
    from sendit_ops.dicom.pixels.model import Box
    from sendit_ops.dicom.pixels.ocr import TextHit

    assert pitch(TextHit(10, 10, 110, 30, 0.9, "ABCDE")) == 20
    plain = np.zeros((100, 300), np.uint8)
    plain[40:60, 50:150] = 255  # the line's ink
    box = Box(46, 36, 154, 64)
    assert continued(box, plain, 20) == box
    cut = plain.copy()
    cut[40:60, 154:164] = 255  # half a glyph past the box's end
    assert continued(box, cut, 20) == Box(46, 36, 164, 64)
    busy = plain.copy()
    busy[30:70:2, 154:300] = 255  # texture along the band: at most one character
    assert continued(box, busy, 20) == Box(46, 36, 174, 64)
    turned = np.ascontiguousarray(cut.T)  # a line turned by 90 degrees
    assert continued(Box(36, 46, 64, 154), turned, 20) == Box(36, 46, 64, 164)


@pytest.mark.unit
def test_a_read_line_is_carried_on_over_the_strokes_it_leaves_on_a_dark_field():
    """A dark line read on bright tissue runs on onto air of nearly its own value: its
    glyphs hide there but cut a bright vessel; the box is carried on to the last cut (by
    a few characters at most), not over a vessel without cuts, nor on a plain bar; bright
    ink is not carried on (at its level lies bone, thin itself)."""
    from sendit_ops.dicom.pixels.detect import carried, pad_for
    from sendit_ops.dicom.pixels.model import Box

    gray = np.full((100, 500), 20, np.uint8)  # air
    gray[:, :200] = 200  # tissue
    gray[49:52, 200:] = 200  # a vessel along the line, on the air
    for x in range(50, 300, 12):  # the line's strokes: dark, 2 px wide
        gray[40:60, x : x + 2] = 20
    box = Box(46, 36, 204, 64)  # what OCR read (on the tissue), tightened
    grown = carried(box, gray, 12)
    assert grown == Box(46, 36, 290 + 2 + pad_for(28), 64)  # to the last cut, x 290-291
    turned = np.ascontiguousarray(gray.T)
    assert carried(Box(36, 46, 64, 204), turned, 12) == Box(36, 46, 64, grown.x1)
    uncut = gray.copy()
    uncut[40:60, 200:] = 20
    uncut[49:52, 200:] = 200  # the vessel alone beyond the line: nothing to carry on over
    assert carried(box, uncut, 12) == box
    bar = np.full((100, 500), 255, np.uint8)  # dark text on a plain bar
    for x in range(50, 200, 12):
        bar[40:60, x : x + 2] = 0
    assert carried(box, bar, 12) == box
    assert carried(box, 255 - gray, 12) == box  # bright ink: never carried on (bone)


@pytest.mark.unit
def test_an_unsure_word_counts_only_when_a_second_read_finds_text_again(monkeypatch):
    """A read below CONFIRM_SCORE of 2+ letters naming no identifier is read again (other
    polarity, wider margin); it is kept when a read finds (mostly) the same letters or two
    or more letters with some confidence. An identifier, anything the free-text detector
    finds, a number (3+ digits), a sure read or a single character is never read again,
    never dropped."""
    from sendit_ops.dicom.pixels import confirm
    from sendit_ops.dicom.pixels.ocr import TextHit

    second: list[tuple[str, float]] = []
    calls = []

    def fake(crops, engine, device):
        calls.append(len(crops))
        return list(second)

    monkeypatch.setattr(confirm, "_recognize", fake)
    image = np.zeros((64, 128, 3), np.uint8)
    checker = confirm.Confirmer(IDENTIFIERS, "rapidocr", "cpu")
    sure = TextHit(10, 10, 60, 30, 0.95, "XQZ")
    named = TextHit(10, 10, 60, 30, 0.52, "ROE")
    single = TextHit(10, 10, 30, 30, 0.51, "A")
    assert checker.keep(image, [sure, named, single]) == [sure, named, single]
    assert calls == []
    speckle = TextHit(10, 10, 60, 30, 0.53, "NAw")
    second[:] = [("", 0.0), ("L", 0.32)]
    assert checker.keep(image, [speckle]) == [] and checker.dropped == 1
    assert calls == [2]  # both second reads, in one call
    turned = TextHit(10, 12, 61, 30, 0.65, "3N", True)
    second[:] = [("EN", 0.59), ("NEN", 0.28)]  # text again, read another way
    assert checker.keep(image, [turned]) == [turned]
    word = TextHit(12, 10, 60, 30, 0.6, "CEEVELAND")
    second[:] = [("CIEEVERAND", 0.4), ("", 0.0)]  # mostly the same letters
    assert checker.keep(image, [word]) == [word]
    # someone else's name, a date or an id on the screen: PHI however unsure the read
    second[:] = [("", 0.0), ("L", 0.32)]
    others = [TextHit(10, 10, 60, 30, 0.55, t) for t in ("Dr Okafor", "03/04/1971", "MRN 775123")]
    before = len(calls)
    assert checker.keep(image, others) == others and len(calls) == before
    # a number misread (a dark date across anatomy): no pattern knows it, it is kept all the
    # same; two digits are read again as any word is
    misread = [TextHit(10, 10, 60, 30, 0.59, t) for t in ("0/04197", "101/17/1", "A12B3")]
    assert checker.keep(image, misread) == misread and len(calls) == before
    assert checker.keep(image, [TextHit(10, 10, 60, 30, 0.55, "X12")]) == []
    assert len(calls) == before + 1


# ---- the stage on planted text (OCR: emulator tier) --------------------------------------

# Known gap of issue 22 (open), each case's cause measured (Dec 7), strict: the day one
# passes, its mark must go.
# - MR-anatomy-NO: a 38 px line at level 20 turned by 90 degrees runs from tissue across a
#   lung (the same grey as the text); OCR reads only the two letters on tissue, the rest
#   shows only where letters cross vessels: 62 % of the visible ink masked (73 % since the
#   read box is continued along its line over ink, detect.continued; what is left is a
#   letter's edge 130 px further, past the lung).
# - DX-radiograph-NO: a 12 px line at level 0 lies on the black border; 22 of its 252 ink
#   pixels (a letter's fragment at the skin edge) differ from what was under them, none
#   masked. (The other held rotation was a stale cached read: fixed.)
# - SC-ultrasound-NO: a 15 px line at level 20 on speckle: 57 of its 217 ink pixels differ
#   from the speckle under them, below the speckle's own contrast; neither the screen nor
#   the independent reader finds it; nothing masked.
# These three are samples of a wider gap, measured on 180 random planted lines
# (devtools.stage_recall, docs/performance.md, 7 Dec 13:45): every bright line is masked or
# held, but 26 of 82 dark lines (level 0 or 20) are delivered less than 95 % masked, 12 of
# 15 on ultrasound speckle (5 of 15 since flat-stroke regions are read on their flat view, 7 Dec
# 18:40: turned or small lines at level 0-20).
_GAP = pytest.mark.xfail(
    strict=True,
    reason="issue 22 open: dark or rotated planted lines on anatomy/speckle not (wholly) masked",
)
KINDS = [
    # modality, picture, header flag
    ("CT", "anatomy", None),
    ("CT", "anatomy", "YES"),
    ("MR", "anatomy", None),
    pytest.param("MR", "anatomy", "NO", marks=_GAP),
    ("CR", "radiograph", None),
    pytest.param("DX", "radiograph", "NO", marks=_GAP),
    ("PT", "anatomy", None),
    # a 40 px line at level 0, turned, whose last two glyphs lie half on the black border:
    # OCR's box stopped short of them (94 % masked); continued along the line over the ink
    # (detect.continued) it covers the line, and the image (both lines on speckle) is held
    # because the mask would cover 12.1 % > pixel_mask_max_share (the other rotation is
    # delivered)
    ("US", "ultrasound", None),
    pytest.param("SC", "ultrasound", "NO", marks=_GAP),
]


def picture_for(kind: str, seed: int, size: int = 512) -> np.ndarray:
    if kind == "ultrasound":
        return ultrasound_picture(size, size, seed)
    picture = anatomy_slice(size, seed, "MR" if kind == "radiograph" else "CT")
    if kind == "radiograph":  # a real CR carries its text at 1001 of 1023
        picture = (picture.astype(np.float32) * 1023 / picture.max()).astype(np.uint16)
    return picture


@pytest.mark.emulator
@pytest.mark.parametrize("modality,kind,flag", KINDS, ids=lambda v: str(v))
def test_planted_text_on_every_kind_of_image_is_masked_or_held(modality, kind, flag):
    seed = sum(map(ord, f"{modality}{kind}{flag}"))
    rng = np.random.default_rng(seed)
    outcomes = []
    for rotate in (False, True):
        picture = picture_for(kind, seed % 7)
        lines = random_lines(rng, 512, 2)
        before = picture.copy()
        covers = []
        for line in lines:
            one = ink(line, 512, 512)
            picture = stored_text(
                picture,
                one,
                1001 * 255 // 1023 if kind == "radiograph" and line.level > 128 else line.level,
            )
            covers.append(one)
        if rotate:
            picture, before = (np.ascontiguousarray(np.rot90(a)) for a in (picture, before))
            covers = [np.ascontiguousarray(np.rot90(c)) for c in covers]
        shown = [visible_ink(before, picture, c) for c in covers]
        ds = acquisition(modality, picture, flag=flag, seed=seed)
        outcome = clean(ds, plan_for(ds), SETTINGS, IDENTIFIERS)
        outcomes.append(outcome)
        if not outcome.cleaned:
            assert outcome.held_reason and np.array_equal(decode(ds).frames[0], picture)
            continue
        after = decode(ds).frames[0]
        masked = inside(outcome.boxes, 512, 512)
        for line, shows in zip(lines, shown, strict=True):
            if shows.sum() >= 20:  # a line that shows at all (not dark on black)
                assert masked[shows].mean() >= COVERED, (
                    f"{line.height} px line (level {line.level}, rotated {rotate}) "
                    f"masked {masked[shows].mean():.3f}"
                )
        assert np.array_equal(after[~masked], picture[~masked])  # nothing else changed
        assert not [t for t in readable(ds) if IDENTIFIERS(t)]
    assert sum(o.cleaned for o in outcomes) >= 1, [o.held_reason for o in outcomes]


@pytest.mark.emulator
@pytest.mark.parametrize("turn", [1, -1], ids=["counter-clockwise", "clockwise"])
def test_a_turned_line_is_read_whichever_way_it_turns(turn):
    """Text turned by 90 degrees either way is read: a window of turned text the gate read
    beyond doubt that reads as nothing turned one way (upside down: the detector found no
    line in this dark date across a CT slice) is read turned the other way
    (``ocr.read_window``); then the stage masks it."""
    from sendit_ops.dicom.pixels import ocr

    picture = anatomy_slice(512, 3, "CT")
    before = picture.copy()
    line = Planted("03/04/1971", 150, 200, 25, 0, "DejaVuSansMono.ttf")
    cover = ink(line, 512, 512)
    picture = stored_text(picture, cover, line.level)
    picture, before, cover = (
        np.ascontiguousarray(np.rot90(a, turn)) for a in (picture, before, cover)
    )
    shows = visible_ink(before, picture, cover)
    assert shows.sum() >= 100
    ds = acquisition("CT", picture)
    display = Display(decode(ds), ds)
    gray, rgb = display.gray(decode(ds).frames[0]), display.render(decode(ds).frames[:1])[0]
    regions = [
        r for r in screen_module.candidates(gray, 0) if shows[r.y0 : r.y1, r.x0 : r.x1].any()
    ]
    sure: list[bool] = []
    verdicts = ocr.gate_regions(rgb, regions, sure=sure)
    passed = [(r, certain) for r, ok, certain in zip(regions, verdicts, sure, strict=True) if ok]
    assert any(certain for _, certain in passed)  # the date reads beyond doubt at the gate
    windows = ocr.windows([r for r, _ in passed], 512, 512, [c for _, c in passed])
    assert any(IDENTIFIERS(h.text) for w in windows for h in ocr.read_window(rgb, w))
    outcome = clean(ds, plan_for(ds), SETTINGS, IDENTIFIERS)
    assert outcome.cleaned, outcome.held_reason
    assert inside(outcome.boxes, 512, 512)[shows].mean() >= COVERED
    assert not [t for t in readable(ds) if IDENTIFIERS(t)]


def cine(frames: int = 40, size: int = 256) -> np.ndarray:
    """An unflagged grey cine whose anatomy moves from frame to frame."""
    base = anatomy_slice(size + 40, 3, "CT")
    scaled = (base.astype(np.float32) * 255 / base.max()).astype(np.uint8)
    return np.stack([scaled[i % 40 : i % 40 + size, 20 : 20 + size] for i in range(frames)])


def planted_cine(frame_lines: dict[int, list[Planted]], size: int = 256):
    stack = cine(size=size)
    before = stack.copy()
    covers = np.zeros(stack.shape, np.float32)
    for f, lines in frame_lines.items():
        for line in lines:
            one = ink(line, size, size)
            stack[f] = stored_text(stack[f], one, line.level)
            covers[f] = np.maximum(covers[f], one)
    return stack, before, covers


CINES = {
    "one of 40 frames": {17: [Planted("DOE, JANE", 30, 40, 16, 255, "hershey-simplex")]},
    "three of 40 frames": {
        f: [Planted("MRN-100234", 20 + f, 200, 12, 255, "pillow-default")] for f in (3, 21, 38)
    },
    "moving text": {
        f: [Planted("ROE RICHARD", 10 + 12 * (f - 10), 100 + 3 * f, 14, 240, "hershey-duplex")]
        for f in range(10, 16)
    },
    "dark text": {
        f: [
            Planted(
                "03/04/1971",
                60,
                150,
                18,
                0,
                "DejaVuSans.ttf" if "DejaVuSans.ttf" in fonts() else "hershey-simplex",
            )
        ]
        for f in (5, 6)
    },
}


@pytest.mark.emulator
@pytest.mark.parametrize("case", list(CINES))
def test_text_on_some_frames_of_a_cine_is_found_and_masked_or_held(case):
    frame_lines = CINES[case]
    stack, before, covers = planted_cine(frame_lines)
    if case == "dark text":  # dark text on a bright field that a max projection hides
        stack[:, 140:180, 40:220] = np.maximum(stack[:, 140:180, 40:220], 220)
        before = stack.copy()
        for f in frame_lines:
            for line in frame_lines[f]:
                one = ink(line, 256, 256)
                stack[f] = stored_text(stack[f], one, 0)
                covers[f] = np.maximum(covers[f], one)
    ds = acquisition("MR", stack)
    assert text_risk(ds) is None  # nothing in the header points at the text
    outcome = clean(ds, plan_for(ds), SETTINGS, IDENTIFIERS)
    if not outcome.cleaned:
        assert outcome.held_reason
        assert np.array_equal(decode(ds).frames, stack)  # held: pixels as they came
        return
    assert outcome.screened == 40  # every frame
    after = decode(ds).frames
    masked = inside(outcome.boxes, 256, 256)
    for f in frame_lines:
        shows = visible_ink(before[f], stack[f], covers[f])
        assert masked[shows].mean() >= COVERED, f"frame {f}: the text is not masked"
    assert not [t for t in readable(ds, sorted(frame_lines)) if IDENTIFIERS(t)]
    assert np.array_equal(after[:, ~masked], stack[:, ~masked])


# ---- precision: text-free images are not masked ------------------------------------------

TEXT_FREE = [
    "CT_small.dcm",
    "MR_small.dcm",
    "bad_sequence.dcm",
    "eCT_Supplemental.dcm",
    "emri_small.dcm",
    "JPEG2000.dcm",
    "MR2_UNCR.dcm",
    "SC_rgb_small_odd.dcm",
    DEID / "humans" / "ctbrain1.dcm",
    DEID / "humans" / "ctbrain2.dcm",
    *sorted((DEID / "dicom-cookies").glob("*.dcm")),
]
NAMED = {"bad_sequence.dcm", "eCT_Supplemental.dcm", "ctbrain1.dcm"}  # issue 22's three


def generated_text_free() -> list[tuple[str, Dataset]]:
    out = []
    for modality in ("CT", "MR"):
        for seed in range(4):
            ds = acquisition(modality, anatomy_slice(512, 100 + seed, modality), seed=seed + 1)
            out.append((f"generated {modality} {seed}", ds))
    return out


@pytest.mark.emulator
def test_text_free_images_are_delivered_without_a_masked_pixel():
    cases = [
        (Path(str(p)).name, pydicom.dcmread(p if isinstance(p, Path) else get_testdata_file(p)))
        for p in TEXT_FREE
    ] + generated_text_free()
    held = []
    for name, ds in cases:
        before = decode(ds).frames.copy()
        outcome = clean(ds, plan_for(ds), SETTINGS, identifier_matcher([]))
        if not outcome.cleaned:
            held.append(name)
            assert outcome.held_reason
            continue
        assert outcome.masked_share == 0.0 and not outcome.boxes, name
        assert np.array_equal(decode(ds).frames, before), name
    # held images are counted, never blacked out; the three named images are not held
    assert not NAMED & set(held), held
    assert len(held) <= 2, held


@pytest.mark.emulator
def test_a_mask_larger_than_the_threshold_holds_the_image():
    """A screen full of text (a dose report, say): more than pixel_mask_max_share of the
    image would be masked, so it is held with that reason, pixels untouched."""
    picture = np.zeros((256, 256), np.uint8)
    for row in range(8):
        cover = ink(
            Planted(f"LINE {row} DOE JANE", 4, 6 + 30 * row, 20, 255, "hershey-simplex"), 256, 256
        )
        picture = (
            stored_text(picture, cover, 255)
            if picture.max()
            else np.round(cover * 255).astype(np.uint8)
        )
    ds = acquisition("SC", picture)
    outcome = clean(ds, plan_for(ds), SETTINGS, IDENTIFIERS)
    assert not outcome.cleaned
    assert "pixel_mask_max_share" in outcome.held_reason
    assert outcome.masked_share > SETTINGS.pixel_mask_max_share
    assert np.array_equal(decode(ds).frames[0], picture)
    thumb = cv2.imdecode(np.frombuffer(outcome.thumbnail_png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert thumb is not None


@pytest.mark.emulator
def test_one_bit_image_with_text_is_screened_and_masked():
    from pydicom.pixels.utils import pack_bits

    cover = ink(Planted("DOE, JANE", 20, 30, 24, 255, "hershey-simplex"), 128, 256)
    bits = (cover > 0.5).astype(np.uint8)
    bits[80:120, 60:200] = 1  # a segmented region, no text
    ds = acquisition("SC", bits)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
    ds.PixelData = pack_bits(bits.ravel())
    outcome = clean(ds, plan_for(ds), SETTINGS, IDENTIFIERS)
    if outcome.cleaned:
        after = decode(ds).frames[0]
        assert after[cover > 0.5].max() == 0
        assert after[80:120, 60:200].all()  # the segment is kept
    else:
        assert outcome.held_reason
    ds.file_meta.TransferSyntaxUID = pydicom.uid.RLELossless
    held = clean(ds, plan_for(ds), SETTINGS, IDENTIFIERS)
    assert held.held_reason.startswith("1-bit pixel data cannot be cleaned")


# ---- the pipeline: the demo's localizer, and the weaker header-only setting ---------------


def _localizer_study(root: Path) -> Path:
    from sendit_ops.sample_data import PATIENTS, write_localizer, write_study

    folder = root / "ACC30001"
    write_study(folder, PATIENTS[1], "ACC30001", "20240308", "CT", 1, 2)
    write_localizer(folder, PATIENTS[1], "ACC30001", "20240308")
    return root


def _delivered(outbox: Path) -> dict[str, Dataset]:
    import tarfile

    out = {}
    for path in (outbox / "Collection").rglob("*.tar.gz"):
        with tarfile.open(path) as tar:
            for member in tar:
                if member.name.endswith(".dcm"):
                    ds = pydicom.dcmread(io.BytesIO(tar.extractfile(member).read()))
                    out[member.name] = ds
    return out


@pytest.mark.emulator
@pytest.mark.parametrize("screening", ["all", "header"])
def test_an_unflagged_localizer_with_text_is_masked_unless_screening_is_header_only(
    tmp_path, make_pipeline, screening
):
    from conftest import run_in_process

    from sendit_ops.pipeline.batch import HEADER_ONLY_METHOD

    root = _localizer_study(tmp_path / "input")
    pipe = make_pipeline(pixel_screening=screening)
    (record,) = run_in_process(pipe, root).values()
    assert record.state == "DONE", record.reasons
    assert record.metrics["pixel_screening"] == screening
    files = _delivered(Path(pipe.settings.outbox))
    (scout,) = [ds for ds in files.values() if "LOCALIZER" in ds.ImageType]
    read = readable(scout)
    matcher = identifier_matcher(["ROE", "RICHARD"], ["19580712", "20240308"])
    methods = [str(v) for v in np.atleast_1d(scout.DeidentificationMethod)]
    if screening == "all":
        assert record.metrics["images_pixel_cleaned"] == 1
        assert record.metrics["images_pixel_screened"] == 3
        (entry,) = record.outputs.masked
        assert 0 < entry["masked_share"] < 0.1
        assert not [t for t in read if matcher(t)]
        assert HEADER_ONLY_METHOD not in methods
    else:  # the weaker setting: delivered as it came, and every file says so
        assert record.metrics["images_pixel_cleaned"] == 0
        assert [t for t in read if matcher(t)]
        assert all(
            HEADER_ONLY_METHOD in [str(v) for v in np.atleast_1d(ds.DeidentificationMethod)]
            for ds in files.values()
        )
