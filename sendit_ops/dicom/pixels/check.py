"""Verification: what OCR still reads on the masked output must be harmless.

A line passes when every token is an allow-listed technical token (MI, TIS, cm, Hz ...), a
short measurement (up to 3 digits, optional decimals, optional allow-listed unit: ``0.8``,
``100%``, ``20Hz``) or a single character (alone or among symbols), AND the study's
identifiers are not in it (``is_identifying``). Anything else holds the image for review: a
date, a long number, a word. The text itself is only compared, never kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from sendit_ops.dicom.identifiers import identifier_matcher  # noqa: F401 - the OCR mode, re-exported
from sendit_ops.dicom.pixels.ocr import TextHit

_SPLIT = re.compile(r"[\s=<>:;,|()\[\]{}*#~\"']+")
_MEASURE = re.compile(r"[+-]?\d{1,3}(?:[.,]\d{1,3})?(?P<unit>%|[A-Z][A-Z/]*)?")


def token_allowed(token: str, allow: frozenset[str]) -> bool:
    """True for an allow-listed token, a short measurement, or a lone character."""
    t = token.upper().strip(".-+_")
    if len(t) <= 1 or t in allow:
        return True
    if sum(c.isalnum() for c in t) <= 1:
        # one letter or digit among symbols ("B☐": OCR's placeholder for a glyph it does
        # not know, read in a grey bar's edge) carries no more than a lone character does;
        # the whole line is still matched against the study's identifiers
        return True
    match = _MEASURE.fullmatch(t)
    return match is not None and (match["unit"] is None or match["unit"] in allow)


def line_allowed(text: str, allow: frozenset[str]) -> bool:
    """True when every token of an OCR line is allowed."""
    return all(token_allowed(t, allow) for t in _SPLIT.split(text) if t)


def residual(
    hits: Iterable[TextHit], allow: Iterable[str], is_identifying: Callable[[str], bool]
) -> list[TextHit]:
    """The hits that hold an image: not allowed, or naming an identifier."""
    allowed = frozenset(a.upper() for a in allow)
    return [h for h in hits if is_identifying(h.text) or not line_allowed(h.text, allowed)]
