"""Reading sendit's Variables inside a task and building the Pipeline of a run."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Variable

from sendit_ops.batch_steps import Pipeline
from sendit_ops.errors import ConfigError
from sendit_ops.settings import (
    SECRET_KEY_VARIABLE,
    SETTINGS_VARIABLE,
    InputFolder,
    Settings,
    load_settings,
    parse_json_setting,
)

log = logging.getLogger("sendit")


def run_settings(folder: InputFolder, params: dict[str, Any] | None) -> Settings:
    """Settings of this run: Variable ``sendit_settings`` < folder settings < trigger params."""
    base = parse_json_setting(Variable.get(SETTINGS_VARIABLE, default=None), SETTINGS_VARIABLE)
    if base is not None and not isinstance(base, dict):
        raise ConfigError(f"Variable '{SETTINGS_VARIABLE}' must be a JSON object")
    overrides: dict[str, Any] = {}
    params = params or {}
    if params.get("provider") in ("local", "dasher"):
        overrides["pseudonym_provider"] = params["provider"]
    if params.get("delivery") == "outbox":
        overrides["send_to_google"] = False
    elif params.get("delivery") == "google":
        overrides["send_to_google"] = True
    return load_settings(base, folder.settings, overrides)


def secret_key() -> bytes:
    """The sendit secret key (Variable ``sendit_secret_key``), required for every run."""
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


def pipeline(folder: InputFolder, context: dict[str, Any]) -> Pipeline:
    """The Pipeline of the running task (settings validated, provider chosen)."""
    settings = run_settings(folder, context.get("params"))
    run_id = context["dag_run"].run_id if context.get("dag_run") else ""
    pipe = Pipeline(settings, secret_key(), folder.dag_id, run_id=run_id)
    return pipe
