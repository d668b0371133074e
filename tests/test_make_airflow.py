"""``make airflow``: started as a user would (a free port, a new home), used over HTTP with the
login it prints, then stopped with Ctrl-C (SIGINT to its process group)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from conftest import ROOT

from devtools.airflow_stack import drop_database, free_port

pytestmark = pytest.mark.live


def output(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def processes_of(home: Path) -> list[str]:
    """The processes (components, their task workers) whose environment names this home."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"SENDIT_HOME={home}\0".encode() in environ.read_bytes():
                found.append(
                    (environ.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def wait_for(what: str, check, proc: subprocess.Popen, log: Path, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"make airflow exited ({proc.returncode}):\n{output(log)}"
        try:
            value = check()
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"{what}: not within {timeout} s\n{output(log)}")


def test_make_airflow_serves_sendit_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    home = tmp_path / "home"
    log = tmp_path / "make-airflow.log"
    # the session's Airflow settings (conftest) are not a user's: leave them out
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SENDIT"))}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                "make",
                "--no-print-directory",
                "airflow",
                f"AIRFLOW_PORT={port}",
                f"SENDIT_HOME={home}",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    url = f"http://127.0.0.1:{port}"
    db_url = None
    try:
        wait_for(
            "health",
            lambda: requests.get(f"{url}/api/v2/monitor/health", timeout=5).ok,
            proc,
            log,
            timeout=400,
        )
        banner = wait_for(
            "the login line",
            lambda: re.search(r"login: (\S+) / (\S+)", output(log)),
            proc,
            log,
            timeout=60,
        )
        text = output(log)
        assert f"Airflow is up: {url}/" in text
        db_url = re.search(r"metadata database: (\S+)", text).group(1)
        user, password = banner.group(1), banner.group(2)

        assert requests.get(f"{url}/api/v2/dags", timeout=10).status_code == 401
        token = requests.post(
            f"{url}/auth/token", json={"username": user, "password": password}, timeout=10
        )
        assert token.ok, token.text
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}

        def dag_ids():
            listed = requests.get(f"{url}/api/v2/dags", headers=auth, timeout=10).json()
            ids = [d["dag_id"] for d in listed["dags"]]
            return ids if "sendit_demo" in ids else None

        assert wait_for("DAG sendit_demo", dag_ids, proc, log, timeout=180) == ["sendit_demo"]
        variables = requests.get(f"{url}/api/v2/variables", headers=auth, timeout=10).json()
        values = {v["key"]: v["value"] for v in variables["variables"]}
        assert set(values) == {"sendit_input_folders", "sendit_settings", "sendit_secret_key"}
        assert str(home / "input" / "demo") in values["sendit_input_folders"]
        assert (home / "input" / "demo" / "ACC10001").is_dir()  # `sendit sample` wrote it
        key = home / "secret_key"
        assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_text().strip()) >= 32
        page = requests.get(f"{url}/sendit/", headers=auth, timeout=30)
        assert page.status_code == 200 and "sendit batches" in page.text

        # the printed set-up line points another shell's `airflow` command at this stack
        setup = re.search(r"in another shell: (export AIRFLOW_HOME=.*)$", text, re.MULTILINE)
        assert setup, text
        listed = subprocess.run(
            ["bash", "-c", f"{setup.group(1)}\nairflow variables list -o json"],
            env={k: v for k, v in env.items() if k != "PATH"} | {"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert listed.returncode == 0, listed.stderr[-3000:]
        keys = {v["key"] for v in json.loads(listed.stdout.strip().splitlines()[-1])}
        assert keys == {"sendit_input_folders", "sendit_settings", "sendit_secret_key"}
        assert "no such table" not in listed.stdout + listed.stderr
        if db_url.startswith("postgresql"):  # no stray SQLite database left by the command
            assert not (home / "airflow" / "airflow.db").exists()
        assert (home / "airflow" / "airflow.cfg").stat().st_mode & 0o777 == 0o600

        assert len(processes_of(home)) >= 4  # the components (the check below sees them)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        proc.wait(120)
        assert "stopped." in output(log)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/api/v2/monitor/health", timeout=5)
        assert processes_of(home) == [], "processes left behind"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(120)
        if db_url and db_url.startswith("postgresql"):
            drop_database(db_url)
