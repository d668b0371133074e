"""The layers of docs/architecture.md are enforced, not claimed: `make lint` runs import-linter
with the contracts of pyproject.toml, and these tests prove the contracts hold on the code and
catch a violation planted in a copy of it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.unit


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=project,
        env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "pyproject.toml", project)
    shutil.copytree(
        ROOT / "sendit_ops", project / "sendit_ops", ignore=shutil.ignore_patterns("__pycache__")
    )
    return project


def test_the_code_keeps_its_contracts() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # the core reaching for Airflow (e.g. to read a Variable)
        ("sendit_ops/core/settings.py", "import airflow.sdk", "the domain core imports no Airflow"),
        # DICOM code reaching up into the Airflow layer, which imports Airflow transitively
        ("sendit_ops/dicom/filters.py", "import sendit_ops.airflow.dag_factory", "layers"),
        # the ledger (core) reaching up into the pipeline
        ("sendit_ops/core/ledger/records.py", "import sendit_ops.pipeline.batch", "layers"),
        # the core classifying a vendor's exceptions itself (the adapters' job)
        ("sendit_ops/core/errors.py", "import requests", "no vendor library"),
    ],
)
def test_a_planted_violation_is_caught(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    project = copy_project(tmp_path)
    assert lint_imports(project).returncode == 0  # the copy is clean
    target = project / module
    target.write_text(target.read_text() + f"\n{line}  # planted by the test\n")
    result = lint_imports(project)
    assert result.returncode != 0, result.stdout
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(contract in ln for ln in broken), result.stdout


CORE_MAY_IMPORT = {"sqlalchemy", "alembic"}  # besides the standard library


def test_the_core_imports_only_its_allowed_list() -> None:
    """docs/architecture.md: core/ imports the standard library, SQLAlchemy and Alembic."""
    import grimp

    graph = grimp.build_graph("sendit_ops", include_external_packages=True)
    core = {m for m in graph.modules if m.startswith("sendit_ops.core")}
    external = {
        imported.split(".")[0]
        for module in core
        for imported in graph.find_modules_directly_imported_by(module)
        if not imported.startswith("sendit_ops")
    }
    assert external - sys.stdlib_module_names == CORE_MAY_IMPORT


def test_importing_the_package_changes_nothing() -> None:
    """No side effect at import: warning and log filters, fork hooks and the GC freeze are
    explicit calls of the entry points (sendit's main, the DAG factory, the task preload)."""
    code = (
        "import gc, logging, os, warnings\n"
        "filters = list(warnings.filters)\n"
        "import sendit_ops, sendit_ops.core.ledger, sendit_ops.airflow.dag_factory\n"
        "assert warnings.filters == filters, 'warning filters changed'\n"
        "assert not logging.getLogger('pydicom').filters, 'log filter added'\n"
        "assert gc.get_freeze_count() == 0, 'gc frozen'\n"
        "from sendit_ops.core.ledger import database\n"
        "assert not database._FORK_HOOK, 'fork hook registered'\n"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "AIRFLOW_HOME": "/tmp/none"}
    out = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-1500:]
