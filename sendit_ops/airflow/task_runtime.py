"""Building the Pipeline of a running task from its folder, Variables and trigger params."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sendit_ops.airflow.config import task_secret_key, task_settings
from sendit_ops.core.settings import InputFolder
from sendit_ops.pipeline.batch import Pipeline


def pipeline(folder: InputFolder, context: Mapping[str, Any]) -> Pipeline:
    """The Pipeline of the running task (settings resolved and validated, provider chosen)."""
    settings = task_settings(folder, context.get("params"))
    run_id = context["dag_run"].run_id if context.get("dag_run") else ""
    # the chunk a mapped task instance runs (recorded per step: a log link opens its log)
    map_index = getattr(context.get("ti"), "map_index", -1)
    map_index = map_index if isinstance(map_index, int) else -1
    return Pipeline(settings, task_secret_key(), folder.dag_id, run_id=run_id, map_index=map_index)
