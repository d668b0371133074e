"""A second read of a doubtful line: an unsure word that names no identifier counts as text
only when reading it again another way finds text again.

Why: OCR reads "words" in moving speckle and anatomy at confidence 0.5-0.7 (deid-data's grey
cine: a three-letter word at 0.60 on one frame, masked, and another at 0.55 at the mask's
edge on the output, which held the image; in another run "NAw" at 0.53 on the output). Such
a read does not survive its pixels being read differently; printed text does. So a line read
with a confidence below ``CONFIRM_SCORE`` that holds two or more letters or digits and names
none of the study's identifiers is read again by the recognition model alone (no detection),
twice: its crop in the other polarity, and its crop with a wider margin. It counts (is
masked, or holds the image at verification) when either read gives mostly the same letters
and digits, or two or more letters or digits with some confidence (``_agrees``); otherwise
it is dropped. A read that names an identifier, or is sure, or is a single character, is
kept as it is: the second read can only discard doubtful non-identifying words, never a name
or a date of the study, nor anything the free-text detector finds (anyone's name, a date,
a phone number, an id), nor a read of KEEP_DIGITS digits or more.

Why numbers are never dropped: most of what identifies a study on its pixels is numbers
(dates, ids, accession numbers, times), and a number read doubtfully is often misread in
a way no pattern knows ("0/04197" and "101/17/1" of a dark "03/04/1971" across anatomy,
0.59: both dropped, the date delivered readable; issue 22, Dec 2026). On the text-free
sets (CT and MR slices with anatomy, ultrasound speckle) the second reads dropped nothing
at all, and on 180 planted lines all 7 reads they dropped were the planted text. A kept
number is masked when it fits text (``detect.fits_text``), and holds the image otherwise.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from difflib import SequenceMatcher

import numpy as np

from sendit_ops.dicom.free_text import find_phi
from sendit_ops.dicom.pixels import ocr
from sendit_ops.dicom.pixels.display import Picture

CONFIRM_SCORE = 0.7  # a read at least this sure needs no second read
SIMILAR = 0.6  # difflib ratio of a second read that confirms the first
SECOND_SCORE = 0.5  # or: a second read of two or more letters or digits at least this sure
KEEP_DIGITS = 3  # a read with this many digits or more is kept however unsure (see above)
_ALNUM = re.compile(r"[0-9A-Za-z]")
_DIGIT = re.compile(r"[0-9]")


def _letters(text: str) -> str:
    return "".join(_ALNUM.findall(text)).upper()


def _close(a: str, b: str) -> bool:
    """Mostly the same letters and digits (``SIMILAR`` of difflib's ratio): a real line on a
    busy background reads a letter or two differently each time ("CLEVELAND" on speckle read
    "CEEVELAND", then "CIEEVERAND" inverted), a word made of speckle comes out different."""
    return bool(a and b) and SequenceMatcher(None, a, b).ratio() >= SIMILAR


def _agrees(first: str, text: str, score: float) -> bool:
    """A second read confirms the first: mostly the same letters and digits, or two or
    more of them read with some confidence (a line turned by 90 degrees reads differently
    each way: a real "NE" read "3N", then "EN" 0.59; speckle read "NAw" 0.53, then "" and
    "L" 0.32)."""
    letters = _letters(text)
    return _close(first, letters) or (len(letters) >= 2 and score >= SECOND_SCORE)


def needs_second_read(hit: ocr.TextHit, is_identifying: Callable[[str], bool]) -> bool:
    """True for an unsure read of two or more letters or digits that names no identifier
    of the study, holds nothing the free-text detector calls identifying (anyone's name,
    a date, a phone number, an id: another person's data on the screen is PHI too, so such
    a read is kept however unsure it is) and fewer than KEEP_DIGITS digits."""
    return (
        hit.score < CONFIRM_SCORE
        and len(_letters(hit.text)) >= 2
        and len(_DIGIT.findall(hit.text)) < KEEP_DIGITS
        and not is_identifying(hit.text)
        and not find_phi(hit.text)
    )


def _crops(image: Picture, hit: ocr.TextHit) -> list[Picture]:
    """The two second reads of ``hit``: the other polarity (margin of a fifth of the line's
    height) and the same polarity with a margin of a whole height; turned level when the
    line runs top to bottom."""
    rows, columns = image.shape[:2]
    height = max(1, min(hit.x1 - hit.x0, hit.y1 - hit.y0))
    out = []
    for margin, invert in ((max(2, height // 5), True), (height, False)):
        y0, y1 = max(0, hit.y0 - margin), min(rows, hit.y1 + margin)
        x0, x1 = max(0, hit.x0 - margin), min(columns, hit.x1 + margin)
        crop = image[y0:y1, x0:x1]
        if crop.size == 0:
            continue
        if invert:
            crop = 255 - crop
        vertical = hit.vertical if hit.vertical is not None else (y1 - y0) > (x1 - x0)
        if vertical:
            crop = np.rot90(crop)
        out.append(np.ascontiguousarray(crop))
    return out


def _recognize(crops: list[Picture], engine: str, device: str) -> list[tuple[str, float]]:
    """What the recognition model alone reads in each crop (``ocr.read_lines``)."""
    return ocr.read_lines(crops, engine, device)


class Confirmer:
    """Second reads, cached by the pixels read (static text on a cine is read once)."""

    def __init__(self, is_identifying: Callable[[str], bool], engine: str, device: str):
        self.is_identifying = is_identifying
        self.engine = engine
        self.device = device
        self._cache: dict[tuple[bytes, str], bool] = {}
        self.dropped = 0  # doubtful reads not confirmed (a count: no text is kept)
        self._count = threading.Lock()  # frames of a cine are read in several threads

    def keep(self, image: Picture, hits: list[ocr.TextHit]) -> list[ocr.TextHit]:
        """``hits`` read in ``image`` without the doubtful ones a second read does not
        confirm."""
        out = []
        for hit in hits:
            if not needs_second_read(hit, self.is_identifying) or self._confirmed(image, hit):
                out.append(hit)
            else:
                with self._count:
                    self.dropped += 1
        return out

    def _confirmed(self, image: Picture, hit: ocr.TextHit) -> bool:
        crops = _crops(image, hit)
        digest = hashlib.blake2b(digest_size=16)
        for crop in crops:
            digest.update(crop.tobytes())
        first = _letters(hit.text)
        key = (digest.digest(), first)
        if key not in self._cache:
            again = _recognize(crops, self.engine, self.device)
            self._cache[key] = any(_agrees(first, text, score) for text, score in again)
        return self._cache[key]
