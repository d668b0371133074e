"""sendit Airflow DAGs: one DAG per input folder listed in the Variable ``sendit_input_folders``.

(Airflow's DAG processor only parses files that mention both "airflow" and "dag".)
"""

from sendit_ops.airflow.dag_factory import build_all_dags

globals().update(build_all_dags())
