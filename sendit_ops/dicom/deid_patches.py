"""Four fixes for deid 0.4.13 (to be proposed upstream), installed by ``install()``.

Every sendit module that calls deid calls ``install()`` right after its imports: the logger fix
is a PHI control, so it must be in place before deid runs, whichever module runs it first.
The speed fixes replace deid internals, so they are installed only on the deid version they
were written and tested against (``TESTED_DEID_VERSION``); on another version sendit logs that
and runs deid unpatched (slower, same output). The logger fix does not depend on internals
and is always installed.

PHI in logs: deid's own logger (``deid.logger.bot``) writes to stdout/stderr, and some of its
messages render a header element *with its value* (``"JITTER %s unsuccessful" % field``
prints e.g. the original study date). In a task that is the task log. sendit silences deid's
logger below ABORT (``silence_deid_logger``); sendit's own messages name tags, never values.

Memory: ``deid.dicom.fields._get_fields_inner`` is decorated with an unbounded
``functools.cache`` keyed by the dataset, so every dataset deid has parsed (pixel data
included) stays in memory for the life of the process: peak RSS grows with the size of the
study. ``release_caches()`` empties it; sendit calls it after each file.

Speed:
``deid.dicom.tags.get_tag(keyword)`` scans pydicom's whole DICOM dictionary (~5,000 entries)
on every call, and deid's parser calls it for every ADD/REPLACE/JITTER of every file: about
half of deid's time per file. ``fast_get_tag`` returns the same manifest from pydicom's
keyword index in O(1). ``deid.utils.get_timestamp`` parses every date it jitters with
dateutil's general parser (~50 us per value, most of a JITTER); ``fast_get_timestamp`` builds
a plain 8-digit DICOM date directly and leaves everything else to deid. The equivalence
test (tests/test_equivalence.py) checks that sendit's output stays identical to deid's own
``replace_identifiers``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

import deid.dicom.actions.jitter as deid_jitter
import deid.dicom.fields as deid_fields
import deid.dicom.parser as deid_parser
import deid.dicom.tags as deid_tags
from deid.logger import bot as deid_bot
from deid.logger.message import ABORT
from deid.version import __version__ as deid_version
from pydicom.datadict import DicomDictionary, keyword_dict
from pydicom.tag import BaseTag, Tag

from sendit_ops.dicom import io as dicom_io

TESTED_DEID_VERSION = "0.4.13"
log = logging.getLogger("sendit")

# deid's manifest of a keyword: tag (a BaseTag), VR, VM, keyword, name (strings)
Manifest = dict[str, BaseTag | str]

_original_get_tag = deid_tags.get_tag
_original_get_timestamp = deid_jitter.get_timestamp


@lru_cache(maxsize=4096)
def _manifest(field: str) -> tuple[tuple[str, BaseTag | str], ...] | None:
    number = keyword_dict.get(field)
    if number is None:
        # not a keyword: deid's scan also matches nothing else (it compares keywords only)
        return None
    vr, vm, name, _, keyword = DicomDictionary[number]
    return (("tag", Tag(number)), ("VR", vr), ("VM", vm), ("keyword", keyword), ("name", name))


def fast_get_tag(field: object) -> Manifest | None:
    """Same result as deid's get_tag, via pydicom's keyword index."""
    if not isinstance(field, str):
        return cast("Manifest | None", _original_get_tag(field))  # deid is untyped
    manifest = _manifest(field)
    return dict(manifest) if manifest else None


def fast_get_timestamp(
    item_date: Any, item_time: Any = None, jitter_days: Any = None, format: str | None = None
) -> str | None:
    """deid's get_timestamp; a valid ``YYYYMMDD`` date jittered to ``%Y%m%d`` (what deid's
    JITTER does to every DA value) is built without dateutil's general parser."""
    if (
        format == "%Y%m%d"
        and not item_time
        and isinstance(item_date, str)
        and len(item_date) == 8
        and item_date.isascii()
        and item_date.isdigit()
    ):
        try:
            stamp = datetime(int(item_date[:4]), int(item_date[4:6]), int(item_date[6:]))
        except ValueError:
            pass  # not a calendar date: deid decides what happens
        else:
            if jitter_days is not None:
                stamp += timedelta(days=int(float(jitter_days)))
            return stamp.strftime(format)
    # deid is untyped: its get_timestamp returns the formatted date or None
    return cast("str | None", _original_get_timestamp(item_date, item_time, jitter_days, format))


def release_caches() -> None:
    """Drop deid's per-dataset field cache (it holds whole datasets)."""
    deid_fields._get_fields_inner.cache_clear()


def silence_deid_logger() -> None:
    """Stop deid's logger from printing (its messages may carry header values)."""
    deid_bot.level = ABORT - 1


def install() -> None:
    """Silence deid's logger; on the tested deid version also make its parser use
    fast_get_tag and its JITTER fast_get_timestamp. Idempotent and cheap: called by every
    module that uses deid."""
    global _installed
    if _installed:
        return
    dicom_io.quiet_pydicom()
    silence_deid_logger()
    if deid_version == TESTED_DEID_VERSION:
        deid_parser.get_tag = fast_get_tag
        deid_jitter.get_timestamp = fast_get_timestamp
    else:
        log.warning(
            "deid %s is installed; sendit's speed fixes were written for deid %s and are "
            "not applied (output unchanged, de-identification slower)",
            deid_version,
            TESTED_DEID_VERSION,
        )
    _installed = True


_installed = False
