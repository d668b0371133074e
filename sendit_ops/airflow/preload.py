"""Preloading a sendit task's modules in a process that forks task processes (``preload``).

Called by ``sendit_ops.airflow.task_preload`` (the module Airflow's forkserver preload names)
and by the Celery configuration; importing this module does nothing.
"""

from __future__ import annotations

import gc
import importlib
import logging

from sendit_ops import quiet_known_deprecations

log = logging.getLogger("sendit")

MODULES = (
    # what the Task SDK imports in each executor worker (the supervisor) and task process
    "airflow.sdk.execution_time.task_runner",
    "airflow.sdk.execution_time.supervisor",
    "airflow.dag_processing.dagbag",
    "airflow.serialization.serialized_objects",
    "airflow.models.dagrun",
    "airflow.sdk.definitions.timetables.interval",
    # sendit's task code (pydicom, deid with matplotlib, the Google hooks when delivering)
    "sendit_ops.pipeline.batch",
    "sendit_ops.airflow.tasks",
    "sendit_ops.airflow.task_runtime",
    "sendit_ops.airflow.pseudonym_source",
    "sendit_ops.airflow.dasher_hook",
    "sendit_ops.airflow.google_target",
    "sendit_ops.airflow.dag_factory",
    # the OCR engine's code (rapidocr, ONNX Runtime, its model classes): ~1.4 s to import,
    # paid by the first image of every task otherwise, now that every image is screened
    # (the engines themselves are made in the task: ONNX Runtime's threads do not survive
    # a fork)
    "rapidocr.main",
)


def preload() -> list[str]:
    """Import every module a sendit task uses, then move what is loaded out of the garbage
    collector's reach (``gc.freeze``); return the modules that could not be imported.

    The freeze is inherited by every process forked from this one: a task process no longer
    scans the ~250,000 objects of Airflow, pydicom and deid in each full collection (0.18 s
    each on this machine kind), and the shared pages stay shared (copy-on-write)."""
    quiet_known_deprecations()
    failed = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a preload must never stop the scheduler
            log.warning("sendit preload: %s not imported (%s)", name, type(exc).__name__)
            failed.append(name)
    gc.collect()
    gc.freeze()
    return failed
