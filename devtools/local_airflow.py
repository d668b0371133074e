"""``make airflow``: a real Airflow on this machine with sendit's DAGs, plugin and Variables.

Starts api-server, scheduler, dag-processor and triggerer (LocalExecutor) with the settings of
devtools/airflow_stack.py, on the local PostgreSQL when it answers (127.0.0.1:5432, user
``postgres``), else on SQLite; ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` in the environment
chooses another database. Everything it keeps lives in the sendit home (``--home``, default
``$SENDIT_HOME``):

- ``secret_key``: the sendit key, generated once (as ``sendit run`` does);
- ``input/demo``: the demo input folder, written by ``sendit sample`` if missing;
- ``work/``, ``outbox/``: the work root and the local delivery target;
- ``airflow/``: AIRFLOW_HOME (the admin's password in ``passwords.json``, generated once;
  the SQLite database; ``component-logs/``; ``airflow.cfg`` with the stack's settings, so
  that the ``airflow`` command with this AIRFLOW_HOME talks to the running stack).

It sets the Variables ``sendit_input_folders``, ``sendit_settings`` (created if missing, so
edits in the UI stay) and ``sendit_secret_key`` (from the key file), prints the URL and the
login, and runs in the foreground until Ctrl-C, which stops every component.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from devtools.airflow_stack import AirflowStack
from sendit_ops.airflow.cli import ensure_secret_key
from sendit_ops.core.settings import (
    INPUT_FOLDERS_VARIABLE,
    SECRET_KEY_VARIABLE,
    SETTINGS_VARIABLE,
    default_home,
)

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
DEMO_DAG = "sendit_demo"


def database_url(home: Path) -> str:
    """The metadata database: the environment's, else PostgreSQL, else SQLite in the home.

    The PostgreSQL database is named after the home (one per home, kept between starts)."""
    configured = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if configured:
        return configured
    name = "sendit_airflow_" + hashlib.sha256(str(home).encode()).hexdigest()[:8]
    try:
        import psycopg2

        conn = psycopg2.connect(PG_DSN)
    except Exception as exc:  # no server, no such user, ...: SQLite will do
        print(f"PostgreSQL on 127.0.0.1:5432 not reachable ({type(exc).__name__}): using SQLite")
        return f"sqlite:///{home / 'airflow' / 'airflow.db'}"
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"


def admin_password(airflow_home: Path) -> str:
    """The admin's password: the one in passwords.json, else a new one."""
    try:
        return json.loads((airflow_home / "passwords.json").read_text())["admin"]
    except (OSError, ValueError, KeyError):
        return secrets.token_urlsafe(12)


def set_variables(stack: AirflowStack, home: Path, key: str) -> None:
    """Create the sendit Variables (the key always follows the key file)."""
    values = {
        INPUT_FOLDERS_VARIABLE: (
            # the demo's three ERROR batches are deliberate: a green run, reasons on the
            # dashboard and in the report (a production folder keeps the default: red)
            json.dumps(
                [
                    {
                        "path": str(home / "input" / "demo"),
                        "name": "demo",
                        "settings": {"fail_run_on_batch_error": False},
                    }
                ]
            ),
            "sendit input folders: one DAG sendit_<name> each (docs/configuration.md)",
        ),
        SETTINGS_VARIABLE: (
            json.dumps({"work_root": str(home / "work"), "outbox": str(home / "outbox")}),
            "sendit settings (docs/configuration.md)",
        ),
        SECRET_KEY_VARIABLE: (key, f"sendit key, kept in {home / 'secret_key'}"),
    }
    for name, (value, description) in values.items():
        body = {"key": name, "value": value, "description": description}
        created = stack.api("POST", "/api/v2/variables", json=body)
        if created.status_code == 409 and name == SECRET_KEY_VARIABLE:
            created = stack.api("PATCH", f"/api/v2/variables/{name}", json=body)
        if not (created.ok or created.status_code == 409):
            raise RuntimeError(f"cannot set Variable {name}: {created.status_code} {created.text}")


# settings of the components that the airflow.cfg of the home leaves out: the hostname
# callable lives in devtools/ (not importable by a plain `airflow` command)
NOT_IN_CFG = {"AIRFLOW__CORE__HOSTNAME_CALLABLE"}


def write_airflow_cfg(airflow_home: Path, env: dict[str, str]) -> Path:
    """Write the stack's settings (every ``AIRFLOW__<SECTION>__<KEY>`` it starts its
    components with) into ``airflow.cfg`` of its AIRFLOW_HOME, keeping what else the file
    holds (the Fernet key that encrypts the connections above all; one is generated when
    missing). The components take their settings from the environment; a shell's
    ``airflow`` command with only ``AIRFLOW_HOME`` set reads this file, so it reaches the
    same metadata database (no ``no such table: variable`` from a default SQLite file)."""
    path = airflow_home / "airflow.cfg"
    cfg = configparser.ConfigParser(interpolation=None)
    if path.exists():
        cfg.read(path)
    for name, value in sorted(env.items()):
        if not name.startswith("AIRFLOW__") or name in NOT_IN_CFG or name.endswith("_CMD"):
            continue
        section, _, key = name.removeprefix("AIRFLOW__").partition("__")
        if not key:
            continue
        section, key = section.lower(), key.lower()
        if not cfg.has_section(section):
            cfg.add_section(section)
        cfg.set(section, key, value.replace("%", "%%"))  # Airflow's parser interpolates
    if not cfg.has_section("core"):
        cfg.add_section("core")
    if not cfg.get("core", "fernet_key", fallback=""):
        from cryptography.fernet import Fernet

        cfg.set("core", "fernet_key", Fernet.generate_key().decode())
    fd = os.open(path.with_suffix(".cfg.new"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(
            "# written by `make airflow` (devtools/local_airflow.py) at every start: the\n"
            "# settings its components run with, for the `airflow` command of this home\n"
        )
        cfg.write(out)
    os.replace(path.with_suffix(".cfg.new"), path)
    return path


def shell_setup(airflow_home: Path) -> str:
    """The one line that points a shell's ``airflow`` command at this stack."""
    venv_bin = Path(sys.executable).parent
    return f'export AIRFLOW_HOME={airflow_home} PATH="{venv_bin}:$PATH"'


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # make, a pipe
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", 8080)))
    parser.add_argument("--home", type=Path, default=None, help="sendit home ($SENDIT_HOME)")
    args = parser.parse_args(argv)
    home = (args.home or default_home()).resolve()
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError:
            print(f"port {args.port} is in use: make airflow AIRFLOW_PORT=<another port>")
            return 2
    os.environ["SENDIT_HOME"] = str(home)
    airflow_home = home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)

    ensure_secret_key(home)  # AIRFLOW_VAR_SENDIT_SECRET_KEY if set, else home/secret_key
    # the key goes into the Variable, where the UI shows it (masked) like the other two
    key = os.environ.pop("AIRFLOW_VAR_" + SECRET_KEY_VARIABLE.upper())
    demo = home / "input" / "demo"
    if not demo.exists():
        sendit = Path(sys.executable).with_name("sendit")
        subprocess.run([str(sendit), "sample", str(demo)], check=True)

    db_url = database_url(home)
    stack = AirflowStack(
        airflow_home,
        Path(__file__).parents[1] / "dags",
        db_url,
        port=args.port,
        password=admin_password(airflow_home),
        parse_interval=10,
        env={
            # serve on this machine only; a changed Variable reaches the DAGs within ~20 s
            "AIRFLOW__API__HOST": os.environ.get("AIRFLOW__API__HOST", "127.0.0.1"),
            "SENDIT_PARSE_CACHE_SECONDS": os.environ.get("SENDIT_PARSE_CACHE_SECONDS", "10"),
        },
    )
    write_airflow_cfg(airflow_home, stack.env)
    print(f"metadata database: {db_url}")
    print(f"starting Airflow on port {args.port} (logs: {airflow_home / 'component-logs'})...")
    # Ctrl-C (even when the shell started us with SIGINT ignored), kill, a supervisor
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        try:
            stack.start(timeout=300)
        except subprocess.CalledProcessError as exc:
            sys.stderr.write((exc.stdout or b"").decode()[-3000:] + (exc.stderr or b"").decode())
            print("airflow db migrate failed (see above)", file=sys.stderr)
            return 1
        except RuntimeError as exc:  # the API did not answer in time
            for name in stack.names:
                log = airflow_home / "component-logs" / f"{name}.log"
                print(f"--- end of {log}\n{tail(log, 10)}", file=sys.stderr)
            print(exc, file=sys.stderr)
            return 1
        set_variables(stack, home, key)
        print(
            f"\nAirflow is up: {stack.url}/\n"
            f"  login: admin / {stack.password}"
            f"   (simple auth manager: {airflow_home / 'passwords.json'})\n"
            f"  DAG {DEMO_DAG} watches {demo} (Variable {INPUT_FOLDERS_VARIABLE})\n"
            f"  batches dashboard: {stack.url}/sendit/\n"
            f"  review held batches: {stack.url}/sendit/#held (Release / Reject)\n"
            "    after the first run the demo's dose screen capture ACC10010 is HELD\n"
            f"  outbox: {home / 'outbox'}   work root: {home / 'work'}\n"
            f"  the airflow command, in another shell: {shell_setup(airflow_home)}\n"
            f"    then e.g. `airflow variables list` (settings: {airflow_home}/airflow.cfg)\n"
            "  DAGs are unpaused at creation here (dags_are_paused_at_creation = False)\n"
            "Ctrl-C stops it."
        )
        while True:
            for name, proc in zip(stack.names, stack.procs, strict=True):
                if proc.poll() is not None:
                    log = airflow_home / "component-logs" / f"{name}.log"
                    print(f"\n{name} exited ({proc.returncode}); end of {log}:\n{tail(log)}")
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping Airflow...")
        return 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C: let the stop end
            signal.signal(signum, signal.SIG_IGN)
        stack.stop(drop_db=False)
        print("stopped.")


if __name__ == "__main__":
    raise SystemExit(main())
