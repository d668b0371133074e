"""Deterministic per-batch archives and the BigQuery metadata row (sendit's schema).

Same anonymized files -> byte-identical ``.tar.gz``: members sorted, fixed mtime/owner/mode,
gzip header without name or time. The row follows sendit's ``<collection>.dicom`` schema, all
STRING; ``DicomHeader`` is the JSON of the cleaned header values shared by every image.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO, cast

import pydicom
from isal import igzip
from pydicom.dataset import Dataset

from sendit_ops.dicom import io as dicom_io  # noqa: F401 - pydicom's value warnings off (they print values)

BQ_SCHEMA = (
    "storage_download", "storage_metadataLink", "CodedAccessionNumberID", "CodedPatientID",
    "ContentType", "PatientSex", "PatientAge", "Modality", "StudyDescription", "DicomHeader",
)  # fmt: skip
CONTENT_TYPE = "application/gzip"
_COPY_BUFFER = 1 << 20
_SKIP_VRS = {"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"}


def archive_name(entity_suid: str, jittered_study_date: str, item_suid: str) -> str:
    """sendit's name: ``<coded patient>_<jittered study date YYYYMMDD>_<coded accession>``."""
    return f"{entity_suid}_{jittered_study_date or 'nodate'}_{item_suid}.tar.gz"


def object_name(collection: str, entity_suid: str, archive: str) -> str:
    """sendit's storage layout: ``Collection/<c>/Entity/<coded patient>/<archive>``."""
    return f"Collection/{collection}/Entity/{entity_suid}/{archive}"


def _gzip_writer(raw: BinaryIO, level: int) -> gzip.GzipFile | igzip.IGzipFile:
    """A gzip stream without name or time in its header.

    Levels 1-9 use ISA-L's deflate (python-isal; levels 1/2/3, the output is ordinary gzip):
    on CT pixel data it packs ~15x faster than zlib level 1 with a slightly smaller result
    (docs/performance.md). Level 0 stores without compression (zlib).
    """
    if level <= 0:
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=0, mtime=0)
    isal_level = 1 if level == 1 else 2 if level <= 5 else 3
    return igzip.IGzipFile(filename="", mode="wb", fileobj=raw, compresslevel=isal_level, mtime=0)


def write_archive(
    members: Iterable[tuple[str, Path]],
    target: Path,
    level: int = 1,
    inspect: Callable[[str, bytes], None] | None = None,
) -> str:
    """Write a deterministic tar.gz of (name in archive, file) pairs; return its sha256.

    ``inspect(name, data)`` sees the exact bytes of each member before they are archived
    (the leak check of what leaves), so nothing has to be read back and decompressed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    with (
        open(tmp, "wb") as file,
        _HashingWriter(file) as raw,
        _gzip_writer(cast(BinaryIO, raw), level) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        # a member in one piece, not 16 KiB pieces (a TarFile attribute typeshed lacks)
        tar.copybufsize = _COPY_BUFFER  # type: ignore[attr-defined]
        for name, path in sorted(members):
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            data = path.read_bytes()
            if inspect is not None:
                inspect(name, data)
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(target)
    return raw.digest.hexdigest()


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes (sha256) what it passes on, so the archive's checksum
    needs no second read."""

    def __init__(self, out: BinaryIO) -> None:
        super().__init__()
        self.out = out
        self.digest = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.digest.update(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian


def header_bytes(data: bytes) -> bytes:
    """The bytes of a DICOM file before its pixel data (all of it if there is none)."""
    end = data.rfind(PIXEL_DATA_TAG)
    return data if end < 0 else data[:end]


def _plain(value: object) -> str | list[str]:
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return [str(v) for v in value]
    return str(value)


def shared_header(datasets: Iterable[Dataset]) -> dict[str, str | list[str]]:
    """Cleaned header values equal in every image (keyword -> value), sequences and binary
    values excluded: what sendit put in ``DicomHeader``."""
    shared: dict[str, str | list[str]] | None = None
    for ds in datasets:
        values = {
            e.keyword: _plain(e.value)
            for e in ds
            if e.keyword and e.VR not in _SKIP_VRS and e.value not in (None, "")
        }
        if shared is None:
            shared = values
        else:
            shared = {k: v for k, v in shared.items() if values.get(k) == v}
    return dict(sorted((shared or {}).items()))


def metadata_row(
    header: dict[str, str | list[str]], entity_suid: str, item_suid: str
) -> dict[str, str]:
    """The BigQuery row of one archive, without the storage links (set at delivery)."""

    def one(key: str) -> str:
        value = header.get(key, "")
        return "\\".join(value) if isinstance(value, list) else value

    return {
        "storage_download": "",
        "storage_metadataLink": "",
        "CodedAccessionNumberID": item_suid,
        "CodedPatientID": entity_suid,
        "ContentType": CONTENT_TYPE,
        "PatientSex": one("PatientSex"),
        "PatientAge": one("PatientAge"),
        "Modality": one("Modality"),
        "StudyDescription": one("StudyDescription"),
        "DicomHeader": json.dumps(header, sort_keys=True, separators=(",", ":")),
    }
