"""Airflow plugin: sendit's batches dashboard at /sendit/ on the API server."""

from airflow.plugins_manager import AirflowPlugin

from sendit_ops.dashboard import app


class SenditDashboardPlugin(AirflowPlugin):
    """Mounts the dashboard and links it from the UI's Browse menu."""

    name = "sendit_dashboard"
    fastapi_apps = [{"app": app, "url_prefix": "/sendit", "name": "sendit batches"}]
    external_views = [
        {"name": "sendit batches", "href": "/sendit/", "destination": "nav", "category": "browse"}
    ]
