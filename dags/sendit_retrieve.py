"""sendit Airflow DAGs: one retrieve DAG per PACS listed in the Variable ``sendit_pacs_sources``.

(Airflow's DAG processor only parses files that mention both "airflow" and "dag".)
"""

from sendit_ops.airflow.retrieve_dag import build_retrieve_dags

globals().update(build_retrieve_dags())
