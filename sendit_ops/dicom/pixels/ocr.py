"""The OCR engine: rapidocr 3.10 (PP-OCR ONNX models inside the wheel; nothing is downloaded).

One set of models per process and device, loaded on first use and reused (loading them takes
longer than reading a frame), and one light engine object per thread over them (``engine``):
the pixel stage reads the frames of a cine in a few threads at once (``pixel_threads``; 0:
``stage.FRAME_WORKERS``, the cores; ONNX Runtime and OpenCV release the GIL while they
work). rapidocr keeps per-call state on its Python objects (the options of a call, the
detector's preprocessing, the recognizer's input shape that ``gate_regions`` narrows), so
no thread calls another's objects; the three ONNX Runtime sessions beneath are shared
(``InferenceSession.run`` is thread-safe): a second full engine per thread cost ~75 MB of
models (Dec 2026, docs/performance.md). Detection runs at the image's own scale
(rapidocr's default first scales a 512x512 frame UP to 736, twice the work); small text is
read by :func:`read_region` instead, which scales a candidate region so its line is ~32 px
high, the height the recognition model reads best.

Threads: ONNX Runtime runs one intra-op thread per engine (``MAX_THREADS``): on this 2-core
machine kind two intra-op threads doubled the CPU time of a read for no gain in wall time
(measured Dec 2026); the cores are used by reading frames in parallel instead.

Device: ``pixel_device`` auto | cpu | cuda; CUDA is used only when onnxruntime-gpu's CUDA
provider loads here (CI has no GPU: CPU is the tested path).

What it reads is identified data: it stays in :class:`TextHit` (text hidden from ``repr``),
is compared in memory and never logged, raised or returned by the stage.
"""

from __future__ import annotations

import copy
import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sendit_ops.dicom.pixels.display import Picture
from sendit_ops.dicom.pixels.model import Box

MAX_THREADS = 1
ENGINE_PARAMS: dict[str, Any] = {
    "Global.log_level": "critical",
    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
    # detection at the frame's own size (see the module docstring); rapidocr's preprocessing
    # still shrinks anything over max_side_len
    "Det.limit_type": "max",
    "Det.limit_side_len": 2048,
}
LINE_HEIGHT = 32  # pixels a candidate line is scaled to before it is read
MAX_WINDOW_PIXELS = 768 * 768  # a window is scaled up no further than this area
# a window of dark text is stretched from its darkest value to this percentile of its values
# (``_stretched``): the text's background, text being a small part of a window
DARK_SHARE = 50
GATE_PAD = 2  # pixels around a candidate region the gate reads
GATE_SCORE = 0.3
# a gate read this sure (and this long) is text beyond doubt: a turned window of it that
# reads as nothing one way is read the other way (``read_window``). On 40 text-free CT/MR
# slices with anatomy, reading every such window both ways made 54 % more reads and masked
# a vessel; the regions of the turned lines it was for read at 0.99+ (Dec 2026)
SURE_SCORE, SURE_LETTERS = 0.9, 4
# width (pixels at the model's 48 px height) the gate's crops are padded to: the engine pads
# every crop to 320 (a 6.7:1 line), but a candidate region is mostly 1.2-3:1, so most of a
# gate read was padding; 128 halved the gate's CPU time on CT slices with anatomy, and
# every planted line a region of which passed the gate before still passed (Dec 2026)
GATE_WIDTH = 128  # a region whose quick read is less sure than this is not read again
_local = threading.local()  # .engines: this thread's engines by device
_lock = threading.Lock()  # engines are created one at a time (imports, model files)
# device -> the process's loaded engine: no call is ever made on it (its per-call state
# stays as loaded); every thread's engine is a twin of it (``_twin``)
_models: dict[str, Any] = {}


class OCRUnavailableError(Exception):
    """The configured OCR engine or device cannot be used (not installed, or unknown)."""


@dataclass(frozen=True)
class TextHit:
    """One line of text OCR read: its axis-aligned box and confidence. ``text`` is PHI."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float
    text: str = field(repr=False)
    # True: read turned level (text running top to bottom); None: judge by the box's shape
    vertical: bool | None = None


def cuda_available() -> bool:
    """True when ONNX Runtime here has a CUDA execution provider (onnxruntime-gpu)."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when its provider loads, else cpu; ``cuda`` without the provider is
    an error naming the fix."""
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise OCRUnavailableError(
            "pixel_device is cuda but ONNX Runtime has no CUDA provider here "
            "(install onnxruntime-gpu and the CUDA libraries, or set pixel_device to auto)"
        )
    return device


def engine(name: str = "rapidocr", device: str = "cpu") -> Any:
    """This thread's OCR engine for ``device`` (created once per thread, over the models
    the process loaded once: see the module docstring)."""
    if name != "rapidocr":
        raise OCRUnavailableError(f"OCR engine {name!r} is not supported")
    device = resolve_device(device)
    engines: dict[str, Any] = _local.__dict__.setdefault("engines", {})
    if device in engines:
        return engines[device]
    with _lock:
        loaded = _models.get(device)
        if loaded is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as exc:
                raise OCRUnavailableError("rapidocr is not installed") from exc
            threads = max(1, min(MAX_THREADS, os.cpu_count() or 1))
            params = {**ENGINE_PARAMS, "EngineConfig.onnxruntime.intra_op_num_threads": threads}
            if device == "cuda":
                params["EngineConfig.onnxruntime.use_cuda"] = True
            loaded = RapidOCR(params=params)
            _without_memory_patterns(loaded)
            _models[device] = loaded
            release_memory()  # the sessions rapidocr opened first, and loading's buffers
            # rapidocr's own logger would print what it reads at debug level
            for logger_name in ("RapidOCR", "rapidocr"):
                logging.getLogger(logger_name).setLevel(logging.CRITICAL)
        engines[device] = _twin(loaded)
        return engines[device]


def _twin(loaded: Any) -> Any:
    """An engine for one thread over ``loaded``'s ONNX Runtime sessions: copies of the
    objects rapidocr changes during a call (the engine: the options of a call; the
    detector: its preprocessing; the recognizer: ``rec_image_shape``, ``gate_regions``),
    sharing what no call changes (the sessions, whose ``run`` is thread-safe; the
    configuration; the pre- and post-processing steps, which keep no state between calls).
    ``loaded`` itself is never called: a twin made while another thread reads copies the
    state as loaded, not that thread's state in the middle of a call."""
    twin = copy.copy(loaded)
    twin.text_det = copy.copy(loaded._load_det_model())
    twin.text_det.session = _OneAtATime(loaded._load_det_model().session)
    twin.text_cls = copy.copy(loaded._load_cls_model())
    twin.text_rec = copy.copy(loaded._load_rec_model())
    return twin


_detecting = threading.Lock()


def _fresh_locks() -> None:
    """In a forked child: a lock another thread of the parent held at the fork stays held
    forever in the child (that thread is not there to release it); the child's are new."""
    global _lock, _detecting
    _lock, _detecting = threading.Lock(), threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks)


class _OneAtATime:
    """The detection model's session, run by one thread at a time (``_detecting``).

    A detection pass is the engine's largest working memory by far: on a 640x480 view
    ~45 MB live and ~150 MB of the process's heap at its peak (the allocator's pieces);
    two whole reads at once took +203 MB over the heap at rest, one +115 MB (Dec 2026).
    Detection is a small share of a cine's work (its key views, the windows of regions not
    read before): the other thread screens frames, gates and recognises meanwhile."""

    def __init__(self, session: Any):
        self.session = session

    def __call__(self, batch: Any) -> Any:
        with _detecting:
            return self.session(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


@cache
def _glibc(name: str) -> Any:
    """glibc's function ``name``, or None (another C library); looked up once."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None


def release_memory() -> None:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere
    nothing). ONNX Runtime's buffers of a read are freed to the C heap, which keeps most of
    them: after a cine's first look ~150 MB, held through masking and verification."""
    trim = _glibc("malloc_trim")
    if trim is not None:
        trim(0)


M_ARENA_MAX = -8  # glibc's mallopt parameter


def one_heap() -> None:
    """Threads started from now on allocate from the heaps already there (glibc's
    ``mallopt(M_ARENA_MAX, 1)``; elsewhere nothing), called before the frame threads start.

    glibc gives each new thread a heap of its own, and each heap keeps what was freed in
    it: a detection's buffers freed in one thread's heap were of no use to the other's,
    and the 2-thread 120-frame cine peaked ~30 MB higher (Dec 2026: 444-451 -> 414-424 MB,
    the CPU time the same: the threads' large allocations are ONNX Runtime's buffers)."""
    mallopt = _glibc("mallopt")
    if mallopt is not None:
        mallopt(M_ARENA_MAX, 1)


def _without_memory_patterns(ocr: Any) -> None:
    """The engine's three ONNX sessions loaded now, without ONNX Runtime's memory patterns
    (rapidocr's options do not reach that setting: each session is opened again with it off).

    A memory pattern is kept per input shape, and the windows the stage reads come in
    hundreds of shapes: with them on, an engine grew by ~260 MB over a 30-frame cine; off,
    by ~190 MB, at the same CPU time (Dec 2026, docs/performance.md)."""
    from onnxruntime import InferenceSession

    for model in (ocr._load_det_model(), ocr._load_cls_model(), ocr._load_rec_model()):
        wrapper = model.session  # rapidocr's OrtInferSession
        session = wrapper.session
        options = session.get_session_options()
        options.enable_mem_pattern = False
        providers = session.get_providers()
        settings = session.get_provider_options()
        wrapper.session = InferenceSession(
            session._model_path,
            sess_options=options,
            providers=[(p, settings.get(p, {})) for p in providers],
        )


Area = tuple[int, int, int, int]  # x0, y0, x1, y1 (end-exclusive)


def read(
    rgb: Picture, name: str = "rapidocr", device: str = "cpu", skip: Sequence[Area] = ()
) -> list[TextHit]:
    """Text lines in one 8-bit RGB frame (rows, columns, 3).

    A line the detector finds wholly inside one of the ``skip`` areas is not recognised
    (and not returned): the header plan's boxes, masked whatever is read there. Detection
    still sees the whole frame as it is (masking those areas first changed what the
    detector found elsewhere: a turned line in deid-data's grey cine was missed)."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    ocr = engine(name, device)
    if skip:
        boxes, texts, scores = _read_outside(ocr, bgr, skip)
    else:
        result = ocr(bgr, use_det=True, use_cls=True, use_rec=True)
        boxes = getattr(result, "boxes", None)
        if boxes is None or len(boxes) == 0:
            return []
        texts = list(getattr(result, "txts", None) or [""] * len(boxes))
        scores = list(getattr(result, "scores", None) or [1.0] * len(boxes))
    hits = []
    rows, columns = rgb.shape[:2]
    for quad, text, score in zip(boxes, texts, scores, strict=False):
        quad = np.asarray(quad, dtype=np.float64)
        x0, y0 = np.floor(quad.min(axis=0)).astype(int)
        x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
        hits.append(
            TextHit(
                max(0, int(x0)),
                max(0, int(y0)),
                min(columns, int(x1) + 1),
                min(rows, int(y1) + 1),
                float(score),
                str(text),
            )
        )
    return hits


def _read_outside(
    ocr: Any, bgr: Picture, skip: Sequence[Area]
) -> tuple[Any, list[str], list[float]]:
    """rapidocr's own steps (as its ``__call__`` runs them), with the detected lines that lie
    wholly inside a ``skip`` area left out before the angle classifier and recognition."""
    from rapidocr.main import RapidOCRError
    from rapidocr.utils.process_img import map_boxes_to_original

    rows, columns = bgr.shape[:2]
    image = ocr.load_img(bgr)
    prepared, record = ocr.preprocess_img(image)
    try:
        crops, found = ocr.detect_and_crop(prepared, record)
    except RapidOCRError:  # nothing detected
        return [], [], []
    quads = map_boxes_to_original(np.array(found.boxes, dtype=np.float64), record, rows, columns)
    keep = []
    for index, quad in enumerate(quads):
        x0, y0 = quad.min(axis=0)
        x1, y1 = quad.max(axis=0)
        if not any(a[0] <= x0 and a[1] <= y0 and x1 <= a[2] and y1 <= a[3] for a in skip):
            # (the quad's float corners: a line touching the area's edge is read)
            keep.append(index)
    if not keep:
        return [], [], []
    turned, _ = ocr.cls_and_rotate([crops[i] for i in keep])
    result = ocr.recognize_txt(turned)
    least = float(getattr(ocr, "text_score", 0.5))
    out: tuple[list[Any], list[str], list[float]] = ([], [], [])
    for index, text, score in zip(keep, result.txts or (), result.scores or (), strict=False):
        if str(text).strip() and float(score) >= least:  # as rapidocr's output filters
            out[0].append(quads[index])
            out[1].append(str(text))
            out[2].append(float(score))
    return out


def _gate_crops(rgb: Picture, box: Box) -> list[Picture]:
    """What the gate reads for one region: its crop with GATE_PAD around it; a region
    taller than wide (text rotated by 90 degrees) turned both ways."""
    pad = GATE_PAD
    crop = rgb[max(0, box.y0 - pad) : box.y1 + pad, max(0, box.x0 - pad) : box.x1 + pad]
    if crop.size == 0:
        return []
    if (box.y1 - box.y0) > (box.x1 - box.x0):
        return [np.rot90(crop), np.rot90(crop, -1)]
    return [crop]


def _reads_as_text(text: object, score: object) -> bool:
    letters = sum(c.isalnum() for c in str(text))
    return letters >= 2 and float(score) >= GATE_SCORE  # type: ignore[arg-type]


def _reads_surely(text: object, score: object) -> bool:
    letters = sum(c.isalnum() for c in str(text))
    return letters >= SURE_LETTERS and float(score) >= SURE_SCORE  # type: ignore[arg-type]


def looks_like_text(rgb: Picture, box: Box, name: str = "rapidocr", device: str = "cpu") -> bool:
    """A quick read of one candidate region by the recognition model alone (no detection):
    True when it reads at least two letters or digits with some confidence.

    It costs ~10 ms where a detection pass on the region's window costs 50-500 ms, and most
    regions the screen reports on anatomy (vessels, folds) read as nothing or one
    character. A region that is text but read poorly here still passes at GATE_SCORE."""
    return gate_regions(rgb, [box], name, device)[0]


def gate_regions(
    rgb: Picture,
    boxes: list[Box],
    name: str = "rapidocr",
    device: str = "cpu",
    sure: list[bool] | None = None,
) -> list[bool]:
    """``looks_like_text`` for several regions of one frame in one call: their crops go
    through the angle classifier and the recognition model together, in the engine's
    batches, padded to GATE_WIDTH rather than the engine's 320 (on a CT slice with anatomy
    the screen reports 8-33 regions, most of them short). Each crop is prepared as the
    engine prepares an image read without detection (scaled within its side bounds).

    ``sure``, when given, receives for each region whether it read as text beyond doubt
    (``_reads_surely``): such a turned line is read both ways if one finds nothing
    (``read_window``)."""
    from rapidocr.utils.process_img import resize_image_within_bounds

    ocr = engine(name, device)
    owners: list[int] = []
    crops: list[Picture] = []
    for index, box in enumerate(boxes):
        for crop in _gate_crops(rgb, box):
            bgr = np.ascontiguousarray(crop[..., ::-1])
            resized, _, _ = resize_image_within_bounds(bgr, ocr.min_side_len, ocr.max_side_len)
            crops.append(resized)
            owners.append(index)
    out = [False] * len(boxes)
    if sure is not None:
        sure[:] = [False] * len(boxes)
    if not crops:
        return out
    turned, _ = ocr.cls_and_rotate(crops)
    recognizer = ocr._load_rec_model()
    shape = recognizer.rec_image_shape  # this thread's twin (``_twin``): none other sees it
    recognizer.rec_image_shape = [shape[0], shape[1], GATE_WIDTH]
    try:
        result = ocr.recognize_txt(turned)
    finally:
        recognizer.rec_image_shape = shape
    texts = list(getattr(result, "txts", None) or ())
    scores = list(getattr(result, "scores", None) or ())
    for owner, text, score in zip(owners, texts, scores, strict=False):
        if _reads_as_text(text, score):
            out[owner] = True
        if sure is not None and _reads_surely(text, score):
            sure[owner] = True
    return out


def read_lines(
    crops: list[Picture], name: str = "rapidocr", device: str = "cpu"
) -> list[tuple[str, float]]:
    """What the recognition model alone (angle classifier, no detection) reads in each RGB
    crop, taken as one line, and how sure: for second reads of a doubtful line
    (``confirm``). Here, so no other module touches the engine's per-call options."""
    reader = engine(name, device)
    out = []
    for crop in crops:
        bgr = np.ascontiguousarray(crop[..., ::-1])
        result = reader(bgr, use_det=False, use_cls=True, use_rec=True)
        texts = list(getattr(result, "txts", None) or ())
        scores = list(getattr(result, "scores", None) or [1.0] * len(texts))
        out += [(str(t), float(s)) for t, s in zip(texts, scores, strict=False)]
    return out


def region_window(
    box: Box, rows: int, columns: int, wide: bool = False
) -> tuple[int, int, int, int]:
    """The part of the frame read for a candidate region: the region with a margin of one
    line height across and three along the line (the whole band along it when ``wide``),
    so a line the screen found only in part is read whole."""
    height = min(box.x1 - box.x0, box.y1 - box.y0)
    across = (box.y1 - box.y0) > (box.x1 - box.x0)  # text rotated by 90 degrees
    pad_across, pad_along = max(8, height), max(16, 3 * height)
    if across:
        y0, y1 = (0, rows) if wide else (box.y0 - pad_along, box.y1 + pad_along)
        x0, x1 = box.x0 - pad_across, box.x1 + pad_across
    else:
        x0, x1 = (0, columns) if wide else (box.x0 - pad_along, box.x1 + pad_along)
        y0, y1 = box.y0 - pad_across, box.y1 + pad_across
    return max(0, x0), max(0, y0), min(columns, x1), min(rows, y1)


@dataclass(frozen=True)
class Window:
    """A part of a frame to read: candidate regions whose windows overlap, merged.
    ``line`` is the smallest line height among them (the scale is chosen for it) and
    ``across`` says the text runs top to bottom (rotated by 90 degrees)."""

    x0: int
    y0: int
    x1: int
    y1: int
    line: int
    across: bool
    sure: bool = False  # one of its regions read as text beyond doubt (``gate_regions``)
    # its regions are mostly strokes darker than their surroundings (``screen.Region.dark``):
    # read as nothing, it is read again stretched over its darker values (``stage.Looker``)
    dark: bool = False


def windows(
    regions: list[Box],
    rows: int,
    columns: int,
    sure: list[bool] | None = None,
    dark: list[bool] | None = None,
) -> list[Window]:
    """The windows to read for a frame's candidate regions (overlapping ones merged, so a
    line split into several regions is read once); ``sure``: which regions read as text
    beyond doubt (``gate_regions``); ``dark``: which are of dark strokes
    (``screen.Region.dark``). A window is dark when its dark regions cover more area than
    its others: a dark line's letters come with regions of the bright gaps between them
    (and a bright line's with dark ones), so neither "all" nor "any" tells the text's
    polarity."""
    items: list[Window] = []
    # per window: the area of its dark regions less the area of its other ones
    votes: list[int] = []
    for index, box in enumerate(regions):
        across = (box.y1 - box.y0) > (box.x1 - box.x0)
        line = max(1, min(box.x1 - box.x0, box.y1 - box.y0))
        certain = bool(sure[index]) if sure is not None else False
        area = (box.x1 - box.x0) * (box.y1 - box.y0)
        votes.append(area if dark is not None and dark[index] else -area)
        items.append(Window(*region_window(box, rows, columns), line, across, certain))
    merged = True
    while merged:
        merged = False
        out: list[Window] = []
        tally: list[int] = []
        for item, vote in zip(items, votes, strict=True):
            for i, other in enumerate(out):
                if (
                    other.across == item.across
                    and item.x0 < other.x1
                    and other.x0 < item.x1
                    and item.y0 < other.y1
                    and other.y0 < item.y1
                ):
                    out[i] = Window(
                        min(other.x0, item.x0),
                        min(other.y0, item.y0),
                        max(other.x1, item.x1),
                        max(other.y1, item.y1),
                        min(other.line, item.line),
                        other.across,
                        other.sure or item.sure,
                    )
                    tally[i] += vote
                    merged = True
                    break
            else:
                out.append(item)
                tally.append(vote)
        items, votes = out, tally
    return [replace(w, dark=v > 0) for w, v in zip(items, votes, strict=True)]


def transposed(window: Window, rows: int, columns: int) -> Window:
    """The window read the other way: a line the screen found across a rotated line of
    text (letters side by side in a column read as a short horizontal line) is read as a
    column (or a row), three times its extent on each side."""
    extent = max(window.x1 - window.x0, window.y1 - window.y0)
    if window.across:
        cx = (window.x0 + window.x1) // 2
        x0, x1 = max(0, cx - extent - 3 * window.line), min(columns, cx + extent + 3 * window.line)
        return Window(x0, window.y0, x1, window.y1, window.line, False, dark=window.dark)
    cy = (window.y0 + window.y1) // 2
    y0, y1 = max(0, cy - extent - 3 * window.line), min(rows, cy + extent + 3 * window.line)
    return Window(window.x0, y0, window.x1, y1, window.line, True, dark=window.dark)


def _widened(window: Window, rows: int, columns: int) -> Window:
    if window.across:
        return Window(window.x0, 0, window.x1, rows, window.line, True, window.sure, window.dark)
    return Window(0, window.y0, columns, window.y1, window.line, False, dark=window.dark)


def _stretched(crop: Picture, dark: bool = False) -> Picture:
    """A window's crop over its own range of values: text a few grey levels from its
    background (dark text on dark tissue) shows as clearly as it would on a black field.

    ``dark`` (the window's text is darker than its surroundings, ``Window.dark``): over
    the range from its darkest value to its median (DARK_SHARE), the brighter rest white.
    Over the whole range, bright anatomy in the window (bone beside the lung, a skin line)
    kept dark text over darker tissue within a few levels of it, and turned dark lines
    there were read as nothing (issue 22)."""
    lo, hi = int(crop.min()), int(crop.max())
    if dark:
        middle = int(np.percentile(crop, DARK_SHARE))
        if middle - lo >= 8:
            hi = middle
    if hi - lo < 8 or (lo == 0 and hi == 255):
        return crop
    scaled = (crop.astype(np.float32) - lo) * (255.0 / (hi - lo))
    clipped: NDArray[np.floating[Any]] = np.clip(scaled + 0.5, 0, 255)
    return clipped.astype(np.uint8)


def _read_turned(crop: Picture, name: str, device: str, both: bool) -> list[TextHit]:
    """Text rotated by 90 degrees, read turned level (boxes in the crop's coordinates).

    Turned counter-clockwise first: a line turned the other way comes out upside down
    and the angle classifier turns it. When that read finds nothing and ``both`` (the
    gate read the line beyond doubt), the crop is read turned clockwise too: upside down,
    a dark date across a CT slice was not found at all by the detector (read upright,
    "03/04/1971" at 0.99; Dec 2026, docs/performance.md).
    Not read upright as well (as before): the window cost twice as much for nothing, on
    180 planted lines, and its boxes of a turned line were the wider ones."""
    height, width = crop.shape[:2]
    turned = read(np.ascontiguousarray(np.rot90(crop)), name, device)
    if turned or not both:  # (x, y) turned is (width - y, x) in the crop
        return [TextHit(width - h.y1, h.x0, width - h.y0, h.x1, h.score, h.text, True)
                for h in turned]  # fmt: skip
    turned = read(np.ascontiguousarray(np.rot90(crop, -1)), name, device)
    # (x, y) turned clockwise is (y, height - x) in the crop
    return [TextHit(h.y0, height - h.x1, h.y1, height - h.x0, h.score, h.text, True)
            for h in turned]  # fmt: skip


def read_window(
    rgb: Picture,
    window: Window,
    name: str = "rapidocr",
    device: str = "cpu",
    read_areas: list[tuple[int, int, int, int]] | None = None,
    dark: bool = False,
) -> list[TextHit]:
    """Text lines in one window of a frame (frame coordinates); ``dark``: the crop is
    stretched over its darker values (``_stretched``), for a dark window read as nothing.

    The window is scaled so its smallest candidate line is about LINE_HEIGHT pixels high
    (1x-4x), then detected and recognised. A line touching the window's end along the text
    is read again with the whole band (the screen may have found only part of a line).
    Each area of the frame actually read (x0, y0, x1, y1) is appended to ``read_areas``: a
    cache of this read is valid only while all of them are unchanged."""
    import cv2

    rows, columns = rgb.shape[:2]
    hits: list[TextHit] = []
    for attempt in (window, _widened(window, rows, columns)):
        x0, y0, x1, y1 = attempt.x0, attempt.y0, attempt.x1, attempt.y1
        if read_areas is not None:
            read_areas.append((x0, y0, x1, y1))
        crop = _stretched(rgb[y0:y1, x0:x1], dark)
        area = max(1, crop.shape[0] * crop.shape[1])
        scale = float(min(4.0, LINE_HEIGHT / window.line, (MAX_WINDOW_PIXELS / area) ** 0.5))
        scale = max(1.0, scale)
        if scale != 1.0:
            resized = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
            # cv2's stubs leave the dtype open: resizing uint8 gives uint8 (no copy here)
            crop = np.asarray(resized, dtype=np.uint8)
        if window.across:
            found = _read_turned(crop, name, device, window.sure)
        else:
            found = read(crop, name, device)
        hits = [
            TextHit(
                x0 + int(h.x0 / scale),
                y0 + int(h.y0 / scale),
                min(columns, x0 + int(np.ceil(h.x1 / scale))),
                min(rows, y0 + int(np.ceil(h.y1 / scale))),
                h.score,
                h.text,
                h.vertical,
            )
            for h in found
        ]
        if window.across:
            touching = any((h.y0 <= y0 + 1 and y0 > 0) or (h.y1 >= y1 - 1 and y1 < rows)
                           for h in hits)  # fmt: skip
        else:
            touching = any((h.x0 <= x0 + 1 and x0 > 0) or (h.x1 >= x1 - 1 and x1 < columns)
                           for h in hits)  # fmt: skip
        if not touching:
            break
    return hits
