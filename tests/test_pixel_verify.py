"""What the pixel stage reads again after masking, and frames read in parallel (issue 22).

Verification of a view read whole reads only what masking changed (each changed area's
whole band, grown over the lines read there before); these tests plant the cases where
reading less could see less: a mask that missed part of a line, text next to a mask, text
that appears anywhere the pixels changed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from pixel_images import Planted, plant, planted_us

from sendit_ops.core.settings import Settings
from sendit_ops.dicom.pixels import identifier_matcher
from sendit_ops.dicom.pixels import ocr as ocr_module
from sendit_ops.dicom.pixels.codec import decode
from sendit_ops.dicom.pixels.display import Display
from sendit_ops.dicom.pixels.stage import Looker, changed_windows

pytestmark = pytest.mark.emulator  # OCR on planted images (seconds each)

OCR = Settings(pixel_cleaning="ocr")
IDENTIFIERS = identifier_matcher(["DOE", "JANE", "MRN-100234", "100234", "ROE", "RICHARD"], [])


def _whole_reads(monkeypatch) -> list[tuple[int, int]]:
    """The shapes of every ``ocr.read`` call from now on (the real read still runs)."""
    shapes: list[tuple[int, int]] = []
    real = ocr_module.read

    def counting(rgb, *args, **kwargs):
        shapes.append(rgb.shape[:2])
        return real(rgb, *args, **kwargs)

    monkeypatch.setattr(ocr_module, "read", counting)
    return shapes


def _texts(hits) -> str:
    return " ".join(h.text for _, h in hits).upper()


def test_verification_reads_again_what_masking_changed_and_keeps_the_rest(monkeypatch):
    ds, _ = planted_us(
        [Planted("DOE, JANE Q", 60, 200, 20), Planted("MRN-100234", 60, 330, 18)], seed=11
    )
    decoded = decode(ds)
    looker = Looker(Display(decoded, ds), OCR, full=True)
    first = looker.look(decoded.frames)
    assert "JANE" in _texts(first) and "100234" in _texts(first)
    mrn = next(h for _, h in first if "100234" in h.text)
    name = next(h for _, h in first if "JANE" in h.text.upper())

    # a mask that missed part of a line: its left half only
    middle = (name.x0 + name.x1) // 2
    frames = decoded.frames.copy()
    frames[:, name.y0 : name.y1, name.x0 : middle] = 0
    shapes = _whole_reads(monkeypatch)
    again = looker.look(frames)
    assert shapes and all(s != (512, 512) for s in shapes)  # the changed band, not the view
    assert looker.reread_areas >= 1
    # the rest of the line is seen, as a read of the whole view sees it
    left = {h.text for _, h in again if h.x1 > middle and h.y0 < name.y1 and h.y1 > name.y0}
    whole = ocr_module.read(looker.display.render(frames)[0])
    assert left and left == {
        h.text for h in whole if h.x1 > middle and h.y0 < name.y1 and h.y1 > name.y0
    }
    assert mrn in [h for _, h in again]  # unchanged: taken as read before

    # the whole line masked, and text next to the mask (and elsewhere) appears
    frames[:, name.y0 : name.y1, name.x0 : name.x1] = 0
    plant(frames[0], [Planted("ROE RICHARD", name.x1 + 6, name.y0, 20),
                      Planted("JANE DOE", 300, 420, 18)])  # fmt: skip
    shapes.clear()
    third = _texts(looker.look(frames))
    assert "RICHARD" in third and "JANE DOE" in third.replace(",", "")
    assert all(s != (512, 512) for s in shapes)


def test_changed_windows_cover_every_changed_pixel_and_the_lines_they_touch():
    rng = np.random.default_rng(3)
    before = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    after = before.copy()
    after[50:60, 100:140] = 0  # a masked line
    after[150:152, 10:12] = 0  # a few pixels elsewhere
    line = ocr_module.TextHit(20, 45, 200, 70, 0.9, "x")  # read before, partly masked
    far = ocr_module.TextHit(20, 170, 120, 190, 0.9, "y")  # read before, untouched
    areas = changed_windows(before, after, [line, far])
    assert areas is not None
    changed = np.argwhere(np.any(before != after, axis=-1))
    for y, x in changed:
        assert any(a[0] <= x < a[2] and a[1] <= y < a[3] for a in areas)
    assert any(a[0] <= 20 and a[1] <= 45 and a[2] >= 200 and a[3] >= 70 for a in areas)
    assert all(a[1] >= 0 and a[3] <= 200 for a in areas)
    assert changed_windows(before, before.copy(), [line]) == []
    everything = np.zeros_like(before)
    assert changed_windows(before, everything, []) is None  # read whole instead


def test_what_the_header_plan_masks_is_not_recognised(monkeypatch):
    """The plan's boxes (here the banner above the ultrasound region) are masked whatever
    is read there: a line found wholly inside them is not recognised."""
    from pixel_images import planted_us as planted

    from sendit_ops.dicom.filters import load_filter_recipe
    from sendit_ops.dicom.pixels import clean, plan_pixels

    ds, _ = planted([Planted("DOE, JANE Q", 10, 8, 18), Planted("MRN-100234", 60, 300, 18)])
    plan = plan_pixels(ds, load_filter_recipe(None))
    banner = max(b.y1 for b in plan.boxes)
    read: list[ocr_module.TextHit] = []
    real = ocr_module.read

    def keeping(rgb, *args, **kwargs):
        hits = real(rgb, *args, **kwargs)
        if rgb.shape[:2] == (512, 512):
            read.extend(hits)
        return hits

    monkeypatch.setattr(ocr_module, "read", keeping)
    outcome = clean(ds, plan, OCR, IDENTIFIERS)
    assert outcome.cleaned, outcome.held_reason
    assert read and not [h for h in read if h.y1 <= banner]  # nothing read in the banner
    assert "ocr" in {b.source for b in outcome.boxes}  # the id below it is masked


def test_frames_read_in_parallel_give_what_one_thread_gives():
    """A cine's frames are screened and read by several threads, each with its own engine:
    the outcome (boxes, their order, what was read) is the serial one."""
    from sendit_ops.dicom.pixels import clean, plan_pixels
    from sendit_ops.sample_data import PATIENTS, make_burned_in_ultrasound

    def cine():
        return make_burned_in_ultrasound(
            PATIENTS[0], "CINE00001", "20240115", 1, frames=6, rows=240, columns=320
        )

    outcomes, reads = [], []
    for workers in (1, 2, 2):
        settings = replace(OCR, pixel_threads=workers)
        ds = cine()
        decoded = decode(ds)
        looker = Looker(Display(decoded, ds), settings, full=True)
        assert looker.workers == workers
        reads.append([(f, h.x0, h.y0, h.x1, h.y1, h.text, h.score) for f, h in looker.look(
            decoded.frames)])  # fmt: skip
        matcher = identifier_matcher(["DOE", "JANE"], [])
        outcome = clean(ds, plan_pixels(ds), settings, matcher)
        outcomes.append((outcome.cleaned, outcome.held_reason, outcome.boxes, ds.PixelData))
    assert reads[0] and reads[0] == reads[1] == reads[2]
    assert outcomes[0][0] and outcomes[0] == outcomes[1] == outcomes[2]


def test_threads_share_the_models_and_read_at_once_what_one_thread_reads():
    """Each thread has its own engine object over the one set of ONNX sessions
    (``ocr._twin``): two threads reading at once (whole reads, the gate narrowing its own
    recognizer's input shape meanwhile) read exactly what one thread reads alone."""
    import threading

    from sendit_ops.dicom.pixels.model import SCREEN, Box

    ds, _ = planted_us([Planted("DOE, JANE Q", 60, 200, 20), Planted("MRN-100234", 60, 330, 18)],
                       seed=11)  # fmt: skip
    decoded = decode(ds)
    rgb = Display(decoded, ds).render(decoded.frames[:1])[0]
    boxes = [Box(60, 200, 200, 222, 0, SCREEN), Box(60, 330, 190, 350, 0, SCREEN),
             Box(300, 100, 330, 112, 0, SCREEN)]  # fmt: skip

    def work() -> tuple[list[tuple[int, int, int, int, str, float]], list[bool]]:
        whole = [(h.x0, h.y0, h.x1, h.y1, h.text, h.score) for h in ocr_module.read(rgb)]
        return whole, ocr_module.gate_regions(rgb, boxes)

    alone = work()
    assert any("JANE" in t.upper() for *_, t, _ in alone[0]) and alone[1][:2] == [True, True]
    results: list[object] = []
    engines: list[object] = []
    start = threading.Barrier(2)

    def thread() -> None:
        engines.append(ocr_module.engine())
        start.wait()
        results.extend(work() for _ in range(3))

    threads = [threading.Thread(target=thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [alone] * 6
    first, second = engines
    assert first is not second and first.text_rec is not second.text_rec
    assert first.text_rec.session.session is second.text_rec.session.session  # one session
    assert first.text_det.session.session is second.text_det.session.session


def test_an_error_in_one_frame_stops_the_others_and_is_raised():
    from sendit_ops.dicom.pixels.stage import _run

    ran: list[int] = []

    def job(i):
        def run():
            if i == 3:
                raise ValueError("frame 3")
            ran.append(i)
            return i

        return run

    assert _run([job(i) for i in (0, 1, 2)], 2) == [0, 1, 2]
    with pytest.raises(ValueError, match="frame 3"):
        _run([job(i) for i in range(40)], 2)
    assert len(ran) < 3 + 40 - 1  # not every job after the failure ran
