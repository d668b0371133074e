"""Switching the pseudonym provider (or the secret key) of an input folder with delivered
studies: refused at discover with a clear message, unless re-delivery is asked for; then the
old object and row are replaced, not duplicated (one archive and one row per study)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SECRET

from sendit_ops.core.errors import RunNeedsAttention
from sendit_ops.core.settings import load_settings
from sendit_ops.delivery import outbox as box
from sendit_ops.delivery.outbox import OutboxTarget
from sendit_ops.pipeline.batch import Pipeline
from sendit_ops.pipeline.run import RunRequest, run_folder
from sendit_ops.pseudonyms.dasher_client import DasherClient, FileTokenStore, Tokens
from sendit_ops.sample_data import PATIENTS, write_study

pytestmark = pytest.mark.emulator  # the DASHER dev server


def run(pipe: Pipeline, inbox: Path, request: RunRequest | None = None) -> dict:
    """A whole run through the runner, to the outbox; records by folder name."""
    target = lambda: OutboxTarget.from_settings(pipe.settings)  # noqa: E731
    return run_folder(pipe, inbox, target, request).records


def make(tmp_path: Path, provider: str = "local", secret: bytes = SECRET, dasher=None) -> Pipeline:
    settings = load_settings(
        {
            "work_root": str(tmp_path / "work"),
            "outbox": str(tmp_path / "outbox"),
            "pseudonym_provider": provider,
        }
    )
    pipe = Pipeline(settings, secret, "sendit_switch", run_id=f"run-{provider}")
    if dasher is not None:
        store = FileTokenStore(tmp_path / "tokens.json", Tokens.from_stanford_json(dasher.creds()))
        pipe.provider = DasherClient(dasher.url, store)
    return pipe


def outside(tmp_path: Path) -> tuple[list[str], list[dict]]:
    archives = sorted(p.name for p in (tmp_path / "outbox").rglob("*.tar.gz"))
    table = box.table_path(tmp_path / "outbox", "DEMO", "dicom")
    rows = box.read_rows(table) if table.exists() else []
    return archives, rows


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    inbox = tmp_path / "in"
    for i, patient in enumerate(PATIENTS[:2]):
        write_study(inbox / f"study{i}", patient, f"ACC2000{i}", "20240115", images=2)
    return inbox


def test_provider_switch_is_refused_then_redelivered_once(tmp_path, inbox, dasher) -> None:
    first = run(make(tmp_path), inbox)
    assert {r.state for r in first.values()} == {"DONE"}
    archives, rows = outside(tmp_path)
    assert len(archives) == 2 and len(rows) == 2

    with pytest.raises(RunNeedsAttention) as refused:
        run(make(tmp_path, "dasher", dasher=dasher), inbox)
    message = str(refused.value)
    assert "2 delivered studies" in message and "redeliver" in message
    assert "DASHER" in message and "local keyed pseudonyms" in message
    assert outside(tmp_path) == (archives, rows)  # nothing touched

    again = run(make(tmp_path, "dasher", dasher=dasher), inbox, RunRequest(redeliver=True))
    assert {r.state for r in again.values()} == {"DONE"}
    new_archives, new_rows = outside(tmp_path)
    assert len(new_archives) == 2 and len(new_rows) == 2  # replaced, not duplicated
    assert not set(new_archives) & set(archives)  # new pseudonyms, new names
    assert {r["CodedAccessionNumberID"] for r in new_rows} == {
        r.outputs.item_suid for r in again.values()
    }
    # the folder is now DASHER's: a plain run has nothing to refuse and nothing to do
    assert run(make(tmp_path, "dasher", dasher=dasher), inbox) == {}


def test_a_new_secret_key_is_refused_then_redelivered_once(tmp_path, inbox) -> None:
    run(make(tmp_path), inbox)
    archives, _ = outside(tmp_path)
    other = b"another-secret-key-0123456789abcdef"
    with pytest.raises(RunNeedsAttention, match="local keyed pseudonyms"):
        run(make(tmp_path, secret=other), inbox)
    again = run(make(tmp_path, secret=other), inbox, RunRequest(redeliver=True))
    assert {r.state for r in again.values()} == {"DONE"}
    new_archives, new_rows = outside(tmp_path)
    assert len(new_archives) == 2 and len(new_rows) == 2
    assert not set(new_archives) & set(archives)
    # the old records say what replaced them; the next run neither refuses nor redoes
    assert run(make(tmp_path, secret=other), inbox) == {}
