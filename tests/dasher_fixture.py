"""Start the DASHER dev server as a separate process on a free loopback port."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests


@dataclass
class DasherDev:
    """A running dev server."""

    url: str
    credentials: Path
    process: subprocess.Popen

    def fault(self, kind: str, count: int = 1, **extra) -> None:
        requests.post(
            f"{self.url}/_admin/faults", json={"kind": kind, "count": count, **extra}, timeout=5
        ).raise_for_status()

    def clear(self) -> None:
        requests.delete(f"{self.url}/_admin/faults", timeout=5).raise_for_status()

    def expire(self) -> None:
        requests.post(f"{self.url}/_admin/expire", timeout=5).raise_for_status()

    def token_delay(self, seconds: float) -> None:
        requests.post(
            f"{self.url}/_admin/token_delay", json={"delay": seconds}, timeout=5
        ).raise_for_status()

    def stats(self) -> dict:
        return requests.get(f"{self.url}/_admin/stats", timeout=5).json()

    def creds(self) -> dict:
        return json.loads(self.credentials.read_text())


def start(tmp: Path, token_ttl: float = 3600.0) -> DasherDev:
    creds = tmp / "dasher.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.dasher_server",
            "--port",
            "0",
            "--credentials-out",
            str(creds),
            "--token-ttl",
            str(token_ttl),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"dasher dev server did not start: {line!r}")
    return DasherDev(match.group(1), creds, proc)


@pytest.fixture(scope="module")
def dasher(tmp_path_factory):
    """The DASHER dev server as a separate process, for one test module."""
    server = start(tmp_path_factory.mktemp("dasher"))
    yield server
    server.process.terminate()
    server.process.wait(10)
