"""docker-compose.yaml, .env.example and airflow.cfg.template: structure and consistency
(there is no Docker engine on the build machines; see docs/setup.md)."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.emulator

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
ENV_EXAMPLE = {
    line.split("=", 1)[0]
    for line in (ROOT / ".env.example").read_text().splitlines()
    if line and not line.startswith("#") and "=" in line
}


def test_compose_has_the_celery_stack_and_the_dev_profile():
    services = COMPOSE["services"]
    for name in (
        "postgres",
        "redis",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-worker",
        "airflow-triggerer",
        "airflow-init",
    ):
        assert name in services, name
    for name in ("dasher-dev", "fake-gcs", "bigquery-emulator"):
        assert services[name].get("profiles") == ["dev"], name
    assert "sendit_dasher" in services["airflow-init"]["command"][1]


def test_every_airflow_component_shares_data_work_and_env():
    common = COMPOSE["x-airflow-common"]
    mounts = {re.search(r":(/[^:]+)(?::ro)?$", m).group(1): m for m in common["volumes"]}
    assert mounts["/data"].endswith(":ro")  # sources are never modified
    assert "/work" in mounts and "/opt/airflow/dags" in mounts and "/opt/airflow/plugins" in mounts
    assert common["env_file"] == ".env"
    for name in ("airflow-scheduler", "airflow-worker", "airflow-triggerer"):
        service = COMPOSE["services"][name]
        assert service["volumes"] == common["volumes"] and service["env_file"] == ".env"


def test_variables_used_by_compose_are_in_env_example_and_documented():
    text = (ROOT / "docker-compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    assert used <= ENV_EXAMPLE, used - ENV_EXAMPLE
    docs = (ROOT / "docs" / "setup.md").read_text()
    for name in ENV_EXAMPLE:
        assert name in docs, f"{name} is not explained in docs/setup.md"
    secrets = {
        "AIRFLOW_VAR_SENDIT_SECRET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__CORE__FERNET_KEY",
    }
    for line in (ROOT / ".env.example").read_text().splitlines():
        name, _, value = line.partition("=")
        if name in secrets:
            assert value == "", f"{name} must not carry a value in git"
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_airflow_cfg_template_sets_what_sendit_relies_on():
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "airflow.cfg.template")
    assert cfg["core"]["executor"] == "CeleryExecutor"
    assert cfg["core"]["hide_sensitive_var_conn_fields"] == "True"
    assert "sendit_secret_key" in cfg["core"]["sensitive_var_conn_names"]
    assert "SimpleAuthManager" in cfg["core"]["auth_manager"]
    assert int(cfg["celery_broker_transport_options"]["visibility_timeout"]) >= 3600


def test_airflow_cfg_template_has_the_fast_task_start_the_live_tests_run_with():
    """The live tests and the bench run with TASK_START_SETTINGS; the shipped config must say
    the same, and the modules it names must import."""
    import importlib

    from devtools.airflow_stack import SHIPPED_PARSE_INTERVAL, TASK_START_SETTINGS

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "airflow.cfg.template")
    assert int(cfg["dag_processor"]["min_file_process_interval"]) == SHIPPED_PARSE_INTERVAL
    for env, value in TASK_START_SETTINGS.items():
        _, section, key = env.split("__", 2)
        assert cfg[section.lower()][key.lower()] == value, env
    for module in cfg["scheduler"]["mp_forkserver_preload"].split(","):
        importlib.import_module(module)
    code = (
        "import sys; from sendit_ops.airflow.celery_config import CELERY_CONFIG as c; "
        "assert c['broker_url']; assert 'deid.dicom' in sys.modules, 'no preload'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    # what the preload imported is frozen: task processes forked from it skip it in every
    # full garbage collection
    code = "import gc, sendit_ops.airflow.task_preload; assert gc.get_freeze_count() > 100_000"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dashboard_plugin_is_built_only_in_the_api_server():
    """Every task process imports the plugins folder: there the plugin must stay cheap (no
    FastAPI app); in the API server it mounts the dashboard."""
    load = (
        "import importlib.util, sys; "
        "spec = importlib.util.spec_from_file_location('p', 'plugins/sendit_dashboard.py'); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
    )
    task = (
        load
        + "assert m.SenditDashboardPlugin.fastapi_apps == []; assert 'fastapi' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", task], check=True, cwd=ROOT)
    server = (
        "import airflow.api_fastapi.app; "
        + load
        + "assert m.SenditDashboardPlugin.fastapi_apps[0]['url_prefix'] == '/sendit'"
    )
    subprocess.run([sys.executable, "-c", server], check=True, cwd=ROOT)
