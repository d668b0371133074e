"""Find finished batch folders in an input folder and choose the ones a run should process.

A batch is one sub-folder of an input folder (normally one study). A folder whose name has an
extension starting with ``tmp`` (``L123.tmp``, ``x.tmp2343``) is still being written by the
C-MOVE script and is never touched; it is picked up by a later run once renamed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sendit_ops.errors import ConfigError

_IN_PROGRESS = re.compile(r"\.tmp[^.]*$", re.IGNORECASE)


def is_in_progress(folder_name: str) -> bool:
    """True when a folder is still being written (extension starting with ``tmp``)."""
    return bool(_IN_PROGRESS.search(folder_name))


def batch_key(secret_key: bytes, input_name: str, folder_name: str) -> str:
    """An opaque, stable batch id safe for logs and XCom.

    Folder names are typed by people and are often accession numbers, so they never appear
    in logs: the key is a keyed hash of the input folder name and the batch folder name.
    """
    digest = hmac.new(secret_key, f"{input_name}/{folder_name}".encode(), hashlib.sha256)
    return "b" + digest.hexdigest()[:15]


@dataclass(frozen=True)
class FoundBatch:
    """A finished batch folder as seen on disk."""

    key: str
    folder_name: str
    path: str
    finished_at: float  # newest mtime of the folder and its files (epoch seconds)
    fingerprint: str  # content fingerprint: relative paths, sizes and mtimes
    n_files: int


def list_files(folder: Path) -> list[Path]:
    """All regular files below a batch folder, sorted, hidden files excluded."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files.extend(Path(root) / n for n in names if not n.startswith("."))
    return sorted(files)


def _file_stats(folder: Path) -> list[tuple[tuple[str, ...], os.stat_result]]:
    """(relative path parts, stat) of the files ``list_files`` gives, in its order: one
    ``scandir`` per folder instead of a ``Path`` and a ``stat`` call chain per file (3x faster
    on 100,000 files; discovery looks at every file of every batch folder each run)."""
    out = []
    pending: list[tuple[tuple[str, ...], str]] = [((), str(folder))]
    while pending:
        parts, path = pending.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():  # as os.walk: symlinked folders are not followed
                    if not entry.is_symlink():
                        pending.append(((*parts, entry.name), entry.path))
                    continue
                out.append(((*parts, entry.name), entry.stat()))
    out.sort(key=lambda item: item[0])
    return out


def scan_batch(secret_key: bytes, input_name: str, folder: Path) -> FoundBatch:
    """Describe one batch folder: its key, completion time and content fingerprint."""
    files = _file_stats(folder)
    digest = hashlib.sha256()
    newest = folder.stat().st_mtime
    for parts, st in files:
        newest = max(newest, st.st_mtime)
        digest.update(f"{'/'.join(parts)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return FoundBatch(
        key=batch_key(secret_key, input_name, folder.name),
        folder_name=folder.name,
        path=str(folder),
        finished_at=newest,
        fingerprint=digest.hexdigest(),
        n_files=len(files),
    )


def find_batches(input_dir: str | Path, secret_key: bytes, input_name: str) -> list[FoundBatch]:
    """All finished batch folders of an input folder (in-progress and hidden ones skipped)."""
    root = Path(input_dir)
    if not root.is_dir():
        raise ConfigError(f"input folder {root} does not exist or is not a folder")
    found = []
    for child in sorted(root.iterdir()):
        if child.name.startswith(".") or not child.is_dir() or is_in_progress(child.name):
            continue
        found.append(scan_batch(secret_key, input_name, child))
    return found


def select_batches(
    found: list[FoundBatch],
    *,
    requested: list[str] | None,
    interval: tuple[float, float] | None,
    delivered: dict[str, str],
    reprocess: bool,
) -> tuple[list[FoundBatch], list[str]]:
    """Choose the batches of one run.

    ``requested``: folder names or batch keys named in the trigger (else all). ``interval``:
    (start, end) epoch seconds of a scheduled/backfill run's data interval; batches finished
    inside it are chosen (None for manual runs: every batch). ``delivered`` maps batch key to
    the fingerprint it was delivered with; those are skipped unless ``reprocess``.
    Returns the chosen batches and PHI-free notes about what was skipped and why.
    """
    notes: list[str] = []
    chosen = found
    if requested:
        wanted = set(requested)
        chosen = [b for b in found if b.key in wanted or b.folder_name in wanted]
        missing = len(wanted) - len(chosen)
        if missing > 0:
            notes.append(f"{missing} requested batch(es) not found as finished folders")
    elif interval is not None:
        start, end = interval
        chosen = [b for b in found if start <= b.finished_at < end]
    fresh = []
    for batch in chosen:
        if not reprocess and delivered.get(batch.key) == batch.fingerprint:
            notes.append(f"{batch.key}: already delivered with the same content, skipped")
            continue
        fresh.append(batch)
    return fresh, notes


def chunk(items: list[str], size: int, parallel: int = 1) -> list[list[str]]:
    """Split batch keys into chunks of at most ``size`` (one mapped task instance each).

    A run smaller than ``parallel`` full chunks is spread evenly over ``parallel`` chunks,
    so every step runs in one wave of parallel task instances instead of one full chunk
    and one nearly empty (each wave costs a task start and a scheduler round trip).
    """
    if not items:
        return []
    count = max(-(-len(items) // size), min(parallel, len(items)))
    base, extra = divmod(len(items), count)
    chunks, start = [], 0
    for i in range(count):
        end = start + base + (1 if i < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks
