"""The Clean Descriptors cleaner: a kept text attribute loses the study's own identifiers and
any other identifying information the free-text detector finds.

For each value: the study's identifiers (``identifiers.IdentifierMatcher``, every spelling of
its names, ids, institutions and dates) and ``free_text.find_phi`` (anyone's names,
addresses, phones, ids, ages over 89, dates) are found on the original text, merged (one
character, one kind), and replaced by typed placeholders; complete dates are shifted by the
study's jitter when the dates are kept modified, kept with full dates, removed otherwise
(``free_text.policy``). Finding both on the original text, rather than the detector on text
whose study identifiers are already placeholders, gives the same result without the detector
seeing the placeholders. What was written (placeholders, shifted dates) is noted in the
file's ``written.Written``, so the leak check checks exactly the rest.
"""

from __future__ import annotations

from collections.abc import Callable

from sendit_ops.dicom.free_text import Finding, Kind, find_phi, resolve
from sendit_ops.dicom.free_text.policy import CleanedText, DateMode, apply
from sendit_ops.dicom.identifiers import IdentifierMatcher, Needles
from sendit_ops.dicom.written import Written

Cleaner = Callable[[str], str]
_CACHE_MAX = 10_000  # distinct values per batch kept (a UT of a report each: bounded)
DatePolicy = DateMode | str  # "shift", "remove", or "keep" (full dates retained)


class StudyDescriptors:
    """One study's descriptor cleaning; ``cleaner`` makes the callable the profile uses for a
    file (its jitter, its ``Written`` record)."""

    def __init__(self, needles: Needles, *, full_dates: bool, institutions: bool):
        self.matcher = IdentifierMatcher(needles, dates=not full_dates, institutions=institutions)
        # a study's images repeat the same descriptions: each distinct value is cleaned once
        # (per date policy and jitter), and its written spans noted for every file
        self._cache: dict[tuple[str, str, int], CleanedText] = {}

    def findings(self, text: str, dates: DatePolicy) -> list[Finding]:
        """Everything to replace in ``text``, non-overlapping."""
        own = [Finding(a, b, Kind(kind)) for a, b, kind in self.matcher.typed_spans(text)]
        found = find_phi(text)
        if dates == "keep":  # Retain Longitudinal Temporal Information with Full Dates
            found = [f for f in found if f.kind != Kind.DATE]
        return resolve(text, [*found, *own])

    def cleaner(
        self, *, dates: DatePolicy, jitter_days: int = 0, written: Written | None = None
    ) -> Cleaner:
        """``text -> cleaned text`` for one file."""
        mode: DateMode = "shift" if dates == "shift" else "remove"

        def clean(text: str) -> str:
            if not text or not text.strip():
                return text
            key = (text, str(dates), jitter_days)
            result = self._cache.get(key)
            if result is None:
                result = apply(text, self.findings(text, dates), mode, jitter_days)
                if len(self._cache) < _CACHE_MAX:
                    self._cache[key] = result
            if written is not None:
                written.text(result.text, result.written)
            return result.text

        return clean
