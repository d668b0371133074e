"""Run a real Airflow on this machine for end-to-end tests and the benchmark.

Starts ``api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` (and Celery workers
for the CeleryExecutor) as separate processes on a fresh PostgreSQL database, with the simple
auth manager and one admin user, and talks to the REST API like an operator would.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

TERMINAL = {"success", "failed"}
STACK_MARK = "SENDIT_AIRFLOW_STACK"  # an environment variable naming the stack of a process


def processes_marked(mark: str) -> list[int]:
    """The processes whose environment holds ``mark`` (``NAME=value``): a stack's processes,
    also the ones its components started and that left their process group."""
    needle = mark.encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if needle in environ + b"\0" and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def processes_in_sessions(sessions: set[int]) -> list[int]:
    """The processes of these sessions (each component leads one: ``start_new_session``).
    Needed beside the mark: a process that renames itself (setproctitle, as Airflow's
    executor workers do) overwrites the environment /proc shows."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) in sessions and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _idle(pid: int) -> bool:
    """A process holding no work: an executor worker waiting for a task (its title says
    ``<idle>``) or multiprocessing's resource tracker. Such workers outlive SIGTERM once
    their scheduler has ended (measured: ``stop`` waited out its whole grace for them)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone
        return True
    return b"<idle>" in cmdline or b"multiprocessing.resource_tracker" in cmdline


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


# What docker-compose.yaml and airflow.cfg.template set for fast task starts (see
# sendit_ops/airflow/task_preload.py and docs/performance.md); a caller's env may override them.
TASK_START_SETTINGS = {
    "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
    "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": (
        "airflow,airflow.executors.local_executor,sendit_ops.airflow.task_preload"
    ),
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
    "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "sendit_ops.airflow.celery_config.CELERY_CONFIG",
}
# [dag_processor] min_file_process_interval of airflow.cfg.template: the bench runs with it
# (the live tests re-parse every 5 s, to see changed Variables quickly). The stack uses one
# figure for refresh_interval too (the template says 60 s; a folder rescan is cheap)
SHIPPED_PARSE_INTERVAL = 30


def worker_hostname() -> str:
    """Hostname callable for test workers (``SENDIT_WORKER_NAME``): two Celery workers on one
    machine otherwise report the same hostname."""
    return os.environ.get("SENDIT_WORKER_NAME") or socket.getfqdn()


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEFAULT_DSN = "host=127.0.0.1 user=postgres dbname=postgres"
# databases made by create_database(migrated=True) in this process: AirflowStack.start does
# not migrate them again (a copy of a database this process's Airflow just migrated)
_MIGRATED: set[str] = set()
_TEMPLATE: list[str] = []  # this process's migrated template database, made on first use


def _database_url(name: str) -> str:
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


def _migrated_template(dsn: str) -> str:
    """The name of a database ``airflow db migrate`` made once for this process (dropped at
    exit): the tests' stacks copy it instead of each migrating an empty database (~10-20 s
    each on a 2-core machine; a copy takes well under a second)."""
    if not _TEMPLATE:
        name = f"sendit_airflow_template_{os.getpid()}_{secrets.token_hex(4)}"
        url = create_database(name, dsn=dsn)
        atexit.register(drop_database, url, dsn)
        with tempfile.TemporaryDirectory(prefix="sendit-airflow-template-") as home:
            env = {
                **os.environ,
                "AIRFLOW_HOME": home,
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url,
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            }
            airflow = str(Path(sys.executable).with_name("airflow"))
            subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        _TEMPLATE.append(name)
    return _TEMPLATE[0]


def create_database(name: str, dsn: str = DEFAULT_DSN, *, migrated: bool = False) -> str:
    """Create a PostgreSQL database; return its SQLAlchemy URL. Empty, or with ``migrated``
    a copy of a database migrated by this process's Airflow (``CREATE DATABASE ...
    TEMPLATE``): a stack started on it skips ``airflow db migrate``."""
    import psycopg2

    template = _migrated_template(dsn) if migrated else None
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if template:
            cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    url = _database_url(name)
    if template:
        _MIGRATED.add(url)
    return url


def drop_database(url: str, dsn: str = DEFAULT_DSN) -> None:
    """Drop a database made by create_database (connections are closed first)."""
    import psycopg2

    name = url.rsplit("/", 1)[-1]
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


class AirflowStack:
    """A running Airflow and a REST client for it."""

    def __init__(
        self,
        home: Path,
        dags_folder: Path,
        db_url: str,
        *,
        executor: str = "LocalExecutor",
        celery_workers: int = 0,
        env: dict[str, str] | None = None,
        password: str = "admin-pw",
        parse_interval: int = 5,
        port: int | None = None,
    ):
        self.home = home
        self.db_url = db_url
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = password
        self.celery_workers = celery_workers
        self.procs: list[subprocess.Popen] = []
        self.names: list[str] = []  # the component of each process in procs
        self._token: str | None = None
        # every process of this stack inherits this mark (whatever process group or session
        # it moves to): ``stop`` finds and ends them all by it
        self.mark = f"{STACK_MARK}={secrets.token_hex(8)}"
        self.env = {
            **os.environ,
            STACK_MARK: self.mark.split("=", 1)[1],
            **TASK_START_SETTINGS,
            **(env or {}),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(Path(__file__).parents[1] / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devtools.airflow_stack.worker_hostname",
            # tests change Variables and expect the DAGs to follow within seconds
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": str(parse_interval),
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(parse_interval),
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
            "AIRFLOW__TRIGGERER__DEFAULT_CAPACITY": "100",
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            # devtools/ is not installed: the hostname callable above is imported from the repo
            "PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }

    def _airflow(self, *args: str) -> list[str]:
        return [str(Path(sys.executable).with_name("airflow")), *args]

    def start(self, timeout: float = 180) -> AirflowStack:
        """Migrate the database (unless create_database made it ``migrated``) and start every
        component; wait for the API."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "passwords.json").write_text(json.dumps({"admin": self.password}))
        if self.db_url in _MIGRATED:  # a copy of a migrated database needs no migration
            self._write_fernet_key()
        else:
            subprocess.run(
                self._airflow("db", "migrate"), env=self.env, check=True, capture_output=True
            )
        logs = self.home / "component-logs"
        logs.mkdir(exist_ok=True)
        components = [
            ("api-server", ["api-server", "--port", str(self.port)]),
            ("scheduler", ["scheduler"]),
            ("dag-processor", ["dag-processor"]),
            ("triggerer", ["triggerer"]),
        ]
        components += [
            (
                f"worker{i}",
                ["celery", "worker", "--concurrency", "1", "--celery-hostname", f"w{i}@%h"],
            )
            for i in range(1, self.celery_workers + 1)
        ]
        for name, args in components:
            self.names.append(name)
            env = {**self.env, "SENDIT_WORKER_NAME": name}
            out = (logs / f"{name}.log").open("w")
            self.procs.append(
                subprocess.Popen(
                    self._airflow(*args),
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/api/v2/monitor/health", timeout=10).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(1)
        raise RuntimeError(f"Airflow API did not come up; see {logs}")

    def _write_fernet_key(self) -> None:
        """An ``airflow.cfg`` holding a Fernet key, when the home has none: written before
        the components start (else each would write its own file, with its own key; the
        migration wrote it before). The components take every other setting from their
        environment, as with ``make airflow`` (devtools/local_airflow.py)."""
        from cryptography.fernet import Fernet

        path = self.home / "airflow.cfg"
        if path.exists():
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"[core]\nfernet_key = {Fernet.generate_key().decode()}\n")

    def stop(self, drop_db: bool = True, grace: float = 30.0) -> None:
        """Stop every process the stack started (and drop the database made for it).

        Each component leads a process group (``start_new_session``): SIGTERM goes to the
        whole group even when its leader has ended already (its executor workers outlive it).
        Then every process still in a component's session or carrying the stack's mark in
        its environment (one that left the group, or was re-parented to init) is ended too:
        SIGTERM, then SIGKILL after ``grace`` seconds, or as soon as the components have
        ended and only idle executor workers are left. A stack leaves no process behind
        (tests/test_live_airflow.py counts them)."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):  # the whole group has ended
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(deadline - time.monotonic(), 0.1))
        _signal_all(self.processes(), signal.SIGTERM)
        while time.monotonic() < deadline:
            left = self.processes()
            if not left:
                break
            # the components have ended and only idle helpers are left: no need to wait
            if all(proc.poll() is not None for proc in self.procs) and all(map(_idle, left)):
                break
            time.sleep(0.2)
        _signal_all(self.processes(), signal.SIGKILL)  # e.g. idle executor workers
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        kill_deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < kill_deadline:
            time.sleep(0.2)
        if drop_db:
            drop_database(self.db_url)

    def processes(self) -> list[int]:
        """Every live process this stack started: in its components' sessions, or carrying
        its mark (one that started a session of its own)."""
        sessions = {proc.pid for proc in self.procs}
        return sorted(set(processes_in_sessions(sessions)) | set(processes_marked(self.mark)))

    # -- REST ------------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT from ``POST /auth/token``."""
        if self._token is None:
            response = requests.post(
                f"{self.url}/auth/token",
                timeout=10,
                json={"username": "admin", "password": self.password},
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, *, auth: bool = True, **kwargs: Any):
        """Call the REST API (``/api/v2/...``)."""
        headers = {"Authorization": f"Bearer {self.token()}"} if auth else {}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def wait_dag(self, dag_id: str, timeout: float = 120) -> dict:
        """Wait until the DAG processor has parsed the DAG; unpause it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.api("GET", f"/api/v2/dags/{dag_id}")
            if response.ok:
                self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
                return response.json()
            time.sleep(2)
        raise RuntimeError(f"DAG {dag_id} was not parsed in {timeout} s")

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        """Trigger a run with conf; return its run id."""
        response = self.api(
            "POST",
            f"/api/v2/dags/{dag_id}/dagRuns",
            json={"logical_date": None, "conf": conf or {}},
        )
        response.raise_for_status()
        return response.json()["dag_run_id"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Poll a run until it ends; return its state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
            if state in TERMINAL:
                return state
            time.sleep(2)
        raise RuntimeError(f"run {run_id} did not finish in {timeout} s")

    def runs(self, dag_id: str) -> list[dict]:
        """Every run of a DAG."""
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """The task instances of a run (mapped ones included)."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self.api("GET", path, params={"limit": 1000}).json()["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """The return value of a task."""
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
            "/xcomEntries/return_value"
        )
        return self.api("GET", path, params={"deserialize": True}).json()["value"]
