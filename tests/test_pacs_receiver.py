"""The DICOM receiver (``sendit receive``) against dcmtk's storescu, a real sender: allowed
and unknown AE titles, hosts, the quiet-time close, and a receiver killed mid-study."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from conftest import SECRET

from devtools.orthanc_server import free_port
from sendit_ops.core.discovery import discover_input
from sendit_ops.pacs.receiver import Receiver, ReceiverConfig
from sendit_ops.sample_data import PATIENTS, write_study

pytestmark = pytest.mark.emulator

STABLE = 3.0


def start_receiver(incoming: Path, port: int, log: Path, *aes: str) -> subprocess.Popen:
    allow = [a for ae in aes for a in ("--allow-ae", ae)]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sendit_ops.airflow.cli",
            "receive",
            "--input",
            str(incoming),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--stable-age",
            str(STABLE),
            *allow,
        ],
        stdout=open(log, "ab"),  # noqa: SIM115 (the process keeps it)
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        echo = subprocess.run(
            ["echoscu", "-aet", aes[0], "-aec", "SENDIT", "127.0.0.1", str(port)],
            capture_output=True,
        )
        if echo.returncode == 0:
            return proc
        assert proc.poll() is None, log.read_text()
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the receiver did not start: " + log.read_text())


def storescu(port: int, ae: str, files: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["storescu", "-aet", ae, "-aec", "SENDIT", "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
    )


def wait_closed(incoming: Path, count: int, timeout: float = 30) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in incoming.iterdir() if p.is_dir() and ".tmp" not in p.name]
        if len(done) >= count and not [p for p in incoming.iterdir() if ".tmp" in p.name]:
            return done
        time.sleep(0.2)
    raise AssertionError(f"not closed: {sorted(p.name for p in incoming.iterdir())}")


def test_a_study_from_an_allowed_ae_becomes_one_finished_folder(tmp_path):
    files = write_study(tmp_path / "study", PATIENTS[0], "ACC7001", "20240105", "CT", 2, 3)
    port, incoming = free_port(), tmp_path / "incoming"
    proc = start_receiver(incoming, port, tmp_path / "receiver.log", "CT01")
    try:
        sent = storescu(port, "CT01", files)
        assert sent.returncode == 0, sent.stderr
        # open while instances may still come: the folder DAG does not see it
        assert [p.name.endswith(".tmp") for p in incoming.iterdir()] == [True]
        assert discover_input(incoming, SECRET, "in").batches == []
        (folder,) = wait_closed(incoming, 1)
        got = sorted(pydicom.dcmread(f).SOPInstanceUID for f in folder.iterdir())
        assert got == sorted(pydicom.dcmread(f).SOPInstanceUID for f in files)
        assert "ACC7001" not in folder.name
        assert len(discover_input(incoming, SECRET, "in").batches) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert "ACC7001" not in (tmp_path / "receiver.log").read_text()


def test_an_unknown_ae_is_rejected(tmp_path):
    files = write_study(tmp_path / "study", PATIENTS[1], "ACC7002", "20240105", "CT", 1, 2)
    port, incoming = free_port(), tmp_path / "incoming"
    proc = start_receiver(incoming, port, tmp_path / "receiver.log", "CT01")
    try:
        sent = storescu(port, "INTRUDER", files)
        assert sent.returncode != 0
        assert "Association Rejected" in sent.stderr + sent.stdout
        time.sleep(0.5)
        assert list(incoming.iterdir()) == []
    finally:
        proc.kill()
        proc.wait(10)


def test_a_host_not_allowed_is_refused(tmp_path):
    files = write_study(tmp_path / "study", PATIENTS[1], "ACC7003", "20240105", "CT", 1, 2)
    incoming = tmp_path / "incoming"
    config = ReceiverConfig(
        incoming,
        port=0,
        bind="127.0.0.1",
        allowed_aes=("CT01",),
        allowed_hosts=("10.0.0.0/8",),
        stable_age=1,
    )
    receiver = Receiver(config, SECRET).start()
    try:
        sent = storescu(receiver.port, "CT01", files)
        assert sent.returncode != 0
        assert list(incoming.iterdir()) == []
    finally:
        receiver.stop()


def test_receiver_killed_mid_study_then_restarted_completes_it_once(tmp_path):
    files = write_study(
        tmp_path / "study", PATIENTS[2], "ACC7004", "20240106", "CT", 2, 40, size=256
    )
    port, incoming, log = free_port(), tmp_path / "incoming", tmp_path / "receiver.log"
    proc = start_receiver(incoming, port, log, "CT01")
    sender = subprocess.Popen(
        ["storescu", "-aet", "CT01", "-aec", "SENDIT", "127.0.0.1", str(port), *map(str, files)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline, at = time.monotonic() + 60, 0
    while time.monotonic() < deadline:
        tmp = [p for p in incoming.glob("*.tmp")]
        at = len(list(tmp[0].glob("*.dcm"))) if tmp else 0
        if at >= 10:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait(10)
    sender.wait(30)
    assert 10 <= at < len(files), at  # killed in the middle of the study
    assert sender.returncode != 0  # the sender saw the receiver go away
    assert [p.name.endswith(".tmp") for p in incoming.iterdir()] == [True]
    # restarted: it reopens the open study; the modality sends the study again
    proc = start_receiver(incoming, port, log, "CT01")
    try:
        sent = storescu(port, "CT01", files)
        assert sent.returncode == 0, sent.stderr
        (folder,) = wait_closed(incoming, 1)
        got = sorted(
            pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in folder.iterdir()
        )
        assert got == sorted(
            pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files
        )
        assert "reopened 1 unfinished" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
