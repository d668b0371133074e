"""The install path of docs/setup.md ("Into an existing Airflow 3.3 deployment"), run as written.

The fenced ``bash`` blocks marked ``<!-- runnable: install -->`` (the line just above the
block) are run in their order with ``bash -euo pipefail``, from a copy of this checkout, with
the two variables the doc asks the reader to set (``VENV``, ``AIRFLOW_HOME``) pointing into
tmp_path: once into a new environment, once into an existing Airflow 3.3.2 environment. Then
that environment's Python (not this one) loads the DAGs from the Airflow home with a DagBag,
one DAG per configured input folder, and the plugin. Packages come from the registry (uv's
cache makes a repeated run take seconds; a cold cache, a few minutes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.live

SETUP = ROOT / "docs" / "setup.md"
MARK = "runnable: install"
MARK_LINE = re.compile(r"^<!--\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
# not copied from the checkout: what a fresh clone does not have
NOT_IN_A_CLONE = {
    ".git",
    ".venv",
    ".tools",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".demo",
    ".sendit",
    "dist",
    "build",
    "logs",
    ".env",
    ".import_linter_cache",
}
CHECK = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import airflow, sendit_ops
    from airflow import plugins_manager
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers_manager import ProvidersManager

    bag = DagBag()
    plugins, plugin_errors = plugins_manager._get_plugins()
    package = Path(sendit_ops.__file__).parent
    print(json.dumps({
        "airflow": airflow.__version__,
        "sendit_ops": str(package),
        "dag_folder": str(bag.dag_folder),
        "dag_ids": sorted(bag.dag_ids),
        "import_errors": bag.import_errors,
        "plugins": [p.name for p in plugins],
        "plugin_errors": {**plugin_errors, **plugins_manager.get_import_errors()},
        "providers": sorted(ProvidersManager().providers),
        "files": sorted(
            str(p.relative_to(package)) for p in package.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ),
    }))
    """
)


def install_blocks() -> list[str]:
    """The bash blocks of docs/setup.md marked for this test, in order."""
    lines = SETUP.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith(opening.group(1)):
            end += 1
        mark = MARK_LINE.match(lines[i - 1].strip()) if i else None
        if mark and re.sub(r"\s+", " ", mark.group(1)) == MARK:
            assert opening.group(2) == "bash", f"docs/setup.md:{i + 1}: mark a bash block"
            blocks.append("\n".join(lines[i + 1 : end]) + "\n")
        i = end + 1
    return blocks


def uv_dir() -> Path:
    """Where ``uv`` is: the PATH's, else the one ``make install`` puts in .tools/bin."""
    found = shutil.which("uv") or (ROOT / ".tools" / "bin" / "uv")
    assert Path(found).exists(), "no uv: `make install` puts one in .tools/bin"
    return Path(found).parent


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without what the test session sets for its own Airflow."""
    drop = ("AIRFLOW", "SENDIT", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = f"{uv_dir()}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def clone(dest: Path) -> Path:
    """A copy of the checkout as a fresh clone has it (no venv, no build output)."""
    shutil.copytree(
        ROOT,
        dest,
        ignore=lambda _, names: [
            n for n in names if n in NOT_IN_A_CLONE or n.endswith(".egg-info")
        ],
    )
    return dest


def run_documented_install(tmp_path: Path, venv: Path) -> dict:
    """Run the marked blocks as a reader would; load the DAGs with the environment's Python."""
    blocks = install_blocks()
    text = "".join(blocks)
    for needed in ("uv build", "uv export", "--no-hashes", "uv pip install", "cp dags/"):
        assert needed in text, f"the install blocks of docs/setup.md lost `{needed}`"
    for needed in ('airflow" db migrate', "dags list --local"):
        assert needed in text, f"the install blocks of docs/setup.md lost `{needed}`"
    checkout = clone(tmp_path / "sendit")
    airflow_home = tmp_path / "airflow-home"
    folders = [tmp_path / "data" / "ct_1", tmp_path / "data" / "mr_2"]
    for folder in folders:
        folder.mkdir(parents=True)
    # the Variables of step 5, as environment variables (the check lists their DAGs)
    variables = {
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS": json.dumps(
            [{"path": str(folders[0]), "name": "ct"}, {"path": str(folders[1])}]
        ),
        "AIRFLOW_VAR_SENDIT_SETTINGS": json.dumps({"work_root": str(tmp_path / "work")}),
        "SENDIT_HOME": str(tmp_path / "sendit-home"),
    }
    script = tmp_path / "install.sh"
    script.write_text("".join(blocks))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", str(script)],
        cwd=checkout,
        env=clean_env(VENV=str(venv), AIRFLOW_HOME=str(airflow_home), **variables),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, (
        f"the install blocks of docs/setup.md exited {done.returncode}\n--- script\n"
        f"{script.read_text()}--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-5000:]}"
    )
    # the check of step 6: the DAGs of the Variables, listed without a DAG processor
    listed = re.findall(r"^(sendit_\w+)\s*\|", done.stdout, re.MULTILINE)
    assert listed == ["sendit_ct", "sendit_mr_2"], done.stdout[-3000:]
    assert "No data found" not in done.stdout
    elsewhere = tmp_path / "elsewhere"  # not the checkout: sendit_ops must come from the venv
    elsewhere.mkdir()
    check = subprocess.run(
        [str(venv / "bin" / "python"), "-c", CHECK],
        cwd=elsewhere,
        env=clean_env(
            AIRFLOW_HOME=str(airflow_home),
            SENDIT_HOME=str(tmp_path / "sendit-home"),
            AIRFLOW_VAR_SENDIT_INPUT_FOLDERS=json.dumps(
                [{"path": str(folders[0]), "name": "ct"}, {"path": str(folders[1])}]
            ),
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stderr[-5000:]
    result = json.loads(check.stdout.strip().splitlines()[-1])

    assert result["airflow"] == "3.3.2"
    assert Path(result["sendit_ops"]).is_relative_to(venv), result["sendit_ops"]
    assert result["dag_folder"] == str(airflow_home / "dags")
    assert result["import_errors"] == {}
    assert result["dag_ids"] == ["sendit_ct", "sendit_mr_2"]
    assert "sendit_dashboard" in result["plugins"] and result["plugin_errors"] == {}
    assert "sendit-ops" in result["providers"]  # the DASHER connection type
    # every file of the package (modules, recipes, the Annex E table, the dashboard's static
    # files, the DAG bundle) is in the wheel
    source = ROOT / "sendit_ops"
    expected = {
        str(p.relative_to(source))
        for p in source.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert expected - set(result["files"]) == set()
    assert (venv / "bin" / "sendit").exists()
    return result


def test_documented_install_into_a_new_environment(tmp_path):
    venv = tmp_path / "venv"
    assert not venv.exists()
    run_documented_install(tmp_path, venv)


def test_documented_install_into_an_existing_airflow(tmp_path):
    """An Airflow 3.3.2 installed the usual way (its own dependency versions), then sendit."""
    venv = tmp_path / "airflow-venv"
    uv = str(uv_dir() / "uv")
    env = clean_env()
    subprocess.run([uv, "venv", "-q", "--python", "3.11", str(venv)], env=env, check=True)
    python = str(venv / "bin" / "python")
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", python, "apache-airflow==3.3.2"],
        env=env,
        check=True,
        timeout=1200,
    )
    before = (venv / "bin" / "python").resolve()
    run_documented_install(tmp_path, venv)
    assert (venv / "bin" / "python").resolve() == before  # installed into it, not replaced
