"""sendit's configuration as Airflow holds it: the Variables ``sendit_input_folders``,
``sendit_settings`` and ``sendit_secret_key`` (or their ``AIRFLOW_VAR_…`` environment form).

Airflow gives each kind of process its own channel to Variables, so this module has one
reader per kind, and every one of them hands the values to the same resolver
(``core.settings.resolve_settings``):

- DAG processor (parse time): the environment, else Airflow with a small on-disk cache, so
  parsing does not query the metadata database each time (``read_input_folders``,
  ``parse_time_settings``);
- a running task: ``airflow.sdk.Variable`` through the execution API (``task_settings``);
- the API server (dashboard): the metadata database (``server_settings``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from sendit_ops.core.errors import ConfigError
from sendit_ops.core.settings import (
    INPUT_FOLDERS_VARIABLE,
    SECRET_KEY_VARIABLE,
    SETTINGS_VARIABLE,
    InputFolder,
    Settings,
    default_home,
    parse_input_folders,
    parse_json_setting,
    resolve_settings,
)

log = logging.getLogger("sendit")
CACHE_SECONDS = int(os.environ.get("SENDIT_PARSE_CACHE_SECONDS", "300"))


def env_variable(name: str) -> str | None:
    """A Variable set in the environment (``AIRFLOW_VAR_<NAME>``), which costs no query."""
    return os.environ.get("AIRFLOW_VAR_" + name.upper())


def _cache_file() -> Path:
    return default_home() / ".cache" / "input_folders.json"


def read_input_folders() -> list[InputFolder]:
    """The configured input folders (env var, else cached Variable, else the demo default)."""
    raw = env_variable(INPUT_FOLDERS_VARIABLE)
    if raw is None:
        raw = _cached_variable()
    value = parse_json_setting(raw, INPUT_FOLDERS_VARIABLE)
    if value is None:
        # the demo folder holds deliberate ERROR batches (a corrupt file, two study dates,
        # no accession number): they are explained in its report, not a failed run
        value = [
            {
                "path": str(default_home() / "input" / "demo"),
                "name": "demo",
                "settings": {"fail_run_on_batch_error": False},
            }
        ]
    return parse_input_folders(value)


def _cached_variable() -> str | None:
    cache = _cache_file()
    try:
        if time.time() - cache.stat().st_mtime < CACHE_SECONDS:
            return json.loads(cache.read_text())["value"]
    except (OSError, ValueError, KeyError):
        pass
    try:
        from airflow.sdk import Variable

        value = Variable.get(INPUT_FOLDERS_VARIABLE, default=None)
    except Exception as exc:  # no API/DB reachable at parse time: keep the last known value
        log.warning(
            "cannot read Variable %s (%s); using the cached value",
            INPUT_FOLDERS_VARIABLE,
            type(exc).__name__,
        )
        try:
            return json.loads(cache.read_text())["value"]
        except (OSError, ValueError, KeyError):
            return None
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"value": value}))
    except OSError:
        pass
    return value


def parse_time_settings(folder: InputFolder) -> Settings:
    """The settings the DAG's shape depends on (chunk size, concurrency, pool, the watcher's
    work root and ledger), read at parse time without the database: the environment form of
    ``sendit_settings`` and the folder's settings. Invalid settings do not break parsing
    (the DAG must stay visible): the folder's own settings alone are used then, else the
    defaults, and the run's first task reports the problem with its full message."""
    for variable in (env_variable(SETTINGS_VARIABLE), None):
        try:
            return resolve_settings(variable, folder)
        except ConfigError:
            continue
    return Settings()


def task_settings(folder: InputFolder, params: dict[str, Any] | None) -> Settings:
    """Settings of a running task: Variable ``sendit_settings`` < folder < trigger params."""
    from airflow.sdk import Variable

    return resolve_settings(Variable.get(SETTINGS_VARIABLE, default=None), folder, params)


def task_secret_key() -> bytes:
    """The sendit secret key (Variable ``sendit_secret_key``), required for every run."""
    from airflow.sdk import Variable

    value = Variable.get(SECRET_KEY_VARIABLE, default=None)
    if not value or len(str(value)) < 16:
        raise ConfigError(
            f"Airflow Variable '{SECRET_KEY_VARIABLE}' is missing or shorter than 16 characters. "
            "It keys the local pseudonyms, batch ids and UID remapping; create it once with: "
            f"airflow variables set {SECRET_KEY_VARIABLE} "
            "\"$(python -c 'import secrets; print(secrets.token_hex(32))')\" "
            "and keep it safe: the same key gives the same pseudonyms."
        )
    return str(value).encode()


def server_settings(folder: InputFolder) -> Settings:
    """Settings of a folder as the API server sees them (dashboard): the environment form of
    ``sendit_settings`` when set, else the Variable in the metadata database, then the
    folder's settings; the same resolver as the tasks, so the dashboard finds the work root
    and ledger the tasks write to. Invalid settings fall back like ``parse_time_settings``."""
    raw = env_variable(SETTINGS_VARIABLE)
    if raw is None:
        try:
            from airflow.models import Variable

            raw = Variable.get(SETTINGS_VARIABLE, default_var=None)
        except Exception as exc:  # no database here: environment and folder settings only
            log.warning("cannot read Variable %s (%s)", SETTINGS_VARIABLE, type(exc).__name__)
    for variable in (raw, None):
        try:
            return resolve_settings(variable, folder)
        except ConfigError:
            continue
    return Settings()
