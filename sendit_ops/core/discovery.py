"""Find finished batch folders in an input folder and choose the ones a run should process.

A batch is one sub-folder of an input folder (normally one study). A folder whose name has an
extension starting with ``tmp`` (``L123.tmp``, ``x.tmp2343``) is still being written by the
C-MOVE script and is never touched; it is picked up by a later run once renamed.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from sendit_ops.core.errors import ConfigError

log = logging.getLogger("sendit")

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


@dataclass(frozen=True)
class Listing:
    """What a batch folder holds: its files, and the entries that could not be used.

    ``problems`` are PHI-free reasons ("entry 3: dangling symlink"), entries numbered in
    sorted order, never named: names are typed by people and may be accession numbers.
    Each problem is a file of the study that cannot be read, so the study would be
    incomplete. ``notes`` are entries deliberately not read (hidden names, symlinked
    folders inside the input folder), reported as counts."""

    files: list[tuple[tuple[str, ...], os.stat_result, str]]  # (relative parts, stat, path)
    problems: list[str] = field(default_factory=list)
    hidden: int = 0
    linked_folders: int = 0

    @property
    def paths(self) -> list[Path]:
        """The files, as paths, in ``list_files`` order."""
        return [Path(path) for _, _, path in self.files]

    @property
    def notes(self) -> list[str]:
        """PHI-free notes about what was deliberately not read."""
        out = []
        if self.hidden:
            out.append(f"{self.hidden} hidden entr(y/ies) (name starting with '.') not read")
        if self.linked_folders:
            out.append(
                f"{self.linked_folders} symlinked folder(s) inside the input folder not "
                "followed (their files are read where they are)"
            )
        return out


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _link_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if isinstance(exc, FileNotFoundError):
        return "dangling symlink (its target does not exist)"
    return f"unreadable symlink ({type(exc).__name__})"


def list_entries(
    folder: Path, input_root: Path | None = None, follow_external_symlinks: bool = False
) -> Listing:
    """Every regular file below a batch folder, and what could not be used, without ever
    raising for one entry: a dangling symlink, a symlink loop, an unreadable sub-folder, a
    pipe or a device is a problem of this batch, not of the whole input folder.

    Symlinks to files inside the input folder (``input_root``, default: the batch folder's
    parent) are read; those leading outside are problems unless
    ``follow_external_symlinks``. Symlinked folders inside the input folder are not
    followed (as ``os.walk``); outside it they are followed only with the setting (each
    real folder once, so a loop cannot recurse). One ``scandir`` per folder (3x faster than
    a ``stat`` chain per file on 100,000 files; discovery looks at every file each run)."""
    root = os.path.realpath(input_root if input_root is not None else folder.parent)
    files: list[tuple[tuple[str, ...], os.stat_result, str]] = []
    bad: list[tuple[tuple[str, ...], str]] = []
    hidden = linked = 0
    seen_dirs: set[tuple[int, int]] = set()
    pending: list[tuple[tuple[str, ...], str]] = [((), str(folder))]
    while pending:
        parts, path = pending.pop()
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError as exc:
            if parts:  # the batch folder itself: the caller decides (gone, unreadable)
                bad.append((parts, f"unreadable folder ({type(exc).__name__})"))
                continue
            raise
        for entry in entries:
            rel = (*parts, entry.name)
            if entry.name.startswith("."):
                hidden += 1
                continue
            try:
                if entry.is_symlink():
                    try:
                        st = entry.stat()  # follows the link
                    except OSError as exc:
                        bad.append((rel, _link_problem(exc)))
                        continue
                    inside = _within(os.path.realpath(entry.path), root)
                    if stat.S_ISDIR(st.st_mode):
                        if inside:
                            linked += 1
                        elif not follow_external_symlinks:
                            bad.append(
                                (
                                    rel,
                                    "symlinked folder leading outside the input folder, "
                                    "not followed",
                                )
                            )
                        elif (st.st_dev, st.st_ino) not in seen_dirs:
                            seen_dirs.add((st.st_dev, st.st_ino))
                            pending.append((rel, entry.path))
                        continue
                    if not inside and not follow_external_symlinks:
                        bad.append((rel, "symlink leading outside the input folder, not followed"))
                        continue
                elif entry.is_dir(follow_symlinks=False):
                    pending.append((rel, entry.path))
                    continue
                else:
                    st = entry.stat(follow_symlinks=False)
            except OSError as exc:  # vanished or unreadable between listing and stat
                bad.append((rel, f"unreadable entry ({type(exc).__name__})"))
                continue
            if not stat.S_ISREG(st.st_mode):
                bad.append((rel, "not a regular file (a pipe, socket or device)"))
                continue
            files.append((rel, st, entry.path))
    files.sort(key=lambda item: item[0])
    bad.sort()
    order = sorted([p for p, _, _ in files] + [p for p, _ in bad])
    number = {p: i for i, p in enumerate(order, 1)}
    problems = [f"entry {number[p]} of {len(order)}: {why}" for p, why in bad]
    return Listing(files, problems, hidden, linked)


def list_files(folder: Path, follow_external_symlinks: bool = False) -> list[Path]:
    """All regular files below a batch folder, sorted, hidden files excluded (the entries
    ``list_entries`` can use)."""
    return list_entries(folder, None, follow_external_symlinks).paths


def _batch_link(child: Path, root: str, follow_external_symlinks: bool) -> str | None:
    """Why a symlinked batch folder is not read (None: read it)."""
    try:
        st = child.stat()
    except OSError as exc:
        return _link_problem(exc)
    if not stat.S_ISDIR(st.st_mode):
        return "not a folder"
    if not follow_external_symlinks and not _within(os.path.realpath(child), root):
        return "the batch folder is a symlink leading outside the input folder, not followed"
    return None


def batch_problem(folder: Path, follow_external_symlinks: bool = False) -> str | None:
    """Why a batch folder as a whole cannot be read (None: it can). PHI-free."""
    if folder.is_symlink():
        why = _batch_link(folder, os.path.realpath(folder.parent), follow_external_symlinks)
        if why:
            return why if why.startswith("the batch") else f"the batch folder is a {why}"
    if not folder.is_dir():
        return "the batch folder is gone (moved or deleted before processing)"
    return None


def scan_batch(
    secret_key: bytes, input_name: str, folder: Path, follow_external_symlinks: bool = False
) -> FoundBatch:
    """Describe one batch folder: its key, completion time and content fingerprint.

    A folder that cannot be read at all, or a refused symlinked one, is still described
    (no files, fingerprint of nothing): its run then records why on the batch."""
    key = batch_key(secret_key, input_name, folder.name)
    digest = hashlib.sha256()
    try:
        refused = batch_problem(folder, follow_external_symlinks)
        listing = (
            Listing([])
            if refused
            else list_entries(folder, folder.parent, follow_external_symlinks)
        )
        newest = folder.lstat().st_mtime if refused else folder.stat().st_mtime
    except FileNotFoundError:
        raise  # deleted while we looked: the caller skips it
    except OSError as exc:
        log.warning("batch %s: its folder cannot be read (%s)", key, type(exc).__name__)
        listing, newest = Listing([]), 0.0
    for parts, st, _ in listing.files:
        newest = max(newest, st.st_mtime)
        digest.update(f"{'/'.join(parts)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    if listing.problems:
        log.warning(
            "batch %s: %d entr(y/ies) cannot be read (recorded on the batch when it runs)",
            key,
            len(listing.problems),
        )
    return FoundBatch(
        key=key,
        folder_name=folder.name,
        path=str(folder),
        finished_at=newest,
        fingerprint=digest.hexdigest(),
        n_files=len(listing.files),
    )


@dataclass(frozen=True)
class Discovery:
    """The finished batch folders of an input folder, and PHI-free notes (counts only)."""

    batches: list[FoundBatch]
    notes: list[str]


def discover_input(
    input_dir: str | Path,
    secret_key: bytes,
    input_name: str,
    follow_external_symlinks: bool = False,
) -> Discovery:
    """All finished batch folders of an input folder; never stops on one entry.

    In-progress folders (``*.tmp*``) are left for a later run. Hidden folders (``.x``,
    ``..dots..``) are not read and are counted in the notes. A symlinked batch folder that
    is dangling, a loop, or leads outside the input folder (unless
    ``follow_external_symlinks``) is still returned: its run records the reason on it."""
    root = Path(input_dir)
    if not root.is_dir():
        raise ConfigError(f"input folder {root} does not exist or is not a folder")
    real_root = os.path.realpath(root)
    found, hidden, gone = [], 0, 0
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            hidden += 1
            continue
        if is_in_progress(child.name):
            continue
        try:
            if child.is_symlink():
                why = _batch_link(child, real_root, follow_external_symlinks)
                if why == "not a folder":
                    continue
            elif not child.is_dir():
                continue
            found.append(scan_batch(secret_key, input_name, child, follow_external_symlinks))
        except FileNotFoundError:
            gone += 1  # deleted while we looked: nothing to record
    notes = []
    if hidden:
        notes.append(
            f"{hidden} hidden entr(y/ies) in the input folder (name starting with '.') not read"
        )
    if gone:
        notes.append(f"{gone} batch folder(s) vanished during discovery")
    for note in notes:
        log.warning("input %s: %s", input_name, note)
    return Discovery(found, notes)


def find_batches(
    input_dir: str | Path,
    secret_key: bytes,
    input_name: str,
    follow_external_symlinks: bool = False,
) -> list[FoundBatch]:
    """All finished batch folders of an input folder (see ``discover_input``; its notes
    are logged as warnings)."""
    return discover_input(input_dir, secret_key, input_name, follow_external_symlinks).batches


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
