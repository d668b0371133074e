"""The batches dashboard (sendit's status page), served by Airflow's API server as a plugin
and shown inside the Airflow UI (*Browse → sendit batches*, ``/plugin/sendit-batches``).

``/sendit/`` shows per-DAG totals, a throughput chart, the batches queued or in progress
with their stage, the images held for review (masked thumbnails) and the batches table,
filtered by DAG, state and time window; each batch links to its DAG run and task log in the
UI. ``/sendit/api/…`` returns the same as JSON (``batches``, ``totals``, ``throughput``,
``running``, ``held``). Nothing identifying is shown: batch ids are keyed hashes, reasons
name rules and tags; source folder paths are never read.

``queries`` reads the ledgers, ``view`` renders the HTML, ``app`` holds the routes and the
login redirect; ``static/`` the page's script (times, chart, links) and style sheet.
"""

from sendit_ops.airflow.dashboard.app import api_batches, app
from sendit_ops.airflow.dashboard.queries import batch_counts, batch_rows, held_images

__all__ = ["api_batches", "app", "batch_counts", "batch_rows", "held_images"]
