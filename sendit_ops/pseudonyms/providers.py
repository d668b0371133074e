"""Pseudonyms in DASHER's shape: build the request, check the response, and a local provider.

Every provider takes a DASHER request body (``{"identifiers": [...]}``) for a study name and
returns a DASHER response body (``{"results": [...]}``), so the pipeline does not care who
answered. ``LocalKeyedProvider`` derives stable suids and a per-patient date jitter from a
secret key (HMAC-SHA256): the same patient gets the same pseudonym in every run, anywhere the
same key is used, and nothing can be reversed without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sendit_ops.core.errors import ProviderError

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]*$")
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def sanitize_id(value: str) -> str:
    """An id as DASHER accepts it: dashes removed (as sendit did), only ``[A-Za-z0-9_]`` kept."""
    return re.sub(r"[^A-Za-z0-9_]", "", value)


@dataclass(frozen=True)
class StudyIdentity:
    """The identifiers of one batch sent for pseudonyms: one patient (entity), one study (item)."""

    entity_id: str
    item_id: str
    entity_source: str = "Stanford MRN"
    item_source: str = "DCM Accession #"
    entity_timestamp: str | None = None
    item_timestamp: str | None = None


@dataclass(frozen=True)
class Pseudonym:
    """What a batch gets back: coded patient and study ids and the date shift in days."""

    entity_suid: str
    item_suid: str
    jitter: int
    jittered_timestamp: str | None = None


def build_request(identities: list[StudyIdentity]) -> dict[str, Any]:
    """The DASHER request body, items grouped under their entity (patient)."""
    entities: dict[tuple[str, str], dict[str, Any]] = {}
    for ident in identities:
        key = (ident.entity_source, ident.entity_id)
        if key not in entities:
            entity: dict[str, Any] = {"id": ident.entity_id, "id_source": ident.entity_source}
            if ident.entity_timestamp:
                entity["id_timestamp"] = ident.entity_timestamp
            entity["items"] = []
            entities[key] = entity
        item: dict[str, Any] = {"id": ident.item_id, "id_source": ident.item_source}
        if ident.item_timestamp:
            item["id_timestamp"] = ident.item_timestamp
        entities[key]["items"].append(item)
    for entity in entities.values():
        for value in [entity["id"], *(i["id"] for i in entity["items"])]:
            if not value or not ID_PATTERN.match(value):
                raise ProviderError("an identifier is empty or has characters DASHER refuses")
    return {"identifiers": list(entities.values())}


def _int_jitter(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return int(str(value).strip())


def parse_response(body: Any, identity: StudyIdentity) -> Pseudonym:
    """Find the pseudonyms of one batch in a DASHER response, or raise ProviderError.

    A response without ``results``, or without a suid and jitter for the entity and item sent,
    is refused: partial answers never reach the anonymizer.
    """
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise ProviderError("pseudonym service answer has no 'results' (malformed response)")
    for entity in body["results"]:
        if not isinstance(entity, dict) or entity.get("id") != identity.entity_id:
            continue
        for item in entity.get("items") or []:
            if not isinstance(item, dict) or item.get("id") != identity.item_id:
                continue
            suids = (entity.get("suid"), item.get("suid"))
            if not all(isinstance(s, str) and ID_PATTERN.match(s) and s for s in suids):
                raise ProviderError("pseudonym service answer lacks a valid suid")
            jitter = item.get("jitter", entity.get("jitter"))
            try:
                days = _int_jitter(jitter)
            except (TypeError, ValueError):
                raise ProviderError("pseudonym service answer lacks a valid jitter") from None
            return Pseudonym(str(suids[0]), str(suids[1]), days, item.get("jittered_timestamp"))
    raise ProviderError("pseudonym service answer has no result for this study")


class PseudonymProvider(Protocol):
    """Anything that answers a DASHER request body for a study name."""

    def lookup(self, study: str, request: dict[str, Any]) -> dict[str, Any]:
        """Return the DASHER response body for ``request``."""
        ...


def _suid(key: bytes, study: str, source: str, value: str) -> str:
    mac = hmac.new(key, f"{study}\0{source}\0{value}".encode(), hashlib.sha256).digest()
    return base64.b32encode(mac[:10]).decode().lower()  # 16 chars, [a-z2-7]


def keyed_jitter(key: bytes, study: str, source: str, entity_id: str) -> int:
    """A stable per-patient date shift: -37..-7 or +7..+37 days, never small (see verify)."""
    mac = hmac.new(key, f"jitter\0{study}\0{source}\0{entity_id}".encode(), hashlib.sha256)
    n = int.from_bytes(mac.digest()[:4], "big")
    days = 7 + n % 31
    return days if (n >> 31) & 1 else -days


def shift_timestamp(timestamp: str | None, days: int) -> str | None:
    """Shift a DASHER timestamp by ``days`` (None stays None)."""
    if not timestamp:
        return None
    moved = datetime.strptime(timestamp, TIMESTAMP_FORMAT) + timedelta(days=days)
    return moved.strftime(TIMESTAMP_FORMAT)


class LocalKeyedProvider:
    """Pseudonyms from a secret key: DASHER's answers, computed locally."""

    def __init__(self, secret_key: bytes):
        if len(secret_key) < 16:
            raise ProviderError("the sendit secret key is too short (need 16+ bytes)")
        self._key = secret_key

    def lookup(self, study: str, request: dict[str, Any]) -> dict[str, Any]:
        """Answer a DASHER request body the way DASHER would."""
        results = []
        for entity in request.get("identifiers", []):
            jitter = keyed_jitter(self._key, study, entity["id_source"], entity["id"])
            items = [
                {
                    "id": item["id"],
                    "id_source": item["id_source"],
                    "suid": _suid(self._key, study, item["id_source"], item["id"]),
                    "jitter": jitter,
                    "jittered_timestamp": shift_timestamp(item.get("id_timestamp"), jitter),
                }
                for item in entity.get("items", [])
            ]
            results.append(
                {
                    "id": entity["id"],
                    "id_source": entity["id_source"],
                    "suid": _suid(self._key, study, entity["id_source"], entity["id"]),
                    "jitter": jitter,
                    "jittered_timestamp": shift_timestamp(entity.get("id_timestamp"), jitter),
                    "items": items,
                }
            )
        return {"results": results}
