"""Shared fixtures. Airflow's environment is set here, before anything imports airflow."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest_plugins = [
    "dasher_fixture",  # the `dasher` fixture: the dev server as a process
    "orthanc",  # `pacs`, `make_pacs`: Debian's Orthanc loaded with studies (a real PACS)
]

ROOT = Path(__file__).resolve().parents[1]
_SESSION = Path(tempfile.mkdtemp(prefix="sendit-tests-"))
os.environ["SENDIT_HOME"] = str(_SESSION / "home")
os.environ["AIRFLOW_HOME"] = str(_SESSION / "airflow")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW_VAR_SENDIT_SECRET_KEY"] = "test-secret-key-0123456789abcdef"
os.environ.pop("AIRFLOW_VAR_SENDIT_SETTINGS", None)
os.environ.pop("AIRFLOW_VAR_SENDIT_INPUT_FOLDERS", None)

SECRET = os.environ["AIRFLOW_VAR_SENDIT_SECRET_KEY"].encode()


def _pydicom_test_files_offline() -> None:
    """pydicom's get_testdata_files also tries to download the test files that neither
    pydicom nor pydicom-data ships; with no internet here every call waited ~15 s for
    timeouts (most of `pytest -m unit`'s time, at collection). The tests use the installed
    files only: the same list, without the wait."""
    import pydicom.data.data_manager as data_manager

    data_manager.online_test_file_dummy_paths = dict


_pydicom_test_files_offline()

# Test tiers: every test has exactly one (its module's ``pytestmark``, or its own mark).
#   unit      no service, no Airflow run: `pytest -m unit` is the inner loop (< 1 min)
#   emulator  starts a real service (PostgreSQL, fake-gcs, crucible, the DASHER dev server,
#             dciodvfy), or puts whole studies through the pipeline or OCR
#   live      runs Airflow itself (dag.test, or api-server + scheduler + workers)
# `make test` runs all three.
TIERS = {
    "unit": "no service, no Airflow run; the fast inner loop",
    "emulator": "starts a real service (database, emulator, DASHER dev server), or puts "
    "whole studies through the pipeline or OCR",
    "live": "runs Airflow (dag.test or a whole stack)",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, what in TIERS.items():
        config.addinivalue_line("markers", f"{name}: {what}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test without a tier, or with two, is an error: not a test that `-m unit` silently
    leaves out. (A module with tests of several tiers marks them one by one.)"""
    wrong = []
    for item in items:
        tiers = {m.name for m in item.iter_markers() if m.name in TIERS}
        if len(tiers) != 1:
            wrong.append(f"{item.nodeid} ({', '.join(sorted(tiers)) or 'none'})")
    if wrong:
        raise pytest.UsageError(
            "every test needs exactly one tier mark, unit, emulator or live "
            "(tests/conftest.py): " + "; ".join(wrong[:10])
        )


PHI_STRINGS = (
    "DOE",
    "JANE",
    "ROE",
    "RICHARD",
    "SMITH",
    "ALEXANDRA",
    "MRN-100234",
    "MRN100234",
    "MRN-200871",
    "MRN-300415",
    "ACC1000",
    "19710304",
    "19580712",
    "19900228",
    "20240115",
    "20240116",
    "20240301",
    "HOUSE",
    "GREGORY",
    "Springfield",
)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB for dag.test() (once per session)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True
    )
    return home


@pytest.fixture
def demo_input(tmp_path: Path) -> Path:
    """The demo input folder (every kind of batch)."""
    from sendit_ops.sample_data import make_demo_input

    make_demo_input(tmp_path / "input")
    return tmp_path / "input"


@pytest.fixture
def make_pipeline(tmp_path: Path):
    """Build a Pipeline over a work root and outbox in tmp_path (no Airflow)."""
    from sendit_ops.core.settings import load_settings
    from sendit_ops.pipeline.batch import Pipeline

    def make(run_id: str = "run1", **overrides):
        settings = load_settings(
            {"work_root": str(tmp_path / "work"), "outbox": str(tmp_path / "outbox"), **overrides}
        )
        return Pipeline(settings, SECRET, "sendit_test", run_id=run_id)

    return make


def wait_for(predicate, timeout: float, step: float = 1.0):
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` s pass
    (None): for what a live stack does in its own time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


def run_in_process(pipe, input_dir: Path, *, reprocess: bool = False, requested=None):
    """One whole run over an input folder through the runner the DAG's tasks use
    (sendit_ops.pipeline.run.run_folder: lock, steps, finalize, deliver, report), delivering
    to the outbox. Records by batch folder name."""
    from sendit_ops.delivery.outbox import OutboxTarget
    from sendit_ops.pipeline.run import RunRequest, run_folder

    request = RunRequest(batches=tuple(requested or ()), reprocess=reprocess)
    target = lambda: OutboxTarget.from_settings(pipe.settings)  # noqa: E731
    return run_folder(pipe, input_dir, target, request).records
