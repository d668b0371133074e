"""Modules a sendit task needs, for Airflow to import once before it forks task processes.

A task process of Airflow 3 is forked from its executor's worker; whatever the worker has
imported is inherited copy-on-write. Without a preload, every sendit task instance imports
pydicom, deid (which pulls in matplotlib) and the Google client libraries again: about 1.4 s
per task instance on this machine kind, most of a small task's time. Configure::

    [scheduler]
    mp_start_method = forkserver
    mp_forkserver_preload = airflow,airflow.executors.local_executor,sendit_ops.airflow.task_preload

(``AIRFLOW__SCHEDULER__MP_START_METHOD`` / ``AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD``)
for the LocalExecutor, and ``[celery] celery_config_options =
sendit_ops.airflow.celery_config.CELERY_CONFIG`` for Celery workers. See docs/performance.md.

Importing THIS module is the call: Airflow's ``mp_forkserver_preload`` takes module names,
not functions, so the import runs ``sendit_ops.airflow.preload.preload()`` (imports, then
``gc.freeze``). Nothing else in sendit has an effect at import.
"""

from __future__ import annotations

from sendit_ops.airflow.preload import preload

FAILED = preload()
