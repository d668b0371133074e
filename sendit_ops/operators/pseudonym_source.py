"""Choosing the pseudonym provider of a task: the local keyed one, or DASHER via its hook."""

from __future__ import annotations

from typing import Any

from sendit_ops.operators.runtime import run_settings
from sendit_ops.pseudonyms import PseudonymProvider
from sendit_ops.settings import InputFolder


def provider_for(context: dict[str, Any], folder: InputFolder) -> PseudonymProvider | None:
    """DASHER's hook when the run uses DASHER; None lets the pipeline use the local provider."""
    settings = run_settings(folder, context.get("params"))
    if settings.pseudonym_provider != "dasher":
        return None
    from sendit_ops.hooks.dasher_hook import DasherHook

    return DasherHook(settings.dasher_conn_id)
