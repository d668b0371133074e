"""Celery configuration for sendit's workers: Airflow's defaults, plus the task preload.

Set ``[celery] celery_config_options = sendit_ops.airflow.celery_config.CELERY_CONFIG``. A Celery
worker imports this module before it forks its pool, so each task process it starts inherits
pydicom, deid and the Task SDK modules instead of importing them again (see
``sendit_ops.airflow.preload``).
"""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

from sendit_ops.airflow.preload import preload

preload()  # before the worker forks its pool (this module is read by the worker only)
CELERY_CONFIG = dict(DEFAULT_CELERY_CONFIG)
