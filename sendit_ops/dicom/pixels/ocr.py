"""The OCR engine: rapidocr 3.10 (PP-OCR ONNX models inside the wheel; nothing is downloaded).

One engine per process, created on first use and reused (loading the models takes longer than
reading a frame). It runs on one thread: the pipeline runs one task per core already.
What it reads is identified data: it stays in :class:`TextHit` (text hidden from ``repr``),
is compared in memory and never logged, raised or returned by the stage.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ENGINE_PARAMS: dict[str, Any] = {
    "Global.log_level": "critical",
    "EngineConfig.onnxruntime.intra_op_num_threads": 1,
    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
}
_engine: Any = None
_lock = threading.Lock()


class OCRUnavailableError(Exception):
    """The configured OCR engine cannot be used (not installed, or unknown)."""


@dataclass(frozen=True)
class TextHit:
    """One line of text OCR read: its axis-aligned box and confidence. ``text`` is PHI."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float
    text: str = field(repr=False)


def engine(name: str = "rapidocr") -> Any:
    """The process's OCR engine (created once)."""
    global _engine
    if name != "rapidocr":
        raise OCRUnavailableError(f"OCR engine {name!r} is not supported")
    with _lock:
        if _engine is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as exc:
                raise OCRUnavailableError("rapidocr is not installed") from exc
            _engine = RapidOCR(params=ENGINE_PARAMS)
            # rapidocr's own logger would print what it reads at debug level
            for logger_name in ("RapidOCR", "rapidocr"):
                logging.getLogger(logger_name).setLevel(logging.CRITICAL)
        return _engine


def read(rgb: np.ndarray, name: str = "rapidocr") -> list[TextHit]:
    """Text lines in one 8-bit RGB frame (rows, columns, 3)."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    result = engine(name)(bgr)
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
