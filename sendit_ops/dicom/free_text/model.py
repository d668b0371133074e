"""What the free-text detector reports: a span of a text and the kind of information in it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """Kinds of identifying information; the value is the placeholder's word."""

    NAME = "name"
    DATE = "date"
    ID = "id"
    PHONE = "phone"
    ADDRESS = "address"
    EMAIL = "email"
    URL = "url"
    AGE = "age"

    @property
    def placeholder(self) -> str:
        """What replaces a finding of this kind: ``[name]``, ``[date]``..."""
        return f"[{self.value}]"


@dataclass(frozen=True, order=True)
class Finding:
    """``text[start:end]`` holds information of ``kind``. ``date``: for a complete date, its
    (year, month, day), so it can be shifted like the header's dates."""

    start: int
    end: int
    kind: Kind
    date: tuple[int, int, int] | None = None
