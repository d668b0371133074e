"""Which PACS sendit retrieves from: the Variable ``sendit_pacs_sources`` (a JSON list), one
retrieve DAG per entry (docs/pacs.md).

    [{"name": "radiology", "conn_id": "pacs_radiology", "input_folder": "incoming",
      "pool": "pacs_radiology", "associations": 2, "window": "19:00-07:00",
      "schedule": "0 19 * * *", "modality": "CT"}]

``input_folder`` names an entry of ``sendit_input_folders``: retrieved studies are written
there and that folder's DAG de-identifies and delivers them. The connection (host, AE
titles, method, or the DICOMweb URL) is an Airflow Connection of type ``dicom_pacs`` or
``dicomweb``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import datetime, time, timedelta
from typing import Any

from sendit_ops.core.errors import ConfigError
from sendit_ops.pacs.model import RetrievePolicy

SOURCES_VARIABLE = "sendit_pacs_sources"
_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_WINDOW_RE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class TimeWindow:
    """Hours when the PACS may be asked (e.g. 19:00-07:00, across midnight), in UTC."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> TimeWindow:
        m = _WINDOW_RE.match(text.strip())
        if not m:
            raise ConfigError(f"window {text!r}: write it as HH:MM-HH:MM, e.g. 19:00-07:00")
        h1, m1, h2, m2 = map(int, m.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ConfigError(f"window {text!r}: not a time of day")
        return cls(time(h1, m1), time(h2, m2))

    def contains(self, now: datetime) -> bool:
        t = now.time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def next_opening(self, now: datetime) -> datetime:
        """When the window opens next (``now`` if it is open)."""
        if self.contains(now):
            return now
        opening = now.replace(
            hour=self.start.hour, minute=self.start.minute, second=0, microsecond=0
        )
        return opening if opening > now else opening + timedelta(days=1)


@dataclass(frozen=True)
class PacsSource:
    """One configured PACS: its connection, where studies go, and how hard to push it."""

    name: str
    conn_id: str
    input_folder: str
    pool: str = "default_pool"
    associations: int = 2  # retrieve tasks (one association each) at once, per run
    chunk_size: int = 10  # studies per mapped retrieve task
    schedule: str | None = None  # cron: scheduled runs query the data interval
    modality: str = ""  # scheduled runs: only this modality
    window: str = ""  # e.g. 19:00-07:00 (UTC): work outside it waits
    attempts: int = 3
    backoff_seconds: float = 10.0
    deadline_minutes: float = 60.0
    allow_incomplete: bool = False
    trigger_folder_dag: bool = True  # start the folder's DAG when studies were retrieved

    @property
    def dag_id(self) -> str:
        return f"sendit_retrieve_{self.name}"

    @property
    def time_window(self) -> TimeWindow | None:
        return TimeWindow.parse(self.window) if self.window else None

    @property
    def policy(self) -> RetrievePolicy:
        return RetrievePolicy(
            attempts=self.attempts,
            backoff_seconds=self.backoff_seconds,
            deadline_seconds=self.deadline_minutes * 60,
            allow_incomplete=self.allow_incomplete,
        )


def parse_sources(raw: Any) -> list[PacsSource]:
    """Validate ``sendit_pacs_sources`` (a list of objects) with messages an admin can act on."""
    if raw in (None, "", []):
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{SOURCES_VARIABLE}: a JSON list of PACS entries")
    known = {f.name for f in fields(PacsSource)}
    out, names = [], set()
    for i, entry in enumerate(raw):
        where = f"{SOURCES_VARIABLE}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: an object with name, conn_id and input_folder")
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
        for required in ("name", "conn_id", "input_folder"):
            if not entry.get(required):
                raise ConfigError(f"{where}: '{required}' is required")
        if not _NAME_RE.match(str(entry["name"])):
            raise ConfigError(f"{where}: name is letters, digits and _ (it is in the DAG id)")
        if entry["name"] in names:
            raise ConfigError(f"{where}: a second entry named {entry['name']!r}")
        names.add(entry["name"])
        try:
            source = PacsSource(**entry)
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        for name, low in (("associations", 1), ("chunk_size", 1), ("attempts", 1)):
            if not isinstance(getattr(source, name), int) or getattr(source, name) < low:
                raise ConfigError(f"{where}: {name} is a whole number of at least {low}")
        source.time_window  # noqa: B018 (validates the window's text)
        out.append(source)
    return out
