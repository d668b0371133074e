"""A study folder being written: ``<key>.tmp`` in the input folder while instances arrive,
renamed to ``<key>`` when complete.

Discovery skips ``.tmp*`` folders (``core.discovery.is_in_progress``), so the per-folder DAG
(streaming or scheduled) sees a study only once it is whole, exactly as it saw the folders
of the old C-MOVE script. Every instance is written atomically (``.part`` then rename), so a
crash leaves whole instances and at most a ``.part`` file, which reopening removes: a
retrieval or a receiver that restarts continues in the same folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from sendit_ops.core.errors import SenditError

TMP_SUFFIX = ".tmp"
PART_SUFFIX = ".part"


class FolderExists(SenditError):
    """The finished folder is there already: the study was handed on before."""


class StudyFolder:
    """One study's folder under an input folder, named by its key (never by a patient value)."""

    def __init__(self, incoming: Path, name: str):
        self.incoming = Path(incoming)
        self.name = name
        self.tmp = self.incoming / f"{name}{TMP_SUFFIX}"
        self.final = self.incoming / name

    def open(self) -> StudyFolder:
        """Create the ``.tmp`` folder, or reopen it after a crash (half-written files go)."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        for part in self.tmp.glob(f"*{PART_SUFFIX}"):
            part.unlink(missing_ok=True)
        return self

    @property
    def finished(self) -> bool:
        return self.final.is_dir()

    def write(self, file_name: str, data: bytes) -> int:
        """Write one instance atomically; return its size."""
        target = self.tmp / file_name
        part = self.tmp / f"{file_name}.{os.getpid()}{PART_SUFFIX}"
        with open(part, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, target)
        return len(data)

    def files(self) -> list[Path]:
        folder = self.final if self.finished else self.tmp
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix == ".dcm" and p.is_file())

    def count(self) -> int:
        return len(self.files())

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    def newest_write(self) -> float:
        """When the folder last changed (its own mtime or its newest file's)."""
        times = [self.tmp.stat().st_mtime] if self.tmp.is_dir() else []
        times += [p.stat().st_mtime for p in self.files()]
        return max(times, default=0.0)

    def finish(self) -> Path:
        """Hand the study on: rename ``.tmp`` to its final name (atomic on one filesystem)."""
        if self.final.exists():
            raise FolderExists(
                f"study folder {self.name} is already in the input folder: the study was "
                "handed on before; remove or rename that folder to hand it on again"
            )
        fd = os.open(self.tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the instance renames are on disk before the folder's
        finally:
            os.close(fd)
        os.rename(self.tmp, self.final)
        return self.final

    def discard(self) -> None:
        """Remove the unfinished folder (an operator's choice; never done silently)."""
        if self.tmp.is_dir():
            for p in self.tmp.iterdir():
                p.unlink()
            self.tmp.rmdir()
