"""The pixel stage for one image: decode, look for text, mask text lines, re-encode, verify.

Every image is looked at (issue 22): every frame goes through the text screen
(``screen.candidates``, a few ms per frame) and each region it reports is read by OCR. An
image whose header says it may carry text (``plan.risk``) is also read whole (full-frame
OCR of its key views), the screen's regions on top; a line or region wholly inside the
header plan's boxes is not recognised (they are masked whatever is read there). The frames
of a cine and its views are read by ``pixel_threads`` threads (``_run``; 0:
``FRAME_WORKERS``, the cores), each with its own engine over the process's one set of
models (``ocr.engine``). Only a recognised text line
(``detect.fits_text``) is masked; an image whose text mask would cover more than
``pixel_mask_max_share`` of its area is held (a mask that large is more likely anatomy than
annotation, or a screen full of text a reviewer should see).

An image with something masked is delivered only when the re-encoded output, looked at
the same way (every frame screened, the same views read; of a view read whole, the bands
whose pixels masking changed, ``changed_windows``), shows nothing but allow-listed
technical text; otherwise it is held with a PHI-free reason and its pixel data is put back
as it was. An image in which nothing was found is delivered unchanged. No exception
escapes: a codec or engine failure is a held image.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypedDict, TypeVar, Unpack, cast

import numpy as np
from pydicom.dataset import Dataset

from sendit_ops.core.settings import Settings
from sendit_ops.dicom.pixels import check, confirm, detect, mask, ocr, screen, thumbnail
from sendit_ops.dicom.pixels.codec import (
    Decoded,
    Frames,
    UndecodableError,
    decode,
    restore,
    snapshot,
    write_back,
)
from sendit_ops.dicom.pixels.display import Display, Picture
from sendit_ops.dicom.pixels.model import OCR, Box, FrameThumb, PixelOutcome, PixelPlan

log = logging.getLogger("sendit.pixels")
RESIDUAL = "residual"  # source of a box where text was still read after masking
EXTRA_ROUNDS = 1  # in "ocr" mode, text read at verification is masked once more, then verified


class _HeldDetails(TypedDict, total=False):
    """What a held outcome may carry besides its reason (fields of PixelOutcome)."""

    boxes: tuple[Box, ...]
    frames: int
    thumbnail_png: bytes
    masked_share: float
    screened: int
    read_whole: bool
    strip: tuple[FrameThumb, ...]
    frames_not_shown: int
    rows: int
    columns: int


class _Review(TypedDict):
    """The reviewer's part of a held outcome (``_review``)."""

    strip: tuple[FrameThumb, ...]
    frames_not_shown: int
    rows: int
    columns: int


def _held(reason: str, start: float, **kw: Unpack[_HeldDetails]) -> PixelOutcome:
    log.info("pixel stage: image held (%s)", reason)
    return PixelOutcome(False, reason, seconds=time.perf_counter() - start, **kw)


def _review(
    display: Display, frames: Frames, boxes: list[Box], value: int | float | None = None
) -> _Review:
    """What a reviewer sees of a held image: the frame strip of ``frames`` (masked with the
    masked ``boxes`` when ``value`` is given, else as they are), the boxes outlined
    (``thumbnail.strip``), and the image's size. A frame a box was found on is always
    among them (up to the cap); rendered from ``frames`` already in memory, one at a time."""
    masked = [b for b in boxes if b.source not in thumbnail.UNMASKED]

    def render(index: int) -> Picture:
        one = frames[index : index + 1]
        if value is not None:
            one = mask.apply(one, masked, value)
        rgb: Picture = display.render(one)[0]
        return rgb

    marked = [b.frame for b in boxes if b.frame is not None]
    thumbs, rest = thumbnail.strip(int(frames.shape[0]), marked, render, boxes)
    rows, columns = (int(n) for n in frames.shape[1:3])
    return {"strip": thumbs, "frames_not_shown": rest, "rows": rows, "columns": columns}


Hits = list[tuple[int | None, ocr.TextHit]]
_Areas = tuple[tuple[tuple[int, int, int, int], bytes], ...]


MIN_CONTRAST = 8  # grey levels (of 255) a rendered view must span when the data is not flat


# threads that screen and read the frames of a cine at once, the calling thread one of them,
# when ``pixel_threads`` is 0: the cores (ONNX Runtime and OpenCV release the GIL; the
# models are shared, ``ocr.engine``, but each thread reading at once needs its own working
# memory, ~100 MB while it detects, so no more threads than cores); at most MAX_THREADS
MAX_THREADS = 4
# a look at frames of this many bytes or more gives the heap's free pages back after it
# (``ocr.release_memory``): a cine's reads leave ~150 MB freed but held; on a single frame
# the trim (a walk of the whole heap, and the pages faulted in again by the next look) cost
# ~28 ms a 512x512 frame on the full OCR path and more than the screen on a CT slice
TRIM_BYTES = 16 << 20
FRAME_WORKERS = max(1, min(MAX_THREADS, os.cpu_count() or 1))
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_Job = TypeVar("_Job")


def _forget_helpers() -> None:
    """In a forked child (a task process forked from a parent that screened a cine): the
    parent's helper threads are not there, and a pool that believes they are would never
    run a frame job; the child makes its own."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_helpers)


def _helpers() -> ThreadPoolExecutor:
    """The process's helper threads (created on first use; they keep their engines)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            ocr.one_heap()
            _pool = ThreadPoolExecutor(MAX_THREADS - 1, thread_name_prefix="sendit-pixels")
        return _pool


def _run(
    jobs: Sequence[Callable[[], _Job]], workers: int, order: Sequence[int] | None = None
) -> list[_Job]:
    """Each job's result, in the jobs' order: run by the calling thread and up to
    ``workers - 1`` helper threads, each taking the next job not yet taken (in ``order``, a
    permutation of the jobs' indices, when given). The first exception stops the taking
    and is raised here."""
    sequence = range(len(jobs)) if order is None else order
    if workers <= 1 or len(jobs) <= 1:
        return [job() for job in jobs]
    results: list[_Job | None] = [None] * len(jobs)
    taken = iter(sequence)
    lock = threading.Lock()
    failed = threading.Event()

    def work() -> None:
        while not failed.is_set():
            with lock:
                index = next(taken, None)
            if index is None:
                return
            try:
                results[index] = jobs[index]()
            except BaseException:
                failed.set()
                raise

    helpers = [_helpers().submit(work) for _ in range(min(workers, len(jobs)) - 1)]
    try:
        work()
    finally:
        errors = [f.exception() for f in helpers]
    for error in errors:
        if error is not None:
            raise error
    return cast(list[_Job], results)  # every job ran (or its exception was raised)


def _spread(first: int, rest: int) -> list[int]:
    """The order the jobs of a look are taken in: the ``first`` (whole views, each a
    detection pass) spread evenly among the ``rest`` (frames to screen), not all at once:
    detection runs one pass at a time (``ocr._OneAtATime``, for memory), so with the views
    first one thread would wait for the other's detection; spread, a thread reads a view
    while the other screens frames. (It did not change the peak measurably.)"""
    step = rest // first if first else 0
    frames = iter(range(first, first + rest))
    order: list[int] = []
    for view in range(first):
        order.append(view)
        order += [next(frames) for _ in range(step)]
    return order + list(frames)


class FlatRenderingError(Exception):
    """The image renders (nearly) uniform although its data is not: OCR cannot vouch for it."""


class Looker:
    """Looks at the frames of one image: the screen on every frame, OCR on what it finds
    (and on the whole views when ``full``). Region reads are cached by the window's
    position and content, so static text on a cine is read once, not once per frame; a
    whole view looked at again is read only where its pixels changed (``_whole_view``).

    With ``is_identifying``, an unsure read naming no identifier is kept only when a second
    read confirms it (``confirm.Confirmer``): on the first look and at verification alike."""

    def __init__(
        self,
        display: Display,
        settings: Settings,
        full: bool,
        is_identifying: Callable[[str], bool] | None = None,
    ):
        self.display = display
        self.full = full
        self.engine = settings.ocr_engine
        self.device = settings.pixel_device
        # threads reading the frames of a cine
        self.workers = min(MAX_THREADS, settings.pixel_threads or FRAME_WORKERS)
        self.skip: list[ocr.Area] = []  # areas masked anyway: lines inside are not read
        # (view, window, digest of its pixels) -> reads of it: the areas each read looked
        # at (with their digests) and what OCR read
        # (view: None for the rendering, else the flat value of ``screen.flat_view``)
        self._cache: dict[
            tuple[int | None, ocr.Window, bytes], list[tuple[_Areas, list[ocr.TextHit]]]
        ] = {}
        # (view, x0, y0, x1, y1, digest of its pixels) of a region -> whether it reads as
        # text, and whether beyond doubt (``ocr.gate_regions``)
        self._gates: dict[tuple[int | None, int, int, int, int, bytes], tuple[bool, bool]] = {}
        # place of a view among ``Display.views`` -> the whole view last read there and
        # what was kept (by place, not by frame index: the max and the min projections
        # have none, and each was compared with the other's last read, which differs
        # nearly everywhere: both were read whole again at verification, and with two
        # threads it depended on which had finished last)
        self._whole: dict[int, tuple[Picture, list[ocr.TextHit]]] = {}
        self.frames_screened = 0
        self.regions = 0
        self.reread_areas = 0  # changed areas of whole views read again (not whole views)
        self._frames: Frames | None = None
        self.confirmer = (
            None
            if is_identifying is None
            else confirm.Confirmer(is_identifying, self.engine, self.device)
        )

    def _kept(self, image: Picture, hits: list[ocr.TextHit]) -> list[ocr.TextHit]:
        return hits if self.confirmer is None else self.confirmer.keep(image, hits)

    def gray(self, frame: int | None) -> list[Picture]:
        """The screen's view of frame ``frame`` of the frames last looked at; for a
        projection (None), the max and the min projections of those views."""
        frames = self._frames
        if frames is None:
            return []
        if frame is not None:
            return [self.display.gray(frames[frame])]
        high = low = None
        for index in range(frames.shape[0]):
            view = self.display.gray(frames[index])
            high = view if high is None else np.maximum(high, view)
            low = view if low is None else np.minimum(low, view)
        return [high, low] if high is not None and low is not None else []

    def release(self) -> None:
        """Forget the frames last looked at (``gray`` has nothing to show until the next
        look): a cine's copy is not kept while its masked copy is made."""
        self._frames = None

    def look(self, frames: Frames) -> Hits:
        """Every line OCR reads in ``frames`` (with the frame it was read on).

        A rendering that hides the data (all views almost one grey while the stored values
        vary) would let text through unread, so it raises FlatRenderingError instead."""
        self._frames = frames
        self.frames_screened = max(self.frames_screened, int(frames.shape[0]))
        views: list[tuple[int | None, Picture]] = []
        if self.full:
            views = list(self.display.views(frames))
            varies = bool(frames.min() < frames.max())
            if varies and all(int(v.max()) - int(v.min()) < MIN_CONTRAST for _, v in views):
                raise FlatRenderingError
        read_whole = {index for index, _ in views if index is not None}
        screened = [i for i in range(frames.shape[0]) if i not in read_whole]
        jobs = [partial(self._read_view, place, index, image)
                for place, (index, image) in enumerate(views)]  # fmt: skip
        jobs += [partial(self._screen, frames, index) for index in screened]
        # a frame read whole is screened too, for the flat-stroke regions only: the whole
        # read is of the rendering, on which dark text on speckle does not read (issue 22)
        flat = sorted(read_whole)
        jobs += [partial(self._screen, frames, index, True) for index in flat]
        done = _run(jobs, self.workers, _spread(len(views), len(screened) + len(flat)))
        if frames.nbytes >= TRIM_BYTES:  # what the reads freed (held else through the next steps)
            ocr.release_memory()
        hits: Hits = []
        for found, regions in done:  # in job order, whatever order the threads ran in
            hits += found
            self.regions += regions
        return hits

    def _read_view(self, place: int, index: int | None, image: Picture) -> tuple[Hits, int]:
        return [(index, h) for h in self._whole_view(place, image)], 0

    def _screen(self, frames: Frames, index: int, flat_only: bool = False) -> tuple[Hits, int]:
        """The screen on one frame, the gate on its regions, OCR of the windows that pass:
        what was read, and the number of regions. Runs in the frame pool's threads (each
        with its own engine object); the caches it shares hold only what any thread would compute
        the same from the same pixels, so the outcome does not depend on the order.

        A region or a read line wholly inside a ``skip`` area (masked anyway) is left out;
        ``flat_only``: only the regions of flat strokes (the frame is read whole)."""
        gray = self.display.gray(frames[index])
        found = screen.regions(gray, index)
        if flat_only:
            found = [r for r in found if r.flat is not None]
        count = len(found)
        found = [
            r for r in found if not _within((r.box.x0, r.box.y0, r.box.x1, r.box.y1), self.skip)
        ]
        if not found:
            return [], count
        hits: Hits = []
        # the top-hat regions on the frame's rendering, the flat-stroke regions on the flat
        # view of their value (``screen.flat_view``: the same geometry, so what is read
        # there masks the frame); each view gated and read apart
        for view in dict.fromkeys(r.flat for r in found):
            if view is None:
                rgb = self.display.render(frames[index : index + 1])[0]
            else:
                rgb = screen.flat_view(gray, view)
            regions = [r.box for r in found if r.flat == view]
            dark: dict[Box, bool] = {}  # (a box found on both polarities is not dark)
            for r in found:
                dark[r.box] = dark.get(r.box, True) and r.dark
            passed = self._gate(rgb, regions, view)
            rows, columns = rgb.shape[:2]
            sure = [certain for _, certain in passed]
            darks = [dark[r] for r, _ in passed]
            for window in ocr.windows([r for r, _ in passed], rows, columns, sure, darks):
                read = [h for h in self._read(rgb, window, view)
                        if not _within((h.x0, h.y0, h.x1, h.y1), self.skip)]  # fmt: skip
                hits += [(index, h) for h in self._kept(rgb, read)]
        return hits, count

    def _whole_view(self, place: int, image: Picture) -> list[ocr.TextHit]:
        """What OCR reads in one whole view (``ocr.read``), kept by the second reads; the
        view is the ``place``-th of ``Display.views`` (the same views each look).

        Read again (at verification), only what changed is read: the areas whose pixels
        differ from the view's last read (``changed_windows``: each the whole band along
        its line, with a margin across, grown over every line read there before) are read
        whole; a line read before outside all of them is taken as it was read (its pixels,
        and those around it, are the same). A mask that missed part of a line, a line
        partly masked, text next to a mask: all lie in a changed band and are read again."""
        prior = self._whole.get(place)
        if prior is None or prior[0].shape != image.shape:
            kept = self._kept(image, ocr.read(image, self.engine, self.device, self.skip))
        else:
            before, old = prior
            areas = changed_windows(before, image, old)
            if areas is None:
                kept = self._kept(image, ocr.read(image, self.engine, self.device, self.skip))
            else:
                kept = [h for h in old if not any(_meets(h, a) for a in areas)]
                for x0, y0, x1, y1 in areas:
                    read = ocr.read(np.ascontiguousarray(image[y0:y1, x0:x1]),
                                    self.engine, self.device)  # fmt: skip
                    moved = [ocr.TextHit(h.x0 + x0, h.y0 + y0, h.x1 + x0, h.y1 + y0, h.score,
                                         h.text, h.vertical) for h in read]  # fmt: skip
                    kept += self._kept(image, moved)
                self.reread_areas += len(areas)
        self._whole[place] = (image, kept)
        return kept

    def _gate(self, rgb: Picture, regions: list[Box], view: int | None) -> list[tuple[Box, bool]]:
        """The regions that read as text (``ocr.gate_regions``: one batched call for the
        frame's unread regions), each with whether it read beyond doubt; a region's verdict
        is cached by the view ``rgb`` is (``screen.Region.flat``), its place and the pixels
        the gate reads (with the gate's margin)."""
        pad = ocr.GATE_PAD
        keys = []
        for r in regions:
            crop = rgb[max(0, r.y0 - pad) : r.y1 + pad, max(0, r.x0 - pad) : r.x1 + pad]
            keys.append((view, r.x0, r.y0, r.x1, r.y1, _digest(np.ascontiguousarray(crop))))
        todo = [i for i, k in enumerate(keys) if k not in self._gates]
        sure: list[bool] = []
        verdicts = ocr.gate_regions(rgb, [regions[i] for i in todo], self.engine, self.device, sure)
        for i, verdict, certain in zip(todo, verdicts, sure, strict=True):
            self._gates[keys[i]] = (verdict, certain)
        return [(r, self._gates[k][1]) for r, k in zip(regions, keys, strict=True)
                if self._gates[k][0]]  # fmt: skip

    def _read(self, rgb: Picture, window: ocr.Window, view: int | None) -> list[ocr.TextHit]:
        """OCR of one window of the view ``rgb`` is (``screen.Region.flat``), cached by the
        view, the window and its pixels. A cached read is reused only when every area it read
        (the window, its widened band, the transposed window) is unchanged: a read keyed on
        the window alone returned, after masking, what the wider band showed BEFORE masking
        (a planted line held as "text remains" though it was masked)."""
        crop = np.ascontiguousarray(rgb[window.y0 : window.y1, window.x0 : window.x1])
        key = (view, window, _digest(crop))
        for areas, hits in self._cache.get(key, ()):
            if all(_digest(_area(rgb, a)) == d for a, d in areas):
                return hits
        read: list[tuple[int, int, int, int]] = []
        hits = ocr.read_window(rgb, window, self.engine, self.device, read)
        if not hits:  # it read as text at the gate: perhaps a line running the other way
            other = ocr.transposed(window, *rgb.shape[:2])
            hits = ocr.read_window(rgb, other, self.engine, self.device, read)
        if not hits and window.dark:
            # dark text over dark tissue beside bright anatomy: within a few levels of its
            # background over the window's whole range. Only as a last read: read so first,
            # bright lines (whose letter gaps make dark regions too) lost 8 of 180 planted
            # lines (issue 22, docs/performance.md)
            hits = ocr.read_window(rgb, window, self.engine, self.device, read, dark=True)
        areas = tuple((a, _digest(_area(rgb, a))) for a in dict.fromkeys(read))
        self._cache.setdefault(key, []).append((areas, hits))
        return hits


Area = ocr.Area
REREAD_SHARE = 0.5  # changed bands covering more of a view than this: the view is read whole
_CLOSE = np.ones((9, 9), np.uint8)  # changed pixels this close are one area (a line's glyphs)


def _within(box: Area, areas: list[Area]) -> bool:
    return any(a[0] <= box[0] and a[1] <= box[1] and box[2] <= a[2] and box[3] <= a[3]
               for a in areas)  # fmt: skip


def _meets(hit: ocr.TextHit, area: Area) -> bool:
    return _overlaps((hit.x0, hit.y0, hit.x1, hit.y1), area)


def _band(x0: int, y0: int, x1: int, y1: int, rows: int, columns: int) -> Area:
    """The band read for a changed area: the whole width of the view (the whole height for
    an area taller than wide, a line turned by 90 degrees), with a margin across of one
    line height (at least 8 px) on each side, as ``ocr.region_window`` reads a region."""
    margin = max(8, min(x1 - x0, y1 - y0))
    if (y1 - y0) > (x1 - x0):
        return max(0, x0 - margin), 0, min(columns, x1 + margin), rows
    return 0, max(0, y0 - margin), columns, min(rows, y1 + margin)


def _overlaps(a: Area, b: Area) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _union(a: Area, b: Area) -> Area:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def changed_windows(before: Picture, after: Picture, hits: list[ocr.TextHit]) -> list[Area] | None:
    """The parts of a whole view to read again after its pixels changed (masking): one
    band (``_band``) per area of changed pixels, grown to hold every line read before that
    meets it (a line partly masked is read again whole, in its own band), overlapping
    bands merged. ``[]``: nothing changed; None: the bands would cover more than
    REREAD_SHARE of the view (it is read whole)."""
    import cv2

    rows, columns = after.shape[:2]
    diff = np.any(before != after, axis=-1) if after.ndim == 3 else before != after
    if not diff.any():
        return []
    joined = cv2.dilate(diff.astype(np.uint8), _CLOSE)
    count, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    areas = [_band(x, y, x + w, y + h, rows, columns) for x, y, w, h, _ in stats[1:count].tolist()]
    lines = [((h.x0, h.y0, h.x1, h.y1), _band(h.x0, h.y0, h.x1, h.y1, rows, columns)) for h in hits]
    changed = True
    while changed:
        changed = False
        for i, area in enumerate(areas):
            for box, band in lines:
                if _overlaps(box, area) and _union(area, box) != area:
                    area = _union(area, _union(box, band))
                    changed = True
            areas[i] = area
        merged: list[Area] = []
        for area in areas:
            for j, other in enumerate(merged):
                if _overlaps(area, other):
                    merged[j] = _union(area, other)
                    changed = True
                    break
            else:
                merged.append(area)
        areas = merged
    covered = np.zeros((rows, columns), dtype=bool)
    for x0, y0, x1, y1 in areas:
        covered[y0:y1, x0:x1] = True
    return None if covered.mean() > REREAD_SHARE else areas


def _area(rgb: Picture, area: tuple[int, int, int, int]) -> Picture:
    x0, y0, x1, y1 = area
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


def _digest(crop: Picture) -> bytes:
    return hashlib.blake2b(crop.tobytes(), digest_size=16).digest()


def clean(
    ds: Dataset,
    plan: PixelPlan,
    settings: Settings,
    is_identifying: Callable[[str], bool],
    *,
    released: bool = False,
) -> PixelOutcome:
    """Look for burned-in text in ``ds`` and clean it (``ds`` is modified in place only
    when something was masked and verified). ``plan`` comes from :func:`plan_pixels` on the
    ORIGINAL header (``plan.risk`` None: the header gives no reason, the image is screened);
    ``is_identifying`` tells whether OCR text names the study's identifiers (see
    :func:`identifier_matcher`).

    ``released``: a reviewer has seen this image's masked thumbnail and released it. Text
    still read after masking then no longer holds the image: the masked output the reviewer
    saw is kept (``cleaned``, ``released`` set). An image that cannot be decoded or masked
    is held all the same: there is nothing a reviewer could have seen."""
    start = time.perf_counter()
    if settings.pixel_cleaning == "off" and plan.needed:
        return _held("pixel cleaning is off and the image may carry burned-in text", start)
    try:
        decoded = decode(ds, view=True)  # (read-only: masking works on copies)
    except UndecodableError as exc:
        return _held(str(exc), start)
    saved = snapshot(ds)
    try:
        return _clean(ds, decoded, plan, settings, is_identifying, start, released)
    except FlatRenderingError:
        restore(ds, saved)
        reason = "the image renders almost uniform: OCR cannot verify it"
        return _held(reason, start, frames=decoded.count)
    except ocr.OCRUnavailableError as exc:
        restore(ds, saved)
        return _held(str(exc), start, frames=decoded.count)
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
    mode = settings.pixel_cleaning
    boxes: list[Box] = [b for b in (x.clipped(rows, columns) for x in plan.boxes) if b]
    display = Display(decoded, ds)
    looker = Looker(display, settings, full=plan.needed, is_identifying=is_identifying)
    # the header plan's boxes are masked whatever OCR reads in them: a line found wholly
    # inside one is not recognised (the banner's lines were most of the cost of reading a
    # risky ultrasound frame whole)
    looker.skip = [(b.x0, b.y0, b.x1, b.y1) for b in boxes]
    value = mask.fill_value(decoded, ds)
    # in "recipe" mode the plan's boxes are all that is masked: what the first look would
    # read outside them is read by verification all the same
    seen: Hits = []
    if mode == "ocr" or not boxes:
        seen = looker.look(decoded.frames)
    allow = settings.pixel_allow_list
    if mode == "ocr":
        text = detect.unique_boxes(detect.text_boxes(seen, rows, columns, looker.gray))
        share = _text_share(text, rows, columns)
        if share > settings.pixel_mask_max_share and not released:
            return _too_much(share, settings, start, text, decoded, display, value)
        boxes = detect.unique_boxes(boxes + text)
    if not boxes:
        left = check.residual([h for _, h in seen], allow, is_identifying)
        if left and not released:
            why = "pixel cleaning is off and " if mode == "off" else ""
            read = [  # where the lines were read (outlined, not masked: nothing was)
                Box(b.x0, b.y0, b.x1, b.y1, b.frame, thumbnail.UNMASKED_SOURCE)
                for f, h in seen
                if h in left and (b := detect.hit_box(h, f, rows, columns)) is not None
            ]
            return _held(
                f"{why}OCR reads {len(left)} line(s) not on the allow-list or naming an "
                "identifier, not shaped or read clearly enough to be masked as text",
                start,
                frames=decoded.count,
                thumbnail_png=thumbnail.png(display.render(decoded.frames[:1])[0]),
                **_review(display, decoded.frames, read),
            )
        if plan.needed:
            ds.BurnedInAnnotation = "NO"  # read whole and found clean, as before
        return _outcome(decoded, (), start, "", looker, masked=False, display=None)
    if mode == "off":
        return _held(
            "pixel cleaning is off and OCR reads text in the image", start, frames=decoded.count
        )
    looker.release()  # the first look's frames (a copy when the plan masked some)
    saved = snapshot(ds)
    rounds = EXTRA_ROUNDS if mode == "ocr" else 0
    while True:
        masked = mask.apply(decoded.frames, boxes, value)
        syntax = write_back(ds, masked, decoded)
        again = decode(ds, view=True)
        if again.frames.shape != masked.shape or not np.array_equal(again.frames, masked):
            restore(ds, saved)
            return _held("re-encoded pixels differ from the masked pixels", start,
                         boxes=tuple(boxes), frames=decoded.count)  # fmt: skip
        # the same values: of native data, a view of the bytes written back, and the
        # copy masking made is let go before the frames are looked at again
        masked = again.frames
        seen = looker.look(again.frames)
        left = check.residual([h for _, h in seen], allow, is_identifying)
        if not left:
            break
        found = detect.text_boxes([(f, h) for f, h in seen if h in left], rows, columns)
        # (not tightened: what is left after masking needs the detector's whole box)
        grown = detect.unique_boxes(boxes + found) if mode == "ocr" else boxes
        if released and (rounds == 0 or grown == boxes):
            break
        restore(ds, saved)
        if rounds == 0 or grown == boxes:
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
                masked_share=detect.covered_share(boxes, rows, columns),
                thumbnail_png=thumbnail.png(display.render(masked[:1])[0]),
                **_review(display, masked, [*boxes, *extra]),
            )  # fmt: skip
        rounds -= 1
        boxes = grown
        share = _text_share(boxes, rows, columns)
        if share > settings.pixel_mask_max_share and not released:
            return _too_much(share, settings, start, boxes, decoded, display, value)
    ds.BurnedInAnnotation = "NO"
    return _outcome(decoded, boxes, start, str(syntax), looker, masked=True,
                    display=display, preview=masked, released=bool(left))  # fmt: skip


def _text_share(boxes: list[Box], rows: int, columns: int) -> float:
    """The share of the image the boxes of text read by OCR cover (the header plan's boxes,
    e.g. everything outside the ultrasound regions, are the site's rule, not counted)."""
    return detect.covered_share([b for b in boxes if b.source in (OCR, RESIDUAL)], rows, columns)


def _too_much(
    share: float,
    settings: Settings,
    start: float,
    boxes: list[Box],
    decoded: Decoded,
    display: Display,
    value: int | float,
) -> PixelOutcome:
    """Held: the text mask is larger than pixel_mask_max_share allows (the thumbnail shows
    the image with that mask: what a reviewer's release would deliver)."""
    preview = mask.apply(decoded.frames[:1], boxes, value)
    return _held(
        f"the text mask would cover {share:.1%} of the image, more than "
        f"pixel_mask_max_share ({settings.pixel_mask_max_share:.1%}): anatomy read as "
        "text, or a screen full of text, for a reviewer to decide",
        start,
        boxes=tuple(boxes),
        frames=decoded.count,
        masked_share=share,
        thumbnail_png=thumbnail.png(display.render(preview)[0]),
        **_review(display, decoded.frames, boxes, value),
    )


def _outcome(
    decoded: Decoded,
    boxes: list[Box] | tuple[Box, ...],
    start: float,
    syntax: str,
    looker: Looker,
    *,
    masked: bool,
    display: Display | None,
    preview: Frames | None = None,
    released: bool = False,
) -> PixelOutcome:
    rows, columns = decoded.frames.shape[1:3]
    thumb = b""
    if display is not None and preview is not None:
        thumb = thumbnail.png(display.render(preview[:1])[0])
    outcome = PixelOutcome(
        cleaned=True,
        held_reason=None,
        boxes=tuple(boxes),
        frames=decoded.count,
        thumbnail_png=thumb,
        seconds=time.perf_counter() - start,
        transfer_syntax=syntax,
        released=released,
        masked_share=detect.covered_share(boxes, rows, columns) if masked else 0.0,
        screened=looker.frames_screened,
        read_whole=looker.full,
    )
    log.info(
        "pixel stage: %d frame(s) screened, %d region(s) read, %d unsure read(s) not "
        "confirmed, %d box(es) masked (%.2f%%) in %.2f s",
        outcome.screened,
        looker.regions,
        looker.confirmer.dropped if looker.confirmer is not None else 0,
        len(boxes),
        100 * outcome.masked_share,
        outcome.seconds,
    )
    return outcome
