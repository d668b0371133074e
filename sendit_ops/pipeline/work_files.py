"""A batch's work folder: what one step hands the next, as typed records, read and written
here only.

The steps pass data through small JSON files in ``<work root>/<dag>/batches/<key>/`` (a
task of the split layout may run in another process, or after a retry, than the step before
it). Each file has one record type and one pair of functions here, so no step indexes JSON
by string key and the file formats are written down once:

================== ======================= ============ ================== ============
file               record                  written by   read by            identified
================== ======================= ============ ================== ============
images.json        list[AcceptedImage]     filter       anonymize          yes (paths)
identifiers.json   FilteredStudy           filter       the three after    yes
pseudonym.json     Pseudonym               pseudonymize anonymize, package no
header.json        HeaderSummary           anonymize    package            no (cleaned)
archive/row.json   metadata row            package      delivery           no
================== ======================= ============ ================== ============

The identified files are deleted when a batch is finished (``drop_identifiers``): the one
place that deletes them. The formats are those of earlier releases, so a batch left half
way by an older version resumes.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from sendit_ops.core.atomic_files import read_json, write_json
from sendit_ops.dicom.identifiers import Needles
from sendit_ops.pipeline.study_scan import AcceptedImage
from sendit_ops.pseudonyms.providers import Pseudonym, StudyIdentity

# the identified working data of a batch (docs/pipeline.md: deleted when it is finished)
IDENTIFIED_FILES = ("identifiers.json", "images.json")
# the working copies: the cleaned images and the archive (rebuilt by a rerun)
COPIES = ("anonymized", "archive")


@dataclass(frozen=True)
class FilteredStudy:
    """What the filter step found out about a study: the identity pseudonyms are asked for,
    and the original values (needles) the leak checks look for."""

    identity: StudyIdentity
    needles: Needles


@dataclass(frozen=True)
class HeaderSummary:
    """What the anonymize step learned from the cleaned headers, for the package step: the
    (shifted) study date of the archive name, the values equal in every delivered image
    (the row's ``DicomHeader``), the defined terms the leak check exempts in raw bytes, and
    the values the pipeline itself wrote (not leaks even when they equal an original)."""

    study_date: str
    shared: dict[str, str | list[str]]
    defined_terms: frozenset[str]
    written: frozenset[str]


@dataclass(frozen=True)
class BatchFiles:
    """The work folder of one batch and its files."""

    folder: Path

    @property
    def anonymized(self) -> Path:
        """The cleaned images (``<series>_<instance>.dcm``)."""
        return self.folder / "anonymized"

    @property
    def review(self) -> Path:
        """Thumbnails of held images, for a reviewer (no identifiers: masked output)."""
        return self.folder / "review"

    @property
    def archive(self) -> Path:
        """The verified archive and its row."""
        return self.folder / "archive"

    # ---- filter -> pseudonymize, anonymize, package -------------------------------------

    def write_filtered(self, images: list[AcceptedImage], study: FilteredStudy) -> None:
        """The accepted images and the study's identifiers. Derived from the source folder
        again if lost: not fsynced (the record is)."""
        write_json(self.folder / "images.json", [asdict(i) for i in images], durable=False)
        write_json(
            self.folder / "identifiers.json",
            {"identity": asdict(study.identity), "needles": study.needles.as_dict()},
            durable=False,
        )

    def read_images(self) -> list[AcceptedImage]:
        """The images that passed the filters, with the filter step's pixel verdict."""
        fields = AcceptedImage.__dataclass_fields__
        return [
            AcceptedImage(**{k: item.get(k) for k in fields})
            for item in read_json(self.folder / "images.json")
        ]

    def read_study(self) -> FilteredStudy:
        """The study's identity and needles."""
        data = read_json(self.folder / "identifiers.json")
        return FilteredStudy(StudyIdentity(**data["identity"]), Needles.from_dict(data["needles"]))

    # ---- pseudonymize -> anonymize, package ---------------------------------------------

    def write_pseudonym(self, pseudonym: Pseudonym) -> None:
        """The provider's answer (durable: asking DASHER again costs a call)."""
        write_json(self.folder / "pseudonym.json", asdict(pseudonym))

    def read_pseudonym(self) -> Pseudonym:
        """The batch's coded ids and date shift."""
        return Pseudonym(**read_json(self.folder / "pseudonym.json"))

    # ---- anonymize -> package -----------------------------------------------------------

    def write_header(self, header: HeaderSummary) -> None:
        """The cleaned headers' summary (rebuilt by anonymizing again: not fsynced)."""
        data = {
            "study_date": header.study_date,
            "shared": header.shared,
            "defined_terms": sorted(header.defined_terms),
            "written": sorted(header.written),
        }
        write_json(self.folder / "header.json", data, durable=False)

    def read_header(self) -> HeaderSummary:
        """The summary the anonymize step wrote (a file without the two lists: empty)."""
        data = read_json(self.folder / "header.json")
        return HeaderSummary(
            study_date=data["study_date"],
            shared=data["shared"],
            defined_terms=frozenset(data.get("defined_terms", ())),
            written=frozenset(data.get("written", ())),
        )

    # ---- package -> delivery ------------------------------------------------------------

    def write_row(self, row: dict[str, str]) -> None:
        """The batch's metadata row (without the storage links, set at delivery)."""
        write_json(self.archive / "row.json", row, durable=False)

    def read_row(self) -> dict[str, str]:
        """The metadata row the package step verified."""
        row: dict[str, str] = read_json(self.archive / "row.json")
        return row

    # ---- removal --------------------------------------------------------------------------

    def drop_identifiers(self) -> None:
        """Delete the identifier lists (names, ids, addresses, source paths): nothing needs
        them once the batch is finished, and a rerun derives them again from the source."""
        for name in IDENTIFIED_FILES:
            (self.folder / name).unlink(missing_ok=True)

    def drop_copies(self, *names: str) -> None:
        """Delete working copies (default: the cleaned images and the archive)."""
        for name in names or COPIES:
            shutil.rmtree(self.folder / name, ignore_errors=True)
