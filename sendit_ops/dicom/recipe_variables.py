"""The per-batch values a header recipe sees: coded ids, jitter and the keyed UID remapper.

No deid import here, so a process can build them and run deid as released.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from pydicom.multival import MultiValue

from sendit_ops.dicom.identifiers import STANDARD_UID_ROOT
from sendit_ops.pseudonyms.providers import Pseudonym


def uid_remapper(secret_key: bytes) -> Callable[[str], str]:
    """A keyed, stable UID mapping: the same original UID always gets the same new one, so the
    study/series/instance relations and references between files survive. UIDs of the DICOM
    standard (transfer syntaxes, SOP classes) are kept."""
    cache: dict[str, str] = {}

    def remap(uid: str) -> str:
        uid = str(uid).strip()
        if not uid or uid.startswith(STANDARD_UID_ROOT):
            return uid
        if uid not in cache:
            mac = hmac.new(secret_key, b"uid\0" + uid.encode(), hashlib.sha256).digest()
            cache[uid] = "2.25." + str(int.from_bytes(mac[:15], "big"))
        return cache[uid]

    return remap


def recipe_variables(pseudonym: Pseudonym, remap: Callable[[str], str]) -> dict[str, Any]:
    """The ``var:``/``func:`` lookup deid sees for every file of a batch (``remap`` is the
    plain remapper, for the Annex E profile, which runs before the recipe)."""

    def remap_uid(item: Any = None, value: Any = None, field: Any = None, **_: Any) -> Any:
        current = field.element.value
        if isinstance(current, MultiValue | list | tuple):
            return [remap(v) for v in current]
        return remap(current)

    return {
        "entity_suid": pseudonym.entity_suid,
        "item_suid": pseudonym.item_suid,
        "jitter": pseudonym.jitter,
        "remap_uid": remap_uid,
        "remap": remap,
    }
