"""A real PACS for tests, the demo and the bench: Debian's Orthanc (+ its DICOMweb plugin)
started on free loopback ports with a throw-away configuration and storage.

Orthanc is configured as a PACS that knows sendit's AE as a modality (for C-MOVE) and
accepts C-GET, with ``LimitFindResults`` settable so the tests can prove that a wide date
query is split instead of silently cut. Studies are loaded through its REST API.

Not installed with sendit (devtools/): `apt-get install orthanc orthanc-dicomweb` first.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ORTHANC = "Orthanc"
PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
AE_TITLE = "ORTHANC"


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dicomweb_plugin() -> Path:
    """The DICOMweb plugin shipped by Debian's orthanc-dicomweb."""
    for folder in PLUGIN_DIRS:
        found = sorted(folder.glob("libOrthancDicomWeb.so*"))
        if found:
            return found[0]
    raise RuntimeError(
        "Orthanc's DICOMweb plugin is missing: apt-get install orthanc orthanc-dicomweb"
    )


@dataclass
class Orthanc:
    """A running Orthanc: its ports, folder and process."""

    root: Path
    dicom_port: int
    http_port: int
    modalities: dict[str, tuple[str, str, int]]
    limit_find_results: int = 0
    process: subprocess.Popen | None = None
    aet: str = AE_TITLE
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def config(self) -> dict:
        return {
            "Name": "sendit-test-pacs",
            "StorageDirectory": str(self.root / "db"),
            "IndexDirectory": str(self.root / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomModalities": {k: list(v) for k, v in self.modalities.items()},
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": False,
            "LimitFindResults": self.limit_find_results,
            "LimitFindInstances": 0,
            "Plugins": [str(dicomweb_plugin())],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full"},
            "StableAge": 1,
            "ConcurrentJobs": 2,
            "HttpTimeout": 60,
            "DicomScuTimeout": 30,
            **self.extra,
        }

    def start(self, timeout: float = 60) -> Orthanc:
        """Start Orthanc (same ports and storage as before, if restarted) and wait for it."""
        if not shutil.which(ORTHANC):
            raise RuntimeError("Orthanc is not installed: apt-get install orthanc orthanc-dicomweb")
        (self.root / "db").mkdir(parents=True, exist_ok=True)
        conf = {k: v for k, v in self.config().items() if v is not None}
        path = self.root / "orthanc.json"
        path.write_text(json.dumps(conf, indent=2))
        log = open(self.root / "orthanc.log", "ab")  # noqa: SIM115 (the process keeps it)
        self.process = subprocess.Popen(
            [ORTHANC, "--no-jobs", str(path)], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = (self.root / "orthanc.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}:\n{tail}")
            try:
                if requests.get(f"{self.url}/system", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer on {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop Orthanc cleanly (SIGTERM, then SIGKILL after 15 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def kill(self) -> None:
        """Stop Orthanc abruptly (a PACS going away in the middle of a transfer)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def upload(self, files: list[Path]) -> int:
        """Load DICOM files through the REST API; return how many were stored."""
        stored = 0
        with requests.Session() as http:
            for f in files:
                r = http.post(f"{self.url}/instances", data=f.read_bytes(), timeout=60)
                r.raise_for_status()
                stored += 1
        return stored

    def delete_instance(self, sop_instance_uid: str) -> None:
        """Remove one instance (to make a study incomplete on the PACS side)."""
        r = requests.post(
            f"{self.url}/tools/lookup", data=sop_instance_uid.encode(), timeout=10
        ).json()
        for hit in r:
            if hit["Type"] == "Instance":
                requests.delete(f"{self.url}/instances/{hit['ID']}", timeout=10).raise_for_status()

    def count_studies(self) -> int:
        return len(requests.get(f"{self.url}/studies", timeout=10).json())


def start_orthanc(
    root: Path,
    modalities: dict[str, tuple[str, str, int]] | None = None,
    limit_find_results: int = 0,
    **extra,
) -> Orthanc:
    """Start an Orthanc in ``root`` on free loopback ports. ``modalities``: name ->
    (AE title, host, port), the move destinations it knows."""
    root.mkdir(parents=True, exist_ok=True)
    return Orthanc(
        root=root,
        dicom_port=free_port(),
        http_port=free_port(),
        modalities=modalities or {},
        limit_find_results=limit_find_results,
        extra=extra,
    ).start()
