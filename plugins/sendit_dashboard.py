"""Airflow plugin: sendit's batches dashboard, served at /sendit/ by the API server and shown
inside the Airflow UI under *Browse → sendit batches* (``/plugin/sendit-batches``).

The menu entry is an external view with a ``url_route``: Airflow 3 then renders ``href`` in
a frame inside its own UI (navigation, dark mode, login all Airflow's) and keeps the UI's
address in step with the frame's (``/plugin/sendit-batches/sendit/?state=ERROR`` opens
that filtered view). Without ``url_route`` the entry would only open the page in a new tab.

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
    """Mounts the dashboard and shows it in the UI's Browse menu."""

    name = "sendit_dashboard"
    fastapi_apps = _fastapi_apps()
    external_views = [
        {
            "name": "sendit batches",
            "href": "/sendit/",
            "destination": "nav",
            "category": "browse",
            "url_route": "sendit-batches",
        }
    ]
