"""The shell commands of docs/pacs.md, run verbatim against a live Airflow and a real PACS
(Debian's Orthanc), as tests/test_docs_commands.py runs those of the other docs: connections,
the sources Variable and the pool, a REST request, the dashboard's PACS JSON, the receiver
with dcmtk's storescu."""

from __future__ import annotations

import json
import os
import secrets
import time

import pytest
from conftest import ROOT
from test_docs_commands import LIVE, SHELL_LANGUAGES, DocShell, code_blocks

from devtools.airflow_stack import AirflowStack, create_database
from devtools.orthanc_server import free_port
from sendit_ops.delivery import outbox as box
from sendit_ops.sample_data import PATIENTS, write_study

DOC = ROOT / "docs" / "pacs.md"


@pytest.mark.unit
def test_every_shell_block_of_the_pacs_doc_is_run_or_says_why_not():
    blocks = code_blocks(DOC)
    assert not [str(b) for b in blocks if not b.language]
    shell = [b for b in blocks if b.language in SHELL_LANGUAGES]
    for block in shell:
        assert block.language == "bash", str(block)
        assert block.mark == LIVE or (block.mark or "").startswith("not-runnable:"), str(block)
    assert len([b for b in shell if b.mark == LIVE]) >= 5


@pytest.mark.live
@pytest.mark.timeout(1800)
def test_pacs_doc_commands(make_pacs, tmp_path):
    pacs = make_pacs()
    pacs.load(tmp_path / "corpus", 3, first=1, prefix="ACC8")  # ACC80001..ACC80003
    study = tmp_path / "study"
    write_study(study, PATIENTS[1], "ACC80009", "20240301", "CT", 1, 4)
    root = tmp_path / "site"
    for name in ("incoming", "received"):
        (root / name).mkdir(parents=True)
    env = {
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS": json.dumps(
            [
                {"path": str(root / "incoming"), "name": "from_pacs"},
                {"path": str(root / "received"), "name": "received"},
            ]
        ),
        "AIRFLOW_VAR_SENDIT_SETTINGS": json.dumps(
            {"work_root": str(root / "work"), "outbox": str(root / "outbox")}
        ),
        "AIRFLOW_VAR_SENDIT_SECRET_KEY": os.environ["AIRFLOW_VAR_SENDIT_SECRET_KEY"],
        "SENDIT_HOME": str(root / "home"),
    }
    env.pop("AIRFLOW_VAR_SENDIT_PACS_SOURCES", None)
    db = create_database(f"sendit_docs_pacs_{secrets.token_hex(4)}", migrated=True)
    stack = AirflowStack(root / "airflow", ROOT / "dags", db, env=env).start()
    try:
        stack.wait_dag("sendit_from_pacs")
        shell = DocShell(
            tmp_path / "shell",
            {
                **{k: v for k, v in stack.env.items() if k != "AIRFLOW_VAR_SENDIT_PACS_SOURCES"},
                "AIRFLOW_URL": stack.url,
                "AIRFLOW_USER": "admin",
                "AIRFLOW_PASSWORD": stack.password,
                "PACS_HOST": "127.0.0.1",
                "PACS_PORT": str(pacs.orthanc.dicom_port),
                "PACS_AE": pacs.orthanc.aet,
                "DICOMWEB_URL": pacs.orthanc.dicomweb_url,
                "RECEIVED": str(root / "received"),
                "RECEIVER_PORT": str(free_port()),
                "STUDY_DIR": str(study),
            },
        )
        for block in [b for b in code_blocks(DOC) if b.mark == LIVE]:
            shell.run(block)
        out = shell.stdout
        summary = json.loads(shell.output_of("summarize/xcomEntries").strip().splitlines()[-1])
        assert summary["states"] == {"RETRIEVED": 3}
        assert summary["items"] == {"FOUND": 3, "NOT_FOUND": 1} and summary["images"] == 18
        assert 'radiology {"RETRIEVED": 3} {"FOUND": 3, "NOT_FOUND": 1}' in out
        for acc in ("ACC80001", "ACC80002", "ACC80003"):
            assert acc not in shell.output_of("summarize/xcomEntries")
        # the receiver: one closed study folder, the intruder rejected
        received = [p for p in (root / "received").iterdir()]
        assert len(received) == 1 and not received[0].name.endswith(".tmp")
        assert len(list(received[0].iterdir())) == 4
        # hand_on started the folder's DAG: the three studies are delivered
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            runs = stack.runs("sendit_from_pacs")
            if runs and runs[-1]["state"] in ("success", "failed"):
                break
            time.sleep(3)
        assert runs and runs[-1]["state"] == "success", runs
        assert len(box.read_rows(box.table_path(root / "outbox", "DEMO", "dicom"))) == 3
        conn = stack.api("GET", "/api/v2/connections/pacs_radiology").json()
        assert conn["conn_type"] == "dicom_pacs" and conn["schema"] == pacs.orthanc.aet
        assert stack.api("GET", "/api/v2/pools/sendit_pacs_radiology").json()["slots"] == 2
    finally:
        stack.stop()
