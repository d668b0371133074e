"""Keyed ids for requested items and studies, safe for logs, XCom, task names and the
dashboard.

Accession numbers and Study Instance UIDs identify a patient's examination, so nothing
outside the work root names them: a requested item and a study are known by a keyed hash
(HMAC-SHA256 under sendit's secret key, as batch keys are in ``core.discovery``). The same
value always gives the same key, which is what makes a rerun find its earlier rows.
"""

from __future__ import annotations

import hashlib
import hmac


def _mac(secret_key: bytes, kind: str, value: str) -> str:
    return hmac.new(secret_key, f"pacs\0{kind}\0{value}".encode(), hashlib.sha256).hexdigest()


def item_key(secret_key: bytes, kind: str, value: str) -> str:
    """The key of one requested item: ``kind`` is accession / study_uid / query."""
    return "i" + _mac(secret_key, kind, value.strip())[:15]


def study_key(secret_key: bytes, study_uid: str) -> str:
    """The key of a study retrieved from a PACS; its folder is named by it."""
    return "p" + _mac(secret_key, "study", study_uid.strip())[:15]


def received_study_key(secret_key: bytes, calling_ae: str, study_uid: str) -> str:
    """The key of a study sent to the receiver (per sender: two modalities sending the same
    study are two folders, each closed on its own quiet time)."""
    return "r" + _mac(secret_key, "received", f"{calling_ae.strip()}\0{study_uid.strip()}")[:15]


def instance_name(secret_key: bytes, sop_instance_uid: str) -> str:
    """The file name of one instance: one file per SOP Instance UID, so an instance sent
    twice (a retry, a resent study) replaces itself instead of doubling the study."""
    return _mac(secret_key, "instance", sop_instance_uid.strip())[:24] + ".dcm"
