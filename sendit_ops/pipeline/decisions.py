"""A reviewer's release / reject decisions, checked before a run touches any batch.

A decision names a batch by its id or its folder name. It is only meaningful for a batch
of this input folder that is HELD now, with the content the reviewer looked at: anything
else (a mistyped id, a batch that is DONE or in ERROR, a batch whose folder changed since it
was held, one batch both released and rejected) is refused with a message saying which, so
a typo never ends as a quiet run and a release never reprocesses a batch nobody reviewed.

Messages name batch ids (opaque keys) and positions, never a folder name: folder names are
typed by people and are often accession numbers (see ``core.discovery.batch_key``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from sendit_ops.core.discovery import FoundBatch
from sendit_ops.core.errors import ConfigError
from sendit_ops.core.lifecycle import State
from sendit_ops.core.records import BatchRecord

# the same words as sendit_ops.pipeline.steps.anonymize.RELEASE / REJECT (not imported from
# there: the DAG file imports this module at parse time, the pipeline only in its tasks)
RELEASE, REJECT = "release", "reject"
DECISIONS = (RELEASE, REJECT)

# a batch id: "b" and 15 lowercase hex digits (core.discovery.batch_key)
BATCH_ID = re.compile(r"b[0-9a-f]{15}")
# what the trigger form and REST refuse before a run is created (Param JSON schema): a
# string that looks like a batch id of the wrong length ("b" + 12 to 20 lowercase hex
# digits, at least one a-f, not 15), the usual copy-paste slip. Anything else may be a
# folder name (e.g. "b1234567890123"), which only the run's discover can check.
MALFORMED_ID_SCHEMA_PATTERN = r"^(?!b(?=[0-9]*[a-f])(?:[0-9a-f]{12,14}|[0-9a-f]{16,20})$)"


class DecisionRefused(ConfigError):
    """A release / reject names something that is not a HELD batch of this input folder;
    nothing was processed."""


class BatchLookup(Protocol):
    """What the check needs of the ledger."""

    def get(self, key: str) -> BatchRecord | None: ...


def _label(name: str) -> str:
    """How a message names what the user gave: an id as itself, a folder name not at all."""
    return name if BATCH_ID.fullmatch(name) else "a folder name"


def named_decisions(params: Mapping[str, Any] | None) -> dict[str, str]:
    """The decisions of a run's params (``release`` / ``reject`` lists), name -> decision;
    the same name in both lists is refused (which one the reviewer meant is unknown)."""
    params = params or {}
    decisions: dict[str, str] = {}
    for decision in DECISIONS:
        for raw in params.get(decision) or []:
            name = str(raw).strip()
            if not name:
                continue
            if decisions.get(name, decision) != decision:
                raise DecisionRefused(
                    f"refused: {_label(name)} is named in both 'release' and 'reject'; name "
                    "each held batch in one of them. Nothing was processed."
                )
            decisions[name] = decision
    return decisions


def resolve_decisions(
    ledger: BatchLookup,
    found: Iterable[FoundBatch],
    decisions: Mapping[str, str],
    input_name: str,
) -> dict[str, str]:
    """The decisions by batch key, each checked: the name is a finished batch folder of this
    input (by id or folder name), the batch is HELD in the ledger, with the content it was
    held with, and no batch is both released and rejected. Raises DecisionRefused naming
    every problem (one line each); nothing is written."""
    by_name: dict[str, FoundBatch] = {}
    for batch in found:
        by_name[batch.key] = batch
        by_name.setdefault(batch.folder_name, batch)
    problems: list[str] = []
    resolved: dict[str, str] = {}
    for name, decision in decisions.items():
        named = by_name.get(name)
        if named is None:
            if BATCH_ID.fullmatch(name):
                problems.append(
                    f"{decision} {name}: no batch of input folder '{input_name}' has this id"
                )
            elif re.fullmatch(r"b[0-9a-f]+", name):
                problems.append(
                    f"{decision} {name}: not a batch id (an id is 'b' and 15 hex digits) "
                    f"nor a batch folder of input folder '{input_name}'"
                )
            else:
                problems.append(
                    f"{decision}: a folder name that is not a finished batch folder of input "
                    f"folder '{input_name}' (nor a batch id)"
                )
            continue
        batch = named
        if resolved.get(batch.key, decision) != decision:
            problems.append(f"batch {batch.key} is named in both release and reject")
            continue
        resolved[batch.key] = decision
        record = ledger.get(batch.key)
        if record is None:
            problems.append(
                f"{decision} {batch.key}: the batch has not been processed yet, so it is not "
                "HELD; run it first"
            )
        elif record.state != State.HELD:
            problems.append(
                f"{decision} {batch.key}: the batch is {record.state}, not HELD; only a HELD "
                "batch can be released or rejected (to process it again, use reprocess)"
            )
        elif record.fingerprint != batch.fingerprint:
            problems.append(
                f"{decision} {batch.key}: the batch folder changed since it was HELD; run it "
                "again (without a decision) and review the new result"
            )
    if problems:
        raise DecisionRefused(
            "refused: " + "; ".join(problems) + ". Nothing was processed (the ids of held "
            "batches are on the batches page and in the run summary)."
        )
    return resolved
