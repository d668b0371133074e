"""Airflow plugin: sendit's batches dashboard at /sendit/ on the API server.

Airflow imports every plugin module in every process that loads plugins, including each
task process (for listeners). Building the dashboard imports FastAPI and the API server's
security module, ~1.2 s of a task's start-up on this machine kind, so the app is built only
in the API server (where ``airflow.api_fastapi.app`` is already imported when plugins load).
"""

import sys

from airflow.plugins_manager import AirflowPlugin


def _fastapi_apps() -> list[dict]:
    if "airflow.api_fastapi.app" not in sys.modules:
        return []  # not the API server: nothing to serve, nothing to import
    from sendit_ops.airflow.dashboard import app

    return [{"app": app, "url_prefix": "/sendit", "name": "sendit batches"}]


class SenditDashboardPlugin(AirflowPlugin):
    """Mounts the dashboard and links it from the UI's Browse menu."""

    name = "sendit_dashboard"
    fastapi_apps = _fastapi_apps()
    external_views = [
        {"name": "sendit batches", "href": "/sendit/", "destination": "nav", "category": "browse"}
    ]
