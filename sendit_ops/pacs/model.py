"""The records of query/retrieve: what a PACS connection is, what was asked, what was found,
and how each study ended. Typed, so every part (the DAG, the ledger, the dashboard) reads
the same fields."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from sendit_ops.core.errors import ConfigError

METHODS = ("c-get", "c-move", "dicomweb")
_AE_RE = re.compile(r"^[ -~]{1,16}$")  # PS3.5: 16 printable characters, no backslash
_DATE_RE = re.compile(r"^\d{8}$")
_MODALITY_RE = re.compile(r"^[A-Z0-9_]{1,16}$")


class StudyState(StrEnum):
    """How one requested study ended (docs/pacs.md, "What each state means")."""

    FOUND = "FOUND"  # the PACS has it; not retrieved yet
    NOT_FOUND = "NOT_FOUND"  # the PACS answered, without this study
    RETRIEVING = "RETRIEVING"  # a task is fetching it (or died doing so: retried)
    RETRIEVED = "RETRIEVED"  # every instance arrived; its folder is in the input folder
    INCOMPLETE = "INCOMPLETE"  # fewer instances than the PACS reported, after retries
    FAILED = "FAILED"  # could not be retrieved; the reason says why


FINISHED = (StudyState.RETRIEVED,)


def check_ae(value: str, name: str) -> str:
    value = (value or "").strip()
    if not _AE_RE.match(value) or "\\" in value:
        raise ConfigError(f"{name}: an AE title is 1-16 printable characters, got {value!r}")
    return value


@dataclass(frozen=True)
class PacsConnection:
    """Where a PACS is and how to retrieve from it (an Airflow Connection, or a dict in
    tests and the demo).

    ``method``: c-get (one association, the PACS sends back on it), c-move (the PACS
    connects to sendit's storage SCP at ``move_ae`` / ``move_port``; the PACS must know
    that AE), or dicomweb (QIDO-RS to find, WADO-RS to fetch).
    """

    name: str
    host: str = "127.0.0.1"
    port: int = 104
    called_ae: str = "ANY-SCP"
    calling_ae: str = "SENDIT"
    method: str = "c-get"
    move_ae: str = ""  # default: calling_ae
    move_port: int = 11113  # not 11112: the receiver service listens there by default
    dicomweb_url: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # the PACS's answer cap when known; C-FIND also detects it from the status, QIDO cannot
    max_find_results: int = 0
    timeout: float = 60.0  # network, ACSE and DIMSE timeouts (s)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(
                f"PACS {self.name!r}: method must be one of {', '.join(METHODS)}, "
                f"got {self.method!r}"
            )
        if self.method == "dicomweb":
            if not self.dicomweb_url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"PACS {self.name!r}: method dicomweb needs the DICOMweb base URL "
                    "(e.g. https://pacs.example.org/dicom-web)"
                )
        else:
            check_ae(self.called_ae, f"PACS {self.name!r} called AE")
            check_ae(self.calling_ae, f"PACS {self.name!r} calling AE")
            if not self.host:
                raise ConfigError(f"PACS {self.name!r}: no host")
            if not 0 < int(self.port) < 65536:
                raise ConfigError(f"PACS {self.name!r}: port {self.port} is not a TCP port")
        if self.method == "c-move":
            check_ae(self.destination_ae, f"PACS {self.name!r} move destination AE")

    @property
    def destination_ae(self) -> str:
        return self.move_ae or self.calling_ae

    @classmethod
    def from_dict(cls, name: str, data: dict[str, Any]) -> PacsConnection:
        known = set(cls.__dataclass_fields__) - {"name"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"PACS {name!r}: unknown field(s) {', '.join(unknown)}")
        values = dict(data)
        for k in ("port", "move_port", "max_find_results"):
            if k in values and values[k] not in (None, ""):
                values[k] = int(values[k])
        if "timeout" in values and values["timeout"] not in (None, ""):
            values["timeout"] = float(values["timeout"])
        if "tls" in values:
            values["tls"] = str(values["tls"]).lower() in {"1", "true", "yes"}
        values = {k: v for k, v in values.items() if v is not None}
        return cls(name=name, **values)


@dataclass(frozen=True)
class RetrievePolicy:
    """Retries, deadline and completeness rule of one study's retrieval."""

    attempts: int = 3  # per task try; Airflow's task retries come on top
    backoff_seconds: float = 5.0  # doubled after each failed attempt
    deadline_seconds: float = 3600.0  # total time for one study across attempts
    allow_incomplete: bool = False  # hand on a short study (off: it stays .tmp, INCOMPLETE)


@dataclass(frozen=True)
class StudyRequest:
    """What a run asks for: accession numbers, Study Instance UIDs, or a query (date range
    and modality). Its values are patient data: they stay in this object and the work root."""

    accessions: tuple[str, ...] = ()
    study_uids: tuple[str, ...] = ()
    date_from: str = ""  # YYYYMMDD
    date_to: str = ""
    modality: str = ""

    def __post_init__(self) -> None:
        if not (self.accessions or self.study_uids or self.date_from or self.date_to):
            raise ConfigError(
                "the request is empty: give accession numbers, Study Instance UIDs, or a "
                "date range (with an optional modality)"
            )
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value and not _DATE_RE.match(value):
                raise ConfigError(f"{name}: a date is YYYYMMDD")
            if value:
                try:
                    date(int(value[:4]), int(value[4:6]), int(value[6:]))
                except ValueError:
                    raise ConfigError(f"{name}: not a calendar date") from None
        if bool(self.date_from) != bool(self.date_to):
            raise ConfigError("a date query needs both date_from and date_to")
        if self.date_from and self.date_from > self.date_to:
            raise ConfigError("date_from is after date_to")
        if self.modality and not _MODALITY_RE.match(self.modality):
            raise ConfigError("modality: a DICOM modality code such as CT or MR")

    @property
    def is_query(self) -> bool:
        return bool(self.date_from)

    def items(self) -> list[tuple[str, str]]:
        """(kind, value) of every requested item; a query is one item."""
        out = [("accession", a) for a in self.accessions]
        out += [("study_uid", u) for u in self.study_uids]
        if self.is_query:
            out.append(("query", f"{self.date_from}-{self.date_to}/{self.modality}"))
        return out


def _split_values(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = re.split(r"[\s,;]+", raw)
    return tuple(dict.fromkeys(v.strip() for v in raw if v and str(v).strip()))


def parse_request(params: dict[str, Any], file_text: str | None = None) -> StudyRequest:
    """A request from trigger-form params (lists or comma/space/newline separated text) and
    an optional file (one accession number per line; ``uid:<StudyInstanceUID>`` lines for
    UIDs; a CSV's first column)."""
    accessions = list(_split_values(params.get("accession_numbers")))
    uids = list(_split_values(params.get("study_uids")))
    if file_text:
        for line in file_text.splitlines():
            value = line.split(",")[0].strip().strip('"')
            if not value or value.startswith("#") or value.lower() == "accessionnumber":
                continue
            if value.lower().startswith("uid:"):
                uids.append(value[4:].strip())
            else:
                accessions.append(value)
    return StudyRequest(
        accessions=tuple(dict.fromkeys(accessions)),
        study_uids=tuple(dict.fromkeys(uids)),
        date_from=str(params.get("date_from") or "").replace("-", ""),
        date_to=str(params.get("date_to") or "").replace("-", ""),
        modality=str(params.get("modality") or "").strip().upper(),
    )


@dataclass(frozen=True)
class FoundStudy:
    """One study the PACS reported. ``study_uid`` / ``accession`` are patient data: kept in
    the work root (``studies.StudyStore``), never in logs or XCom; ``key`` is what travels."""

    key: str
    item_key: str
    study_uid: str
    accession: str
    expected: int | None  # NumberOfStudyRelatedInstances (None: the PACS did not say)
    study_date: str = ""
    sop_classes: tuple[str, ...] = ()  # SOPClassesInStudy, when the PACS says (C-GET uses it)


@dataclass(frozen=True)
class RetrievalResult:
    """How one study's retrieval ended: the ledger row's values."""

    key: str
    state: StudyState
    expected: int | None
    received: int
    bytes: int = 0
    seconds: float = 0.0
    attempts: int = 0
    reason: str = ""
    folder: str = ""

    @property
    def megabytes(self) -> float:
        return self.bytes / 1e6
