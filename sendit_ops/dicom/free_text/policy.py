"""What becomes of a kept description: identifying information replaced by typed placeholders
(``[name]``, ``[date]``, ``[id]``, ``[phone]``, ``[address]``, ``[email]``, ``[url]``,
``[age]``), complete dates shifted by the study's jitter when the dates are kept modified,
and a value that is mostly placeholders removed (what is left would tell a researcher
nothing, and its shape could still identify).

"Mostly": the findings cover more than half of the value's letters and digits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from sendit_ops.dicom.free_text.model import Finding, Kind

DateMode = Literal["shift", "remove"]
MOSTLY = 0.5


@dataclass(frozen=True)
class CleanedText:
    """The cleaned value and the spans of it that the pipeline wrote (placeholders, shifted
    dates): the leak check checks only the rest (``written.Written.text``)."""

    text: str
    written: tuple[tuple[int, int], ...]


def shifted(ymd: tuple[int, int, int], days: int) -> str | None:
    """A date moved by ``days``, written YYYY-MM-DD (None if out of range)."""
    try:
        moved = date(*ymd) + timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return moved.isoformat()


def apply(
    text: str, findings: Iterable[Finding], dates: DateMode = "remove", jitter_days: int = 0
) -> CleanedText:
    """``text`` with ``findings`` (non-overlapping) replaced; "" when mostly placeholders."""
    findings = sorted(findings)
    if not findings:
        return CleanedText(text, ())
    alnum = sum(c.isalnum() for c in text)
    covered = sum(c.isalnum() for f in findings for c in text[f.start : f.end])
    if alnum and covered / alnum > MOSTLY:
        return CleanedText("", ())
    out: list[str] = []
    written: list[tuple[int, int]] = []
    last = pos = 0
    for f in findings:
        out.append(text[last : f.start])
        pos += f.start - last
        replacement = f.kind.placeholder
        if f.kind == Kind.DATE and dates == "shift" and f.date is not None:
            replacement = shifted(f.date, jitter_days) or replacement
        out.append(replacement)
        written.append((pos, pos + len(replacement)))
        pos += len(replacement)
        last = f.end
    out.append(text[last:])
    return CleanedText("".join(out), tuple(written))
