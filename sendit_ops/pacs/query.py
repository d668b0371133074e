"""Resolve a request into studies: C-FIND (or QIDO-RS) per accession number, per Study
Instance UID, or over a date range (with a modality).

A PACS caps its C-FIND answers (Orthanc: ``LimitFindResults``; others a fixed number) and
some then return the first N without a word: a wide date range would silently miss
studies. A capped answer (status Cancel or Out of resources, or as many matches as the
connection's ``max_find_results``) is split: the date range is halved and each half asked
again, down to single days. A single day that still hits the cap is an error that says so.

The modality is not sent with a date query: Orthanc (and others) apply their cap before
filtering on ModalitiesInStudy, so a filtered answer can be cut without any sign (measured:
3 of 5 CT studies, status Success). The range is asked unfiltered, where a cut shows, and
the modality is matched here on each answer's ModalitiesInStudy (asked per study when a
PACS leaves that attribute out).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from pydicom.dataset import Dataset

from sendit_ops.core.errors import SenditError
from sendit_ops.pacs import dicomweb
from sendit_ops.pacs.dimse import FindAnswer, FindSession
from sendit_ops.pacs.keys import item_key, study_key
from sendit_ops.pacs.model import FoundStudy, PacsConnection, StudyRequest

log = logging.getLogger("sendit")


class CapError(SenditError):
    """One day holds more studies than the PACS returns for one query."""


@dataclass
class ItemAnswer:
    """What the PACS said about one requested item."""

    item_key: str
    kind: str
    studies: list[FoundStudy] = field(default_factory=list)
    error: str = ""


@dataclass
class FindStats:
    """How the request was resolved (counts only)."""

    queries: int = 0
    splits: int = 0


def _day(s: str) -> date:
    return date(int(s[:4]), int(s[4:6]), int(s[6:]))


def _dicom_date(d: date) -> str:
    return d.strftime("%Y%m%d")


def _int(ds: Dataset, name: str) -> int | None:
    value = ds.get(name)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _values(ds: Dataset, name: str) -> tuple[str, ...]:
    value = ds.get(name)
    if value in (None, ""):
        return ()
    return tuple(str(v) for v in ([value] if isinstance(value, str) else value) if v)


class Finder:
    """Study-level queries over C-FIND or QIDO-RS, with the same answer shape."""

    def __init__(self, conn: PacsConnection):
        self.conn = conn
        self.stats = FindStats()
        self._session: FindSession | None = None

    def __enter__(self) -> Finder:
        if self.conn.method != "dicomweb":
            self._session = FindSession(self.conn).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._session is not None:
            self._session.__exit__(*exc)

    def find(self, **match: str) -> FindAnswer:
        self.stats.queries += 1
        if self._session is not None:
            return self._session.find(**match)
        # QIDO has no "cut short" status, and some servers (Orthanc) cap answers silently,
        # paging included: an answer as long as the connection's known cap is treated as cut
        matches = dicomweb.qido_studies(self.conn, match)
        cap = self.conn.max_find_results
        return FindAnswer(matches, truncated=bool(cap) and len(matches) >= cap)

    def with_modality(self, matches: list[Dataset], modality: str) -> list[Dataset]:
        """The matches whose ModalitiesInStudy holds ``modality``."""
        out = []
        for ds in matches:
            if "ModalitiesInStudy" in ds and ds.ModalitiesInStudy not in (None, ""):
                value = ds.ModalitiesInStudy
                modalities = [value] if isinstance(value, str) else list(value)
                if modality in modalities:
                    out.append(ds)
            elif self.find(
                StudyInstanceUID=str(ds.StudyInstanceUID), ModalitiesInStudy=modality
            ).matches:
                out.append(ds)
        return out

    def date_range(self, first: date, last: date, extra: dict[str, str]) -> list[Dataset]:
        """Every study in [first, last], halving the range while answers are capped."""
        span = f"{_dicom_date(first)}-{_dicom_date(last)}"
        answer = self.find(StudyDate=span, **extra)
        if not answer.truncated:
            return answer.matches
        if first == last:
            raise CapError(
                f"PACS {self.conn.name}: one day holds more studies than it returns for one "
                f"query ({len(answer.matches)}); raise its result limit, or request these "
                "studies by accession number"
            )
        self.stats.splits += 1
        middle = first + timedelta(days=(last - first).days // 2)
        log.info("PACS %s: a date query hit the result cap; splitting it", self.conn.name)
        return self.date_range(first, middle, extra) + self.date_range(
            middle + timedelta(days=1), last, extra
        )


def find_request(
    conn: PacsConnection,
    request: StudyRequest,
    secret_key: bytes,
    finder_factory: Callable[[PacsConnection], Finder] = Finder,
) -> tuple[list[ItemAnswer], FindStats]:
    """Resolve every requested item into the studies the PACS holds."""
    answers: list[ItemAnswer] = []
    with finder_factory(conn) as finder:
        for kind, value in request.items():
            answer = ItemAnswer(item_key(secret_key, kind, value), kind)
            try:
                if kind == "accession":
                    matches = finder.find(AccessionNumber=value).matches
                elif kind == "study_uid":
                    matches = finder.find(StudyInstanceUID=value).matches
                else:
                    matches = finder.date_range(_day(request.date_from), _day(request.date_to), {})
                    if request.modality:
                        matches = finder.with_modality(matches, request.modality)
            except CapError as exc:
                answer.error = str(exc)
                answers.append(answer)
                continue
            seen: set[str] = set()
            for ds in matches:
                uid = str(ds.get("StudyInstanceUID", "") or "")
                if not uid or uid in seen:
                    continue
                if kind == "accession" and str(ds.get("AccessionNumber", "")) != value:
                    continue  # a PACS matching loosely (wildcards, case) is not our study
                seen.add(uid)
                answer.studies.append(
                    FoundStudy(
                        key=study_key(secret_key, uid),
                        item_key=answer.item_key,
                        study_uid=uid,
                        accession=str(ds.get("AccessionNumber", "") or ""),
                        expected=_int(ds, "NumberOfStudyRelatedInstances"),
                        study_date=str(ds.get("StudyDate", "") or ""),
                        sop_classes=_values(ds, "SOPClassesInStudy"),
                    )
                )
            answers.append(answer)
    return answers, finder.stats
