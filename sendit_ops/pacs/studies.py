"""What a query found, kept where patient data may live: the work root.

The find task and the retrieve tasks run in different processes (and workers), and XCom
must carry keys only. So each found study's Study Instance UID, accession number and
expected instance count go to ``<work_root>/pacs/<pacs>/studies/<key>.json`` (0600,
atomic), and tasks pass the key.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from sendit_ops.core.atomic_files import write_json
from sendit_ops.core.errors import SenditError
from sendit_ops.pacs.model import FoundStudy


class StudyStore:
    """Found studies by key, for one PACS."""

    def __init__(self, work_root: str | Path, pacs: str):
        self.root = Path(work_root) / "pacs" / pacs / "studies"

    def path(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError("a study key is alphanumeric")
        return self.root / f"{key}.json"

    def save(self, study: FoundStudy) -> None:
        write_json(self.path(study.key), asdict(study))

    def load(self, key: str) -> FoundStudy:
        try:
            data = json.loads(self.path(key).read_text())
        except FileNotFoundError:
            raise SenditError(
                f"study {key}: its query answer is not in the work root any more; run the "
                "request again"
            ) from None
        data["sop_classes"] = tuple(data.get("sop_classes") or ())
        return FoundStudy(**data)
