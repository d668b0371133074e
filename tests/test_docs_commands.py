"""The shell commands of docs/operations.md, docs/dasher.md and docs/storage.md, run verbatim.

A fenced ``bash`` block preceded by the line ``<!-- runnable: live -->`` is run as it stands,
with ``bash -euo pipefail``, against a live Airflow (api-server, scheduler, dag-processor,
triggerer on PostgreSQL) and the DASHER dev server. The blocks of one doc run in order and
share their variables, as in a reader's shell (each block's exported state is sourced by the
next). The environment each doc documents at its top (``AIRFLOW_URL``, ``DASHER_URL``, ...) is
exported first. A shell block that cannot run here must say why in a
``<!-- not-runnable: <reason> -->`` line, so that no new command escapes the test; other kinds
of marks (``<!-- runnable: install -->`` of docs/setup.md) belong to other tests.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import ROOT, wait_for

from devtools.airflow_stack import AirflowStack, create_database
from sendit_ops.core.report import safe_name
from sendit_ops.delivery import outbox as box
from sendit_ops.sample_data import PATIENTS, write_study

pytestmark = pytest.mark.live

DOCS = {name: ROOT / "docs" / name for name in ("operations.md", "dasher.md", "storage.md")}
SHELL_LANGUAGES = {"bash", "sh", "shell", "console", "zsh"}
LIVE = "runnable: live"
MARK = re.compile(r"^<!--\s*(runnable:\s*\S+|not-runnable:.*?)\s*-->\s*$")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")  # indented ones too (in lists)
BLOCK_TIMEOUT = 600


@dataclass(frozen=True)
class Block:
    """A fenced code block of a doc."""

    doc: str
    line: int  # 1-based line of the opening fence
    language: str
    mark: str | None  # the marking comment on the line just above, without <!-- -->
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def code_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the marking comment just above it."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, language = opening.group(1), opening.group(2).lower()
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        end = i + 1
        while end < len(lines) and not lines[end].lstrip().startswith(fence):
            end += 1
        above = MARK.match(lines[i - 1].strip()) if i else None
        blocks.append(
            Block(
                path.name,
                i + 1,
                language,
                re.sub(r"\s+", " ", above.group(1)) if above else None,
                "\n".join(line.removeprefix(indent) for line in lines[i + 1 : end]) + "\n",
            )
        )
        i = end + 1
    return blocks


def live_blocks(doc: str) -> list[Block]:
    return [b for b in code_blocks(DOCS[doc]) if b.mark == LIVE]


class DocShell:
    """One reader's shell: blocks run one by one, each sees the variables of the earlier ones."""

    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.state = workdir / "state.sh"
        self.outputs: list[tuple[Block, subprocess.CompletedProcess]] = []

    def run(self, block: Block) -> subprocess.CompletedProcess:
        script = self.workdir / f"block-{len(self.outputs) + 1}-line{block.line}.sh"
        script.write_text(
            # every assignment is exported, and kept for the next block
            f'set -a\nif [ -f "{self.state}" ]; then . "{self.state}"; fi\n'
            f"{block.text}\n"
            f'export -p > "{self.state}.new" && mv "{self.state}.new" "{self.state}"\n'
        )
        started = time.monotonic()
        done = subprocess.run(
            ["bash", "-euo", "pipefail", str(script)],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
        )
        self.outputs.append((block, done))
        assert done.returncode == 0, (
            f"{block} exited {done.returncode} after {time.monotonic() - started:.0f} s\n"
            f"--- block\n{block.text}--- stdout\n{done.stdout[-4000:]}\n"
            f"--- stderr\n{done.stderr[-4000:]}"
        )
        return done

    def var(self, name: str) -> str:
        """A variable as the reader's shell holds it now."""
        return subprocess.run(
            ["bash", "-c", f'. "{self.state}"; printf %s "${{{name}:-}}"'],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def output_of(self, command: str) -> str:
        """The stdout of the one block that ran a command."""
        (done,) = [done for block, done in self.outputs if command in block.text]
        return done.stdout

    @property
    def stdout(self) -> str:
        return "".join(done.stdout for _, done in self.outputs)


# -- every shell block is marked ----------------------------------------------------------


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_every_shell_block_is_run_or_says_why_not(doc):
    blocks = code_blocks(DOCS[doc])
    unlabeled = [str(b) for b in blocks if not b.language]
    assert not unlabeled, f"fenced blocks without a language (say bash, json, ...): {unlabeled}"
    shell = [b for b in blocks if b.language in SHELL_LANGUAGES]
    assert shell, f"{doc} has no shell block"
    for block in shell:
        assert block.language == "bash", f"{block}: write shell blocks as ```bash"
        assert block.mark == LIVE or (
            block.mark
            and block.mark.startswith("not-runnable:")
            and block.mark.partition(":")[2].strip()
        ), (
            f"{block}: put '<!-- {LIVE} -->' (run by this test) or "
            "'<!-- not-runnable: <reason> -->' on the line just above the block"
        )
    # a marking comment always sits right above the block it marks
    lines = DOCS[doc].read_text().splitlines()
    marked_lines = {b.line - 1 for b in blocks if b.mark}
    stray = [n + 1 for n, line in enumerate(lines) if MARK.match(line.strip())]
    assert set(stray) <= marked_lines, f"{doc}: marks not right above a block: {stray}"
    assert live_blocks(doc), f"{doc} has no {LIVE} block"


def test_the_block_parser_sees_marks_and_languages(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "text\n<!-- runnable: live -->\n```bash\necho a\n```\n\n"
        "<!-- not-runnable: needs Docker -->\n```bash\ndocker compose up\n```\n"
        "```json\n{}\n```\n<!-- runnable: install -->\n```bash\npip install x\n```\n"
        "1. a step\n   ```bash\n   echo indented\n   ```\n"
    )
    blocks = code_blocks(doc)
    assert [(b.language, b.mark, b.text) for b in blocks] == [
        ("bash", LIVE, "echo a\n"),
        ("bash", "not-runnable: needs Docker", "docker compose up\n"),
        ("json", None, "{}\n"),
        ("bash", "runnable: install", "pip install x\n"),
        ("bash", None, "echo indented\n"),
    ]


# -- the live stack the docs describe ------------------------------------------------------


def stamp(folder: Path, when: datetime) -> None:
    ts = when.timestamp()
    for p in [*folder.rglob("*"), folder]:
        os.utime(p, (ts, ts))


@pytest.fixture(scope="module")
def docs_stack(tmp_path_factory):
    """The input folders the docs name: /data/1_0 (no schedule), nightly (@daily), and one
    folder whose pseudonyms come from DASHER (through the pool of docs/dasher.md)."""
    root = tmp_path_factory.mktemp("docs-live")
    data = root / "data"
    write_study(data / "1_0" / "ACC40001", PATIENTS[0], "ACC40001", "20240115", "CT", 1, 2)
    write_study(data / "1_0" / "ACC40002", PATIENTS[1], "ACC40002", "20240116", "MR", 1, 2)
    # finished on 2024-03-03: the backfill's run for that day, and only that one, takes it
    write_study(data / "nightly" / "ACC40003", PATIENTS[2], "ACC40003", "20240303", "CT", 1, 2)
    stamp(data / "nightly" / "ACC40003", datetime(2024, 3, 3, 12, 0, tzinfo=UTC))
    write_study(data / "dasher" / "ACC40004", PATIENTS[0], "ACC40004", "20240304", "CT", 1, 2)
    folders = [
        str(data / "1_0"),
        {
            "path": str(data / "nightly"),
            "name": "nightly",
            "schedule": "@daily",
            "settings": {"google_storage_collection": "NIGHTLY"},
        },
        {
            "path": str(data / "dasher"),
            "name": "dasher_check",
            "settings": {
                "google_storage_collection": "DASHERCHECK",
                "pseudonym_provider": "dasher",
                "dasher_pool": "sendit_dasher",
            },
        },
    ]
    env = {
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS": json.dumps(folders),
        "AIRFLOW_VAR_SENDIT_SETTINGS": json.dumps(
            {"work_root": str(root / "work"), "outbox": str(root / "outbox")}
        ),
        "AIRFLOW_VAR_SENDIT_SECRET_KEY": os.environ["AIRFLOW_VAR_SENDIT_SECRET_KEY"],
        "SENDIT_HOME": str(root / "home"),
    }
    db = create_database(f"sendit_docs_{secrets.token_hex(4)}", migrated=True)
    stack = AirflowStack(root / "airflow", ROOT / "dags", db, env=env).start()
    try:
        for dag_id in ("sendit_1_0", "sendit_nightly", "sendit_dasher_check"):
            stack.wait_dag(dag_id)
        yield stack, root
    finally:
        stack.stop()


@pytest.mark.timeout(2400)
def test_operations_commands(docs_stack, tmp_path):
    stack, root = docs_stack
    shell = DocShell(
        tmp_path / "shell",
        {
            **stack.env,
            "AIRFLOW_URL": stack.url,
            "AIRFLOW_USER": "admin",
            "AIRFLOW_PASSWORD": stack.password,
        },
    )
    blocks = live_blocks("operations.md")
    for block in blocks:
        shell.run(block)
    out = shell.stdout
    assert shell.var("TOKEN") and shell.var("H") == f"Authorization: Bearer {shell.var('TOKEN')}"

    # the backfill: a dry run lists the 7 days, the real one runs them, the listing shows them
    week = [f"2024-03-0{n}" for n in range(1, 8)]
    dry = shell.output_of("--dry-run")  # its table of "Runs to be attempted"
    assert re.findall(r"^\| (2024-03-\d\d) 00:00:00\+00:00 ", dry, re.MULTILINE) == week, dry
    days = re.findall(r"^(2024-03-0\d)T00:00:00Z (\w+)$", out, re.MULTILINE)
    assert [d for d, _ in days] == week, out[-3000:]
    assert {state for _, state in days} == {"success"}, days
    nightly = box.table_path(root / "outbox", "NIGHTLY", "dicom")
    assert len(box.read_rows(nightly)) == 1  # only the batch finished on 2024-03-03

    # the REST run: its id kept in $RUN, waited for, summarised, listed
    run_id = shell.var("RUN")
    assert run_id.startswith("manual__"), run_id
    assert re.search(r"^success$", out, re.MULTILINE), out[-3000:]
    assert stack.wait_run("sendit_1_0", run_id) == "success"
    rest = shell.output_of("xcomEntries").splitlines()
    summary = json.loads(next(line for line in rest if line.startswith('{"key"')))
    assert summary["value"]["states"] == {"DONE": 2} and summary["value"]["errors"] == []
    assert re.search(rf"^{re.escape(run_id)} success manual$", out, re.MULTILINE), out[-3000:]
    assert len(box.read_rows(box.table_path(root / "outbox", "DEMO", "dicom"))) == 2
    # the numbers of that run: each batch's steps record the chunk (map index) that ran them,
    # its processing time is its steps' own times, the run's wall time is apart and longer
    report = json.loads(
        (root / "work" / "sendit_1_0" / "runs" / safe_name(run_id) / "summary.json").read_text()
    )
    lines = report["batch_lines"]
    assert len(lines) == 2
    for line in lines:
        assert set(line["map_index"]) == {"filter", "pseudonymize", "anonymize", "package"}
        assert all(isinstance(i, int) and i >= 0 for i in line["map_index"].values())
        assert line["seconds"] == pytest.approx(sum(line["step_seconds"].values()), abs=0.01)
        assert 0 < line["seconds"] < line["span_seconds"]  # tasks start seconds apart
    assert report["wall_seconds"] > max(line["span_seconds"] for line in lines)
    assert report["mb_per_min"] == pytest.approx(  # rounded to 2 decimals
        report["size_mb"] / (report["wall_seconds"] / 60), abs=0.006
    )

    # the reprocessing backfill (the last block) reruns the same 7 days, delivering nothing twice
    def backfills_done():
        listed = stack.api("GET", "/api/v2/backfills", params={"dag_id": "sendit_nightly"})
        body = listed.json()
        return body if all(b.get("completed_at") for b in body["backfills"]) else None

    backfills = wait_for(backfills_done, timeout=900, step=3)
    assert backfills and backfills["total_entries"] == 2, backfills
    # as the page says: each backfill ran its runs one at a time
    assert [b["max_active_runs"] for b in backfills["backfills"]] == [1, 1], backfills
    runs = [r for r in stack.runs("sendit_nightly") if r["run_type"] == "backfill"]
    assert len(runs) == 7 and all(r["state"] == "success" for r in runs), runs
    assert all(r["conf"].get("reprocess") is True for r in runs)
    ordered = sorted(runs, key=lambda r: r["start_date"])
    assert all(  # one after the other (ISO 8601 UTC times of one format compare as text)
        later["start_date"] >= earlier["end_date"] for earlier, later in pairwise(ordered)
    ), [(r["logical_date"], r["start_date"], r["end_date"]) for r in ordered]
    third = next(r for r in runs if r["logical_date"].startswith("2024-03-03"))
    assert stack.xcom("sendit_nightly", third["dag_run_id"], "report")["states"] == {"DONE": 1}
    assert len(box.read_rows(nightly)) == 1

    # what the page says of a folder without a schedule
    unscheduled = (
        "airflow backfill create --dag-id sendit_1_0 --from-date 2024-03-01 --to-date 2024-03-07"
    )
    refused = subprocess.run(
        ["bash", "-c", unscheduled],
        env=shell.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0
    assert "DagNonPeriodicScheduleException" in refused.stdout + refused.stderr


@pytest.mark.timeout(1200)
def test_dasher_commands(docs_stack, dasher, tmp_path):
    stack, _ = docs_stack
    creds = dasher.creds()
    stanford = tmp_path / ".stanford"  # sendit's file has no base_url: --base-url gives it
    stanford.write_text(json.dumps({k: v for k, v in creds.items() if k != "base_url"}))
    shell = DocShell(
        tmp_path / "shell",
        {
            **stack.env,
            "DASHER_URL": dasher.url,
            "ACCESS_TOKEN": creds["accessToken"],
            "REFRESH_TOKEN": creds["refreshToken"],
            "TOKEN_URI": creds["token_uri"],
            "STANFORD_FILE": str(stanford),
        },
    )

    def stored() -> dict:
        response = stack.api("GET", "/api/v2/connections/dasher_default")
        assert response.status_code == 200, response.text
        return response.json()

    for block in live_blocks("dasher.md"):
        done = shell.run(block)
        text = block.text
        if "--conn-type dasher" in text:
            conn = stored()
            assert conn["conn_type"] == "dasher" and conn["host"] == dasher.url
            # the REST API masks the values of extras named *token*
            assert {"refresh_token", "token_uri"} <= set(json.loads(conn["extra"]))
        if "connections get" in text:
            # what Airflow reads (the environment variable), without a secret on the screen
            shown = done.stdout.splitlines()[-1]
            head = f"dasher_default dasher {dasher.url} access token set: True extras: "
            assert shown.startswith(head), done.stdout
            assert {"refresh_token", "token_uri"} <= set(shown.removeprefix(head).split())
        for secret in (creds["accessToken"], creds["refreshToken"]):
            assert secret not in done.stdout + done.stderr, f"{block} printed a DASHER token"
        if "--conn-json" in text:
            conn = stored()
            assert conn["conn_type"] == "dasher" and conn["host"] == dasher.url
            assert {"refresh_token", "token_uri", "api_version"} <= set(json.loads(conn["extra"]))
        if "pools set" in text:
            pool = stack.api("GET", "/api/v2/pools/sendit_dasher").json()
            assert pool["slots"] == 4, pool

    # the connection the docs put in the database works in real tasks, through the pool
    calls = dasher.stats()["uid_calls"]
    run_id = stack.trigger("sendit_dasher_check", {})
    assert stack.wait_run("sendit_dasher_check", run_id) == "success"
    assert stack.xcom("sendit_dasher_check", run_id, "report")["states"] == {"DONE": 1}
    assert dasher.stats()["uid_calls"] > calls
    fetch = [
        t
        for t in stack.task_instances("sendit_dasher_check", run_id)
        if t["task_id"] == "fetch_pseudonyms"
    ]
    assert fetch and {t["pool"] for t in fetch} == {"sendit_dasher"}


@pytest.mark.timeout(600)
def test_storage_commands(docs_stack, tmp_path):
    """The Google connection of docs/storage.md: the extras the Google provider's hooks read."""
    stack, _ = docs_stack
    shell = DocShell(tmp_path / "shell", dict(stack.env))
    blocks = live_blocks("storage.md")
    for block in blocks:
        shell.run(block)
    assert re.search(r"google_cloud_default\s*\|\s*google_cloud_platform", shell.stdout)
    stored = stack.api("GET", "/api/v2/connections/google_cloud_default")
    assert stored.status_code == 200, stored.text
    conn = stored.json()
    assert conn["conn_type"] == "google_cloud_platform", conn
    # the extras the Google provider's hooks read (GoogleBaseHook._get_field)
    assert json.loads(conn["extra"]) == {
        "key_path": "/opt/airflow/secrets/sendit-sa.json",
        "project": "my-project",
        "scope": "https://www.googleapis.com/auth/cloud-platform",
    }
