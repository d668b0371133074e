"""Retrieve one study into its ``.tmp`` folder by the connection's method, check it is
complete, and hand it on by renaming.

Completeness: the PACS's own count (C-FIND NumberOfStudyRelatedInstances, or the QIDO
answer) against the instances that arrived (one file per SOP Instance UID, so a resent
instance is not counted twice). A short or interrupted study is fetched again, with
backoff, within the study's deadline; still short, it is INCOMPLETE with both counts and
stays ``.tmp`` (never handed on) unless ``allow_incomplete``. A PACS that does not report a
count cannot be checked: the study is handed on when the retrieval ended without error, and
the reason says the count was not verifiable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset

from sendit_ops.core.errors import ConfigError, SenditError, TransientError
from sendit_ops.pacs import dicomweb, dimse
from sendit_ops.pacs.keys import instance_name
from sendit_ops.pacs.model import (
    FoundStudy,
    PacsConnection,
    RetrievalResult,
    RetrievePolicy,
    StudyState,
)
from sendit_ops.pacs.study_folder import StudyFolder

log = logging.getLogger("sendit")

Fetch = Callable[[PacsConnection, str, dimse.InstanceSink], dimse.TransferCounts]


def fetcher(conn: PacsConnection, lock_dir: Path, study: FoundStudy | None = None) -> Fetch:
    """The fetch function of the connection's method."""
    if conn.method == "c-get":
        classes = study.sop_classes if study is not None else ()
        return lambda c, uid, sink: dimse.c_get(c, uid, sink, classes)
    if conn.method == "c-move":
        return lambda c, uid, sink: dimse.c_move(c, uid, sink, lock_dir)
    return dicomweb.wado_study


def _sink(folder: StudyFolder, study: FoundStudy, secret_key: bytes) -> dimse.InstanceSink:
    def sink(ds: Dataset, data: bytes) -> int:
        if str(ds.get("StudyInstanceUID", "")) != study.study_uid:
            dimse.refuse()
        return folder.write(instance_name(secret_key, str(ds.SOPInstanceUID)), data)

    return sink


def retrieve_study(
    conn: PacsConnection,
    study: FoundStudy,
    incoming: Path,
    secret_key: bytes,
    policy: RetrievePolicy,
    lock_dir: Path,
    sleep: Callable[[float], None] = time.sleep,
) -> RetrievalResult:
    """Fetch, check, hand on. Never raises for a study's own failure (it is the result's
    state); raises ``ConfigError`` for setup mistakes, which retrying cannot fix."""
    folder = StudyFolder(incoming, study.key)
    if folder.finished:  # handed on before (by another request, or short with allow_incomplete)
        count = folder.count()
        short = study.expected is not None and count < study.expected
        return RetrievalResult(
            study.key,
            StudyState.INCOMPLETE if short else StudyState.RETRIEVED,
            study.expected,
            count,
            folder.size(),
            folder=folder.name,
            reason=(
                f"handed on before with {count} of {study.expected} instances"
                if short
                else "already in the input folder"
            ),
        )
    folder.open()
    fetch = fetcher(conn, lock_dir, study)
    started = time.monotonic()
    attempts, wait, reason, complete = 0, policy.backoff_seconds, "", False
    transferred = 0
    while True:
        attempts += 1
        error = ""
        try:
            counter = fetch(conn, study.study_uid, _sink(folder, study, secret_key))
            transferred += counter.bytes
            if counter.errors:
                error = f"{counter.errors} instance(s) could not be written ({counter.error})"
        except ConfigError:
            raise
        except (TransientError, dimse.PacsError) as exc:
            error = str(exc)
        except OSError as exc:  # our disk, not the PACS
            error = f"writing the study failed ({exc.strerror or type(exc).__name__})"
        received = folder.count()
        if study.expected is not None:
            complete = received >= study.expected and received > 0
        else:
            complete = not error and received > 0
        if complete:
            break
        reason = error or f"received {received} of {study.expected} instances"
        log.warning("study %s: attempt %d: %s", study.key, attempts, reason)
        elapsed = time.monotonic() - started
        if attempts >= policy.attempts or elapsed + wait > policy.deadline_seconds:
            break
        sleep(wait)
        wait *= 2
    seconds = time.monotonic() - started
    size = folder.size()

    def result(state: StudyState, reason: str) -> RetrievalResult:
        return RetrievalResult(
            key=study.key,
            state=state,
            expected=study.expected,
            received=received,
            bytes=size,
            seconds=round(seconds, 3),
            attempts=attempts,
            reason=reason,
            folder=folder.name,
        )

    if complete:
        note = "" if study.expected is not None else "the PACS reported no instance count"
        try:
            folder.finish()
        except SenditError as exc:
            return result(StudyState.FAILED, str(exc))
        return result(StudyState.RETRIEVED, note)
    if received and study.expected is not None and not error:
        why = f"received {received} of {study.expected} instances after {attempts} attempt(s)"
        if policy.allow_incomplete:
            folder.finish()
            why += "; handed on (allow_incomplete)"
        return result(StudyState.INCOMPLETE, why)
    return result(StudyState.FAILED, f"{reason} (after {attempts} attempt(s), {seconds:.0f} s)")
