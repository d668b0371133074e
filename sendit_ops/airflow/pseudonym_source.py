"""Choosing the pseudonym provider of a task: the local keyed one, or DASHER via its hook."""

from __future__ import annotations

from sendit_ops.core.settings import Settings
from sendit_ops.pseudonyms.providers import PseudonymProvider


def provider_for(settings: Settings) -> PseudonymProvider | None:
    """DASHER's hook when the run uses DASHER; None lets the pipeline use the local provider."""
    if settings.pseudonym_provider != "dasher":
        return None
    from sendit_ops.airflow.dasher_hook import DasherHook
    from sendit_ops.core.ledger import database_url

    # the ledger's named lock serialises token refreshes of every worker using this ledger
    return DasherHook(
        settings.dasher_conn_id, database_url(settings.work_root, settings.ledger_url)
    )
