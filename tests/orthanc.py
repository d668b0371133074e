"""A real PACS for the query/retrieve and receiver tests: Debian's Orthanc with its DICOMweb
plugin (devtools/orthanc_server.py), on free loopback ports, loaded with generated studies
through its REST API, stopped at the end.

Needs the Debian packages orthanc, orthanc-dicomweb and dcmtk (DEBIAN_TEST_PACKAGES).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest

from devtools.orthanc_server import Orthanc, free_port, start_orthanc
from sendit_ops.pacs.model import PacsConnection
from sendit_ops.sample_data import PATIENTS, write_study

SENDIT_AE = "SENDIT"
CAP = 4  # LimitFindResults: a date query over the 10 studies must be split to find them all


@dataclass
class Pacs:
    """A running Orthanc, the studies loaded in it, and how to connect to it."""

    orthanc: Orthanc
    move_port: int
    studies: dict[str, list[Path]] = field(default_factory=dict)  # accession -> files

    def connection(self, method: str, **extra) -> PacsConnection:
        return PacsConnection(
            name="testpacs",
            host="127.0.0.1",
            port=self.orthanc.dicom_port,
            called_ae=self.orthanc.aet,
            calling_ae=SENDIT_AE,
            method=method,
            move_port=self.move_port,
            dicomweb_url=self.orthanc.dicomweb_url,
            max_find_results=self.orthanc.limit_find_results,
            timeout=15,
            **extra,
        )

    def load(
        self,
        root: Path,
        count: int,
        *,
        first: int = 0,
        images: int = 3,
        series: int = 2,
        size: int = 64,
        prefix: str = "ACC9",
    ) -> list[str]:
        """Generate ``count`` studies (a day apart in January 2024) and store them."""
        accessions = []
        for i in range(first, first + count):
            acc = f"{prefix}{i:04d}"
            files = write_study(
                root / acc,
                PATIENTS[i % len(PATIENTS)],
                acc,
                f"202401{1 + i % 28:02d}",
                "CT" if i % 2 else "MR",
                series,
                images,
                size=size,
                seed=i,
            )
            self.orthanc.upload(files)
            self.studies[acc] = files
            accessions.append(acc)
        return accessions

    def study_uid(self, accession: str) -> str:
        return str(
            pydicom.dcmread(self.studies[accession][0], stop_before_pixels=True).StudyInstanceUID
        )


def make(root: Path, limit: int = CAP) -> Pacs:
    move_port = free_port()
    orthanc = start_orthanc(
        root, {"sendit": (SENDIT_AE, "127.0.0.1", move_port)}, limit_find_results=limit
    )
    return Pacs(orthanc, move_port)


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    """An Orthanc with 10 studies (ACC90000..ACC90009, 6 images each), result cap 4."""
    root = tmp_path_factory.mktemp("pacs")
    server = make(root / "orthanc")
    server.load(root / "corpus", 10)
    yield server
    server.orthanc.stop()


@pytest.fixture
def make_pacs(tmp_path):
    """A factory of Orthancs of one test's own (a test that stops or empties its PACS)."""
    started: list[Pacs] = []

    def factory(limit: int = CAP) -> Pacs:
        server = make(tmp_path / f"orthanc{len(started)}", limit)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.orthanc.stop()
