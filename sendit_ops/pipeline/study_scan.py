"""The filter step's read and decide parts: what a batch folder holds (``scan_study``), and
whether it is one deliverable study (``study_identity``).

Kept apart from the step (``Pipeline.filter``), which only writes what they found: the
record's metrics and state, the accepted-image list and the identifier list. ``study_identity``
is pure, so the rules "one study per folder, its ids present, nothing silently incomplete"
are tested without files.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sendit_ops.core.discovery import Listing
from sendit_ops.core.errors import BatchError
from sendit_ops.core.settings import Settings
from sendit_ops.dicom.filters import FilterRules, judge
from sendit_ops.dicom.identifiers import Needles, collect_needles, dicom_date_to_iso
from sendit_ops.dicom.image_check import RejectedImageError, read_checked_header
from sendit_ops.dicom.io import NotDicomError, text
from sendit_ops.pseudonyms.providers import StudyIdentity, sanitize_id


@dataclass(frozen=True)
class AcceptedImage:
    """An image that passed the filters, as the later steps need it (``images.json``,
    written and read by ``pipeline.work_files``)."""

    file: str
    series: str
    instance: str
    item_time: str | None  # the study's (else series', content's...) date and time, ISO
    birth: str | None  # the patient's birth date, ISO
    pixels: str | None  # why it must go through the pixel stage (None: it need not)


@dataclass
class SeriesTally:
    number: str
    modality: str
    ordinal: int
    images: int = 0
    removed: int = 0


@dataclass
class StudyScan:
    """What the headers of a batch folder say: accepted images, rejected and skipped files
    (PHI-free reasons, files numbered, never named), the values that must be one per study,
    and the identifiers the leak checks will look for."""

    total: int
    size: int = 0
    accepted: list[AcceptedImage] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # files that cannot be delivered
    warnings: list[str] = field(default_factory=list)
    series: dict[str, SeriesTally] = field(default_factory=dict)
    study_dates: set[str] = field(default_factory=set)
    studies: set[str] = field(default_factory=set)
    entities: set[str] = field(default_factory=set)
    items: set[str] = field(default_factory=set)
    missing: dict[str, int] = field(default_factory=dict)  # required keyword -> images
    needles: Needles = field(default_factory=Needles)

    def metrics(self) -> dict[str, Any]:
        """The QA metrics of the record (counts only)."""
        series = sorted(self.series.values(), key=lambda v: v.ordinal)
        return {
            "images_found": self.total,
            "images_accepted": len(self.accepted),
            "images_skipped": self.total - len(self.accepted),
            "bytes_in": self.size,
            "series": len(series),
            "series_detail": [asdict(v) for v in series],
            "series_removed": sum(1 for v in series if v.images == v.removed),
            "study_dates": len(self.study_dates - {""}),
            "images_rejected": len(self.rejected),
        }


def item_timestamp(ds: Any) -> str | None:
    """The study's date and time, else the series', content's or acquisition's (ISO)."""
    for date_kw, time_kw in (
        ("StudyDate", "StudyTime"),
        ("SeriesDate", "SeriesTime"),
        ("ContentDate", "ContentTime"),
        ("AcquisitionDate", "AcquisitionTime"),
    ):
        stamp = dicom_date_to_iso(text(ds, date_kw), text(ds, time_kw))
        if stamp:
            return stamp
    return None


def scan_study(
    listing: Listing, paths: Iterable[Path], folder_name: str, rules: FilterRules, s: Settings
) -> StudyScan:
    """Read every header of a batch folder once, judge it by the filters and tally what
    the study decision needs. Never raises for one file: a file that is not DICOM is
    skipped, one that is DICOM but cannot be delivered (truncated, corrupt) is rejected."""
    paths = list(paths)
    scan = StudyScan(total=len(paths), rejected=list(listing.problems))
    scan.warnings.extend(listing.notes)
    scan.warnings.extend(f"{problem}, not read" for problem in listing.problems)
    total = scan.total
    for i, (path, (_, st, _)) in enumerate(zip(paths, listing.files, strict=True), 1):
        scan.size += st.st_size
        try:
            ds = read_checked_header(path)
        except RejectedImageError as exc:
            scan.rejected.append(f"file {i} of {total}: {exc}")
            scan.warnings.append(f"file {i} of {total}: {exc}, rejected")
            continue
        except NotDicomError as exc:
            scan.warnings.append(f"file {i} of {total}: {exc}, skipped")
            continue
        series = scan.series.setdefault(
            text(ds, "SeriesInstanceUID"),
            SeriesTally(text(ds, "SeriesNumber"), text(ds, "Modality"), len(scan.series) + 1),
        )
        series.images += 1
        verdict = judge(ds, rules)
        if verdict.skip:
            series.removed += 1
            scan.warnings.append(f"file {i} of {total}: {verdict.skip}, skipped")
            continue
        entity, item = text(ds, s.entity_id), text(ds, s.item_id)
        for keyword, value in ((s.entity_id, entity), (s.item_id, item)):
            if not value:
                scan.missing[keyword] = scan.missing.get(keyword, 0) + 1
        scan.entities.add(entity)
        scan.items.add(item)
        scan.studies.add(text(ds, "StudyInstanceUID"))
        scan.study_dates.add(text(ds, "StudyDate"))
        scan.needles.update(collect_needles(ds, [folder_name]))
        scan.accepted.append(
            AcceptedImage(
                file=str(path),
                series=text(ds, "SeriesNumber") or str(series.ordinal),
                instance=text(ds, "InstanceNumber") or str(len(scan.accepted) + 1),
                item_time=item_timestamp(ds),
                birth=dicom_date_to_iso(text(ds, "PatientBirthDate")),
                pixels=verdict.pixels,
            )
        )
    return scan


def incomplete_warning(scan: StudyScan, s: Settings) -> str | None:
    """The rule for a study with files that cannot be delivered (docs/pipeline.md): the
    batch ends ERROR naming the count and the first problem, so a study is never delivered
    silently incomplete; with ``deliver_incomplete_studies`` on, the images that passed are
    delivered and the batch carries this warning instead. Raises BatchError, or returns the
    warning (None: nothing is missing)."""
    rejected = scan.rejected
    if not rejected:
        return None
    if scan.accepted and s.deliver_incomplete_studies:
        return (
            f"delivered without {len(rejected)} file(s) that cannot be delivered "
            "(deliver_incomplete_studies is on)"
        )
    more = f" (and {len(rejected) - 1} more, see the warnings)" if len(rejected) > 1 else ""
    raise BatchError(
        f"{len(rejected)} file(s) of the study cannot be delivered, the study would be "
        f"incomplete: {rejected[0]}{more}; replace them (fetch the study again), "
        "then reprocess the batch"
    )


def study_identity(scan: StudyScan, s: Settings) -> StudyIdentity:
    """The identity the pseudonyms are asked for, once the accepted images are known to be
    one study of one patient with the required ids. Raises BatchError naming the rule."""
    if scan.missing:
        names = ", ".join(f"{k} in {n} image(s)" for k, n in sorted(scan.missing.items()))
        raise BatchError(f"required identifier missing: {names}")
    if len(scan.study_dates) > 1:
        raise BatchError(f"images have {len(scan.study_dates)} different study dates")
    for values, label in (
        (scan.studies, "studies (StudyInstanceUID)"),
        (scan.entities, f"patients ({s.entity_id})"),
        (scan.items, f"accession numbers ({s.item_id})"),
    ):
        if len(values) > 1:
            raise BatchError(
                f"one folder holds {len(values)} different {label}; "
                "split it into one folder per study"
            )
    first = scan.accepted[0]
    return StudyIdentity(
        entity_id=sanitize_id(next(iter(scan.entities))),
        item_id=sanitize_id(next(iter(scan.items))),
        entity_source=s.entity_id_source,
        item_source=s.item_id_source,
        entity_timestamp=first.birth,
        item_timestamp=first.item_time,
    )
