"""Step 4, package and verify: stage ANONYMIZED -> DONEPROCESSING (verified), or ERROR.

Read (pseudonym, needles, the header summary), decide what goes out (``plan_package``:
archive name, members, metadata row; ``name_leaks``: an original value in any name or the
row), write the archive while checking each member's raw header bytes, then keep the row
and record the archive only if nothing leaked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from sendit_ops import __version__
from sendit_ops.core.errors import LeakError
from sendit_ops.core.lifecycle import Stage, State
from sendit_ops.core.records import BatchRecord
from sendit_ops.dicom.anonymize import recipe_checksum
from sendit_ops.dicom.leak_scan import LeakScanner
from sendit_ops.packaging.archive import (
    archive_name,
    header_bytes,
    metadata_row,
    object_name,
    write_archive,
)
from sendit_ops.pipeline.context import StepContext
from sendit_ops.pipeline.work_files import BatchFiles, HeaderSummary
from sendit_ops.pseudonyms.providers import Pseudonym

log = logging.getLogger("sendit")


@dataclass(frozen=True)
class PackagePlan:
    """What the archive of a batch will be: its name, its members (name in the archive,
    cleaned file) and the batch's metadata row."""

    name: str
    members: list[tuple[str, Path]]
    row: dict[str, str]


def plan_package(
    pseudonym: Pseudonym, header: HeaderSummary, files: list[str], anonymized: Path
) -> PackagePlan:
    """Name the archive and its members after the pseudonyms and the (shifted) study date;
    build the row from the headers' shared values."""
    name = archive_name(pseudonym.entity_suid, header.study_date, pseudonym.item_suid)
    members = [(f"{pseudonym.item_suid}/{f}", anonymized / f) for f in files]
    row = metadata_row(header.shared, pseudonym.entity_suid, pseudonym.item_suid)
    return PackagePlan(name, members, row)


def name_leaks(scanner: LeakScanner, plan: PackagePlan, header: HeaderSummary) -> list[str]:
    """Where an original value shows in what is not a DICOM file: the archive name (the
    name carries the shifted study date, which may equal another original date), the
    member names, the row."""
    date_left = scanner.date_kept("StudyDate", header.study_date)
    leaks = ["archive name"] if scanner.hits(plan.name, dates="none") or date_left else []
    # by position, not by name: the name is what holds the original value
    leaks += [
        f"member name {n} of {len(plan.members)}"
        for n, (m, _) in enumerate(plan.members, 1)
        if scanner.hits(m)
    ]
    leaks += scanner.scan_mapping(plan.row, "metadata row")
    return leaks


def package_batch(ctx: StepContext, record: BatchRecord, files: BatchFiles) -> None:
    """Pack the batch, build its row, and verify names, row and archive headers."""
    s = ctx.settings
    pseudonym = files.read_pseudonym()
    header = files.read_header()
    scanner = ctx.scanner(files.read_study().needles)
    scanner.written_values.update(header.written)  # what the pipeline wrote
    plan = plan_package(pseudonym, header, record.outputs.files, files.anonymized)
    target = files.archive / plan.name
    leaks = name_leaks(scanner, plan, header)

    def inspect(member: str, data: bytes) -> None:
        # the raw header bytes going into the archive, whatever their encoding
        if scanner.hits_bytes(header_bytes(data), exempt=header.defined_terms):
            leaks.append(f"{member}: header bytes")

    sha = write_archive(plan.members, target, level=s.gzip_level, inspect=inspect)
    if leaks:
        target.unlink(missing_ok=True)
        raise LeakError("original identifier found in " + "; ".join(leaks[:5]))
    files.write_row(plan.row)
    record.outputs = replace(
        record.outputs,
        stage=Stage.PACKAGED,
        verified=True,
        archive=str(target),
        archive_name=plan.name,
        object_name=object_name(s.collection, pseudonym.entity_suid, plan.name),
        sha256=sha,
        bytes_out=target.stat().st_size,
        images=len(plan.members),
        recipe_sha256=recipe_checksum(s.recipe),
        deidentification=ctx.profile.describe(),
        version=__version__,
    )
    record.set_state(State.DONEPROCESSING)
    if not s.keep_work_files:
        files.drop_copies("anonymized")
    log.info("batch %s: packaged and verified %d images", record.key, len(plan.members))
