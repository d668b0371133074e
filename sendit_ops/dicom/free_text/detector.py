"""The free-text detector: every kind of identifying information in one text, overlaps
resolved (the longer finding wins; a date or phone number wins over the id it looks like)."""

from __future__ import annotations

from sendit_ops.dicom.free_text.institutions import institutions
from sendit_ops.dicom.free_text.model import Finding, Kind
from sendit_ops.dicom.free_text.names import names
from sendit_ops.dicom.free_text.patterns import all_patterns

# which kind wins when two findings cover the same characters
_PRIORITY = {
    Kind.EMAIL: 0, Kind.URL: 0, Kind.DATE: 1, Kind.PHONE: 2, Kind.AGE: 3, Kind.ADDRESS: 4,
    Kind.ID: 5, Kind.NAME: 6,
}  # fmt: skip


def find_phi(text: str) -> list[Finding]:
    """Non-overlapping findings in ``text``, in order."""
    if not text or not text.strip():
        return []
    return resolve(text, [*all_patterns(text), *institutions(text), *names(text)])


def resolve(text: str, findings: list[Finding]) -> list[Finding]:
    """Overlapping findings made non-overlapping, in order."""
    found = [f for f in findings if f.end > f.start]
    if not found:
        return []
    # strongest first (kind priority, then length): each character goes to the first
    # finding that claims it; what a weaker finding covers beyond that stays covered
    found.sort(key=lambda f: (_PRIORITY[f.kind], -(f.end - f.start), f.start))
    owner: list[int] = [-1] * len(text)
    for n, f in enumerate(found):
        for i in range(f.start, f.end):
            if owner[i] < 0:
                owner[i] = n
    merged: list[Finding] = []
    i = 0
    while i < len(text):
        n = owner[i]
        if n < 0:
            i += 1
            continue
        j = i
        while j < len(text) and owner[j] == n:
            j += 1
        f = found[n]
        merged.append(Finding(i, j, f.kind, f.date if (i, j) == (f.start, f.end) else None))
        i = j
    return merged
