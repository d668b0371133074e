"""The ``sendit`` command: run the DAG of one input folder in-process through Airflow.

``sendit run --input DIR --outbox DIR [--provider local|dasher]`` sets up embedded defaults
(an SQLite Airflow home under ``$SENDIT_HOME``, a generated secret key, the local outbox),
runs the folder's DAG with ``dag.test()`` and prints the run summary.
``sendit sample DIR`` writes the demo input folder.
``sendit db upgrade [--ledger-url URL | --work-root DIR]`` brings the ledger's schema to this
version's revision (every run also does it at start, and says so in its log).
``sendit receive --input DIR --allow-ae AE ...`` runs the DICOM receiver (C-STORE SCP),
a long-lived service (docs/pacs.md).
``sendit import-stanford FILE --base-url URL`` prints sendit's ``.stanford`` credentials as
the JSON of an Airflow connection (docs/dasher.md).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sendit_ops.core.errors import SenditError
from sendit_ops.core.settings import (
    INPUT_FOLDERS_VARIABLE,
    SECRET_KEY_VARIABLE,
    SETTINGS_VARIABLE,
    InputFolder,
    Settings,
    default_home,
    parse_json_setting,
    resolve_settings,
)

EXIT_OK, EXIT_USAGE, EXIT_BATCH_ERRORS, EXIT_RUN_FAILED = 0, 2, 3, 4


def _env_var(name: str) -> str:
    return "AIRFLOW_VAR_" + name.upper()


def ensure_secret_key(home: Path) -> None:
    """Use ``AIRFLOW_VAR_SENDIT_SECRET_KEY`` if set, else a key generated once under home.

    The key file is created with mode 0600 from its first byte (``O_CREAT | O_EXCL``): a
    file written with the default umask and chmod'ed afterwards is readable by others for a
    moment. Two first runs at once: one creates it, the other reads that key."""
    if os.environ.get(_env_var(SECRET_KEY_VARIABLE)):
        return
    key_file = home / "secret_key"
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
            fh.flush()
            os.fsync(fh.fileno())
        print(f"generated a secret key in {key_file} (same key = same pseudonyms; keep it safe)")
    key = ""
    for _ in range(50):  # a concurrent first run may still be writing it
        key = key_file.read_text().strip()
        if key:
            break
        time.sleep(0.1)
    if not key:
        raise SenditError(f"the secret key file {key_file} is empty; remove it and rerun")
    os.environ[_env_var(SECRET_KEY_VARIABLE)] = key


def ensure_airflow_home(home: Path) -> None:
    """Point Airflow at an embedded SQLite home (unless AIRFLOW_HOME is set) and migrate it."""
    os.environ.setdefault("AIRFLOW_HOME", str(home / "airflow"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(Path(__file__).parent / "dag_bundle"))
    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    marker = airflow_home / ".sendit-db-ready"
    if marker.exists():
        return
    airflow_home.mkdir(parents=True, exist_ok=True)
    # two first runs at once on a fresh home: one prepares the database, the other waits for
    # it under this lock and then finds the marker (two `airflow db migrate` at once race)
    with open(airflow_home / ".sendit-db-prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return
        print(f"preparing the Airflow metadata database in {airflow_home} (first run only)...")
        done = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True
        )
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-2000:] + done.stderr[-4000:])
            raise SenditError("could not prepare the Airflow metadata database (see above)")
        # the DAG bundle's row too: every `dag.test` inserts it when missing, and two first
        # runs at once both found it missing (a UNIQUE violation failed one of them)
        from airflow.dag_processing.bundles.manager import DagBundlesManager

        DagBundlesManager().sync_bundles_to_db()
        marker.touch()


def cmd_run(args: argparse.Namespace) -> int:
    """Run one input folder's DAG in-process and print its summary."""
    home = default_home()
    input_dir = Path(args.input).resolve()
    if not input_dir.is_dir():
        print(f"sendit: input folder {input_dir} does not exist", file=sys.stderr)
        return EXIT_USAGE
    base = parse_json_setting(os.environ.get(_env_var(SETTINGS_VARIABLE)), SETTINGS_VARIABLE)
    settings = dict(base or {})
    settings["outbox"] = str(Path(args.outbox).resolve())
    if args.work_root:
        settings["work_root"] = str(Path(args.work_root).resolve())
    if args.provider:
        settings["pseudonym_provider"] = args.provider
    for item in args.set or []:
        key, _, value = item.partition("=")
        settings[key] = (
            json.loads(value)
            if value[:1] in '[{"' or value in {"true", "false", "null"} or value.isdigit()
            else value
        )
    # the CLI reports batch errors in its summary and exit code, not as a failed task
    settings.setdefault("fail_run_on_batch_error", False)
    folder = InputFolder(str(input_dir), args.name or _name(input_dir))
    resolved = resolve_settings(settings, folder)  # fail fast with a readable message
    os.environ[_env_var(SETTINGS_VARIABLE)] = json.dumps(settings)
    os.environ[_env_var(INPUT_FOLDERS_VARIABLE)] = json.dumps(
        [{"path": folder.path, "name": folder.name}]
    )
    if args.dasher_credentials:
        from sendit_ops.pseudonyms.dasher_client import stanford_to_connection

        creds = json.loads(Path(args.dasher_credentials).read_text())
        conn_id = resolved.dasher_conn_id
        os.environ["AIRFLOW_CONN_" + conn_id.upper()] = json.dumps(
            stanford_to_connection(creds, creds.get("base_url", ""))
        )
    ensure_secret_key(home)
    conf = {
        "batches": args.batch or [],
        "reprocess": args.reprocess,
        "dry_run": args.dry_run,
        "redeliver": args.redeliver,
        "release": args.release or [],
        "reject": args.reject or [],
    }
    _check_decisions(folder, resolved, conf)  # before Airflow is prepared: an answer at once
    if not args.verbose:  # before anything imports airflow (its logging reads this once)
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    ensure_airflow_home(home)

    from sendit_ops.airflow.dag_factory import build_dag
    from sendit_ops.airflow.progress_display import ProgressDisplay
    from sendit_ops.airflow.tasks import IN_PROCESS_RUN_ENV
    from sendit_ops.core.ledger import Ledger
    from sendit_ops.core.report import format_summary, safe_name

    dag = build_dag(folder)

    print(f"running DAG {dag.dag_id} on {input_dir} ...")
    ledger = Ledger(resolved.work_root, dag.dag_id, resolved.ledger_url)
    # the ledger opened (schema checked or upgraded) before the run: an unreachable or
    # read-only ledger is one line and the configuration exit status, not a failed task
    _ = ledger.ledger_id
    # every task of the run executes in this process: the run lock keeps it listed between
    # tasks, so a killed `sendit run` never blocks the folder for the next one (only while
    # this run lasts: a caller's process, e.g. a test, goes on without it)
    before = os.environ.get(IN_PROCESS_RUN_ENV)
    os.environ[IN_PROCESS_RUN_ENV] = str(os.getpid())
    started = time.time()
    try:
        with ProgressDisplay(lambda: ledger.progress(started), sys.stderr):
            run = dag.test(run_conf=conf)
    finally:
        if before is None:
            os.environ.pop(IN_PROCESS_RUN_ENV, None)
        else:
            os.environ[IN_PROCESS_RUN_ENV] = before
    state = str(getattr(run, "state", "unknown")).rsplit(".", 1)[-1]
    summary_file = (
        Ledger(resolved.work_root, dag.dag_id).root
        / "runs"
        / safe_name(run.run_id)
        / "summary.json"
    )
    if not summary_file.exists():
        print(
            f"sendit: the run ended in state '{state}' before writing a summary; "
            "rerun with --verbose to see the task logs",
            file=sys.stderr,
        )
        return EXIT_RUN_FAILED
    summary = json.loads(summary_file.read_text())
    print(format_summary(summary))
    print(f"outbox: {resolved.outbox}\nreport: {summary_file.parent}")
    if summary.get("stopped"):  # another run holds the input folder: nothing was done
        return EXIT_RUN_FAILED
    if summary["states"].get("ERROR"):
        return EXIT_BATCH_ERRORS
    return EXIT_OK


def _check_decisions(folder: InputFolder, settings: Settings, conf: dict[str, Any]) -> None:
    """Refuse a --release / --reject that is not a HELD batch of this folder before the run
    starts: a DecisionRefused (a ConfigError) is one line and exit status 2. The run's own
    discover checks again under the folder's run lock (what Airflow runs rely on)."""
    from sendit_ops.core.discovery import discover_input
    from sendit_ops.core.ledger import Ledger
    from sendit_ops.pipeline.decisions import named_decisions, resolve_decisions

    decisions = named_decisions(conf)
    if not decisions:
        return
    key = os.environ[_env_var(SECRET_KEY_VARIABLE)].encode()
    seen = discover_input(folder.path, key, folder.name, settings.follow_external_symlinks)
    ledger = Ledger(settings.work_root, folder.dag_id, settings.ledger_url)
    resolve_decisions(ledger, seen.batches, decisions, folder.name)


def _name(path: Path) -> str:
    return "".join(c if c.isalnum() else "_" for c in path.name).strip("_") or "input"


def cmd_sample(args: argparse.Namespace) -> int:
    """Write the demo input folder."""
    from sendit_ops.sample_data import main as sample_main

    return sample_main(
        [str(args.output), "--size", str(args.size)] + (["--force"] if args.force else [])
    )


def cmd_import_stanford(args: argparse.Namespace) -> int:
    """Print sendit's ``.stanford`` credentials as the JSON of a DASHER connection: the value
    of ``AIRFLOW_CONN_DASHER_DEFAULT`` or of ``airflow connections add dasher_default
    --conn-json``. Errors (unreadable file, missing field, no base URL) are ConfigErrors: one
    line, exit 2."""
    from sendit_ops.core.errors import ConfigError
    from sendit_ops.pseudonyms.dasher_client import stanford_to_connection

    path = Path(args.file)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON ({exc})") from None
    try:
        conn = stanford_to_connection(data, args.base_url or "")
    except SenditError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not conn["host"]:
        raise ConfigError(
            f"{path} has no 'base_url': pass DASHER's base URL with --base-url "
            "(e.g. https://dasher.example.org/api)"
        )
    print(json.dumps(conn))
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Upgrade the ledger's schema (the ledger of ``--ledger-url``, else of the settings'
    ``ledger_url``, else the SQLite file in the work root) and say from which revision."""
    from sendit_ops.core.ledger import database_url, describe, upgrade_url

    base = parse_json_setting(os.environ.get(_env_var(SETTINGS_VARIABLE)), SETTINGS_VARIABLE)
    settings = dict(base or {})
    work_root = args.work_root or settings.get("work_root") or str(default_home() / "work")
    url = database_url(work_root, args.ledger_url or settings.get("ledger_url"))
    before, after = upgrade_url(url)
    if before == after:
        print(f"ledger {describe(url)}: already at {after}")
    else:
        print(f"ledger {describe(url)}: upgraded from {before or 'nothing (new)'} to {after}")
    return EXIT_OK


def cmd_receive(args: argparse.Namespace) -> int:
    """Run the DICOM receiver until SIGTERM / Ctrl-C."""
    import logging

    from sendit_ops.pacs.receiver import Receiver, config_from_args

    config = config_from_args(args)
    ensure_secret_key(default_home())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    key = os.environ[_env_var(SECRET_KEY_VARIABLE)].encode()
    Receiver(config, key).serve_forever()
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``sendit``."""
    parser = argparse.ArgumentParser(prog="sendit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run the DAG of one input folder in-process",
        description="Run the DAG of one input folder in-process and print its summary.",
        epilog=(
            f"exit status: {EXIT_OK} every batch ended DONE or EMPTY (or nothing to do); "
            f"{EXIT_BATCH_ERRORS} at least one batch ended ERROR (the summary says why); "
            f"{EXIT_USAGE} bad arguments or settings; {EXIT_RUN_FAILED} the run stopped "
            "before choosing batches (another run holds the input folder, or a task failed). "
            "Batches HELD for review (burned-in text) are not errors: release or reject them "
            "with --release / --reject after looking at the masked thumbnails"
        ),
    )
    run.add_argument("--input", required=True, help="input folder (one sub-folder per batch)")
    run.add_argument("--outbox", required=True, help="local outbox (used when Google is off)")
    run.add_argument("--provider", choices=["local", "dasher"], help="pseudonym provider")
    run.add_argument(
        "--dasher-credentials",
        metavar="FILE",
        help="sendit's .stanford JSON (or the dev server's) as the DASHER connection",
    )
    run.add_argument("--work-root", help="work folder (default $SENDIT_HOME/work)")
    run.add_argument("--name", help="DAG name for this folder (default: folder name)")
    run.add_argument("--batch", action="append", help="only this batch (repeatable)")
    run.add_argument("--reprocess", action="store_true", help="redo delivered batches")
    run.add_argument(
        "--redeliver",
        action="store_true",
        help="the pseudonym provider or key changed: re-deliver the folder's delivered studies "
        "under the new pseudonyms, replacing their objects and rows",
    )
    run.add_argument(
        "--release",
        action="append",
        metavar="BATCH",
        help="a HELD batch (id or folder name) a reviewer released: delivered with its held "
        "images masked as its thumbnails show (repeatable)",
    )
    run.add_argument(
        "--reject",
        action="append",
        metavar="BATCH",
        help="a HELD batch whose held images must stay behind: delivered without them (repeatable)",
    )
    run.add_argument("--dry-run", action="store_true", help="verify but deliver nothing")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="any setting")
    run.add_argument(
        "--strict",
        action="store_true",
        help=f"kept for old scripts: exit {EXIT_BATCH_ERRORS} on a batch in ERROR is the default",
    )
    run.add_argument("--verbose", action="store_true", help="show Airflow's task logs")
    run.set_defaults(func=cmd_run)
    sample = sub.add_parser("sample", help="write the demo input folder")
    sample.add_argument("output", type=Path)
    sample.add_argument("--size", type=int, default=64)
    sample.add_argument("--force", action="store_true")
    sample.set_defaults(func=cmd_sample)
    db = sub.add_parser("db", help="the ledger's database").add_subparsers(
        dest="db_command", required=True
    )
    db_upgrade = db.add_parser(
        "upgrade",
        help="bring the ledger's schema to this version's revision",
        description=(
            "Upgrade the ledger's schema (Alembic migrations shipped with sendit). Every run "
            "does this at start too; a ledger upgraded by a NEWER sendit is refused."
        ),
        epilog=f"exit status: {EXIT_OK} current or upgraded; {EXIT_USAGE} unreachable or newer",
    )
    db_upgrade.add_argument("--ledger-url", help="the ledger's SQLAlchemy URL (PostgreSQL)")
    db_upgrade.add_argument("--work-root", help="work folder of an SQLite ledger")
    db_upgrade.set_defaults(func=cmd_db_upgrade)
    from sendit_ops.pacs.receiver import add_arguments as receiver_arguments

    receive = sub.add_parser(
        "receive",
        help="run the DICOM receiver (C-STORE SCP) that writes studies into an input folder",
        description=(
            "Receive studies from modalities or a PACS (C-STORE) into an input folder: only "
            "the allowed calling AE titles (and hosts) may send; a study's folder is closed "
            "after --stable-age seconds without a new instance (docs/pacs.md)."
        ),
    )
    receiver_arguments(receive)
    receive.set_defaults(func=cmd_receive)
    stanford = sub.add_parser(
        "import-stanford",
        help="print sendit's .stanford credentials as a DASHER connection (JSON)",
        description=(
            "Print sendit's .stanford credentials (accessToken, refreshToken, token_uri, "
            "optional client_id and base_url) as the JSON of an Airflow connection of type "
            "dasher, for AIRFLOW_CONN_DASHER_DEFAULT or `airflow connections add "
            "dasher_default --conn-json` (docs/dasher.md)."
        ),
        epilog=f"exit status: {EXIT_OK} printed; {EXIT_USAGE} unreadable file or missing field",
    )
    stanford.add_argument("file", help="sendit's .stanford JSON file")
    stanford.add_argument(
        "--base-url", help="DASHER's base URL (default: the file's base_url, if any)"
    )
    stanford.set_defaults(func=cmd_import_stanford)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``sendit`` console script."""
    from sendit_ops import quiet_known_deprecations

    quiet_known_deprecations()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SenditError as exc:
        print(f"sendit: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
