"""Step 1, filter: QUEUE -> PROCESSING (stage FILTERED), EMPTY or ERROR.

Read (list the folder, ``scan_study``), decide (``study_identity``: one study of one
patient with the required ids, else BatchError), write the accepted images and the study's
identifiers (``FilteredStudy``) for the later steps.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sendit_ops.core.discovery import batch_problem, list_entries
from sendit_ops.core.errors import BatchError
from sendit_ops.core.lifecycle import Stage, State
from sendit_ops.core.records import BatchRecord
from sendit_ops.pipeline.context import StepContext
from sendit_ops.pipeline.study_scan import incomplete_warning, scan_study, study_identity
from sendit_ops.pipeline.work_files import BatchFiles, FilteredStudy

log = logging.getLogger("sendit")


def filter_batch(ctx: StepContext, record: BatchRecord, files: BatchFiles) -> None:
    """Import and filter each image of the batch folder; collect its identifiers."""
    s = ctx.settings
    source = Path(record.source_path)
    refused = batch_problem(source, s.follow_external_symlinks)
    if refused:
        raise BatchError(refused)
    record.set_state(State.PROCESSING)
    try:
        listing = list_entries(source, source.parent, s.follow_external_symlinks)
    except FileNotFoundError:
        raise BatchError("the batch folder is gone (moved or deleted during the run)") from None
    except OSError as exc:
        raise BatchError(f"the batch folder cannot be read ({type(exc).__name__})") from None
    scan = scan_study(listing, listing.paths, source.name, ctx.filter_rules, s)
    record.warnings.extend(scan.warnings)
    record.metrics.update(scan.metrics())
    warning = incomplete_warning(scan, s)
    if warning:
        record.warnings.append(warning)
    if not scan.accepted:
        why = "no image passed the filters" if scan.total else "the batch folder has no files"
        record.set_state(State.EMPTY, why)
        return
    identity = study_identity(scan, s)
    files.write_filtered(scan.accepted, FilteredStudy(identity, scan.needles))
    record.outputs.stage = Stage.FILTERED
    log.info(
        "batch %s: %d of %d images accepted, %d series",
        record.key,
        len(scan.accepted),
        scan.total,
        len(scan.series),
    )
