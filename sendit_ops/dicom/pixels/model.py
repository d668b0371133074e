"""The pixel stage's records: boxes, the plan made from the original header, the outcome.

Everything here is PHI-free by construction: coordinates, counts and reasons naming rules.
The text OCR reads never enters these records, so they may be logged, stored in the batch
record, pushed to XCom and shown on the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

# where a box came from
OCR = "ocr"
GRAYLIST = "graylist"
US_REGIONS = "outside-us-regions"
SCREEN = "screen"  # a region the text screen found (read by OCR, never masked as such)


class BoxDict(TypedDict):
    """``Box`` as JSON (the batch record, the images list)."""

    frame: int | None
    x0: int
    y0: int
    x1: int
    y1: int
    source: NotRequired[str]  # written always; absent: OCR


class PixelPlanDict(TypedDict, total=False):
    """``PixelPlan`` as JSON (carried from the filter step to the header step)."""

    risk: str | None
    boxes: list[BoxDict]
    rows: int
    columns: int


@dataclass(frozen=True, order=True)
class Box:
    """A rectangle to mask, in pixel columns (x) and rows (y), end-exclusive.

    ``frame`` is the frame the text was read on (None: from the header plan, or read on the
    max projection of a cine). Burned-in text is static, so every box is masked on every frame
    whatever its ``frame``: the field only tells a reviewer where it was found.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    frame: int | None = None
    source: str = OCR

    @property
    def area(self) -> int:
        """Pixels covered (0 for an empty box)."""
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)

    def clipped(self, rows: int, columns: int) -> Box | None:
        """This box inside a rows x columns image, or None when nothing of it is inside."""
        x0, y0 = max(0, self.x0), max(0, self.y0)
        x1, y1 = min(columns, self.x1), min(rows, self.y1)
        if x1 <= x0 or y1 <= y0:
            return None
        return Box(x0, y0, x1, y1, self.frame, self.source)

    def padded(self, pad: int) -> Box:
        """This box grown by ``pad`` pixels on every side (anti-aliased glyph edges)."""
        return Box(
            self.x0 - pad, self.y0 - pad, self.x1 + pad, self.y1 + pad, self.frame, self.source
        )

    def as_dict(self) -> BoxDict:
        """JSON-able form for the batch record."""
        return {
            "frame": self.frame,
            "x0": self.x0,
            "y0": self.y0,
            "x1": self.x1,
            "y1": self.y1,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: BoxDict) -> Box:
        """Inverse of :meth:`as_dict`."""
        frame = data.get("frame")
        return cls(
            int(data["x0"]),
            int(data["y0"]),
            int(data["x1"]),
            int(data["y1"]),
            None if frame is None else int(frame),
            str(data.get("source", OCR)),
        )


@dataclass(frozen=True)
class PixelPlan:
    """What the ORIGINAL header says about an image's pixels, made before header anonymization
    removes the fields deid's graylist rules and the ultrasound regions live in.

    ``risk`` is why the image may carry burned-in text (None: the stage need not run);
    ``boxes`` are the areas the header alone says to mask (graylist coordinates, everything
    outside ``SequenceOfUltrasoundRegions``). Pickle- and JSON-friendly, PHI-free.
    """

    risk: str | None
    boxes: tuple[Box, ...] = ()
    rows: int = 0
    columns: int = 0

    @property
    def needed(self) -> bool:
        """True when the pixel stage must run on this image."""
        return self.risk is not None

    def as_dict(self) -> PixelPlanDict:
        """JSON-able form, to carry the plan from the filter step to the header step."""
        return {
            "risk": self.risk,
            "boxes": [b.as_dict() for b in self.boxes],
            "rows": self.rows,
            "columns": self.columns,
        }

    @classmethod
    def from_dict(cls, data: PixelPlanDict) -> PixelPlan:
        """Inverse of :meth:`as_dict`."""
        return cls(
            data.get("risk"),
            tuple(Box.from_dict(b) for b in data.get("boxes") or ()),
            int(data.get("rows") or 0),
            int(data.get("columns") or 0),
        )


@dataclass(frozen=True)
class FrameThumb:
    """A reviewer's thumbnail of one frame of a held image: ``frame`` (0-based index, as
    ``Box.frame``), the PNG (the masked output, boxes outlined: see ``thumbnail.strip``) and
    the boxes outlined on it (image coordinates). Never the text OCR read."""

    frame: int
    png: bytes = field(repr=False)
    boxes: tuple[Box, ...] = ()


@dataclass(frozen=True)
class PixelOutcome:
    """The result of cleaning one image's pixels.

    ``cleaned`` is True only when the masked output was decoded again and OCR found nothing
    but allow-listed technical text; the dataset then carries the masked pixels and
    ``BurnedInAnnotation`` NO. Otherwise ``held_reason`` says why the image must not be
    delivered (PHI-free: a rule or a codec problem and counts, never the text read) and the
    dataset's pixel data is left as it was. ``thumbnail_png`` shows the MASKED output (empty
    when nothing could be decoded), for a reviewer. ``strip`` (held images): thumbnails of
    the frames a reviewer must see, boxes outlined, ``frames_not_shown`` the frames left out
    by the cap (``thumbnail.MAX_FRAMES``); ``rows`` x ``columns`` the image's size, so the
    page can say where a box is.
    """

    cleaned: bool
    held_reason: str | None
    boxes: tuple[Box, ...] = ()
    frames: int = 0
    thumbnail_png: bytes = field(default=b"", repr=False)
    seconds: float = 0.0
    transfer_syntax: str = ""  # the output's transfer syntax UID ("" when held)
    # delivered because a reviewer released it although OCR still read text after masking
    released: bool = False
    # share of the image's area masked (held: the share the mask would have covered)
    masked_share: float = 0.0
    screened: int = 0  # frames the text screen looked at
    read_whole: bool = False  # full-frame OCR too (the header gave a reason to look harder)
    strip: tuple[FrameThumb, ...] = field(default=(), repr=False)
    frames_not_shown: int = 0
    rows: int = 0
    columns: int = 0

    def as_dict(self) -> dict[str, object]:
        """JSON-able summary for the batch record (thumbnail left out: store it as a file)."""
        return {
            "cleaned": self.cleaned,
            "held_reason": self.held_reason,
            "boxes": [b.as_dict() for b in self.boxes],
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "transfer_syntax": self.transfer_syntax,
            "released": self.released,
            "masked_share": round(self.masked_share, 5),
            "screened": self.screened,
            "read_whole": self.read_whole,
            "rows": self.rows,
            "columns": self.columns,
            "frames_not_shown": self.frames_not_shown,
        }
