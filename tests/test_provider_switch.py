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
from sendit_ops.delivery.loop import deliver
from sendit_ops.delivery.outbox import OutboxTarget
from sendit_ops.pipeline.batch import Pipeline
from sendit_ops.pipeline.run import RunRequest, run_folder
from sendit_ops.pseudonyms.dasher_client import DasherClient, FileTokenStore, Tokens
from sendit_ops.sample_data import PATIENTS, write_study

pytestmark = pytest.mark.emulator  # the DASHER dev server


def outbox_delivery(pipe: Pipeline, keys: list[str]) -> None:
    deliver(pipe, OutboxTarget.from_settings(pipe.settings), keys)


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
    first = run_folder(make(tmp_path), inbox, outbox_delivery)
    assert {r.state for r in first.values()} == {"DONE"}
    archives, rows = outside(tmp_path)
    assert len(archives) == 2 and len(rows) == 2

    with pytest.raises(RunNeedsAttention) as refused:
        run_folder(make(tmp_path, "dasher", dasher=dasher), inbox, outbox_delivery)
    message = str(refused.value)
    assert "2 delivered studies" in message and "redeliver" in message
    assert "DASHER" in message and "local keyed pseudonyms" in message
    assert outside(tmp_path) == (archives, rows)  # nothing touched

    again = run_folder(
        make(tmp_path, "dasher", dasher=dasher),
        inbox,
        outbox_delivery,
        RunRequest(redeliver=True),
    )
    assert {r.state for r in again.values()} == {"DONE"}
    new_archives, new_rows = outside(tmp_path)
    assert len(new_archives) == 2 and len(new_rows) == 2  # replaced, not duplicated
    assert not set(new_archives) & set(archives)  # new pseudonyms, new names
    assert {r["CodedAccessionNumberID"] for r in new_rows} == {
        r.outputs.item_suid for r in again.values()
    }
    # the folder is now DASHER's: a plain run has nothing to refuse and nothing to do
    assert run_folder(make(tmp_path, "dasher", dasher=dasher), inbox, outbox_delivery) == {}


def test_a_new_secret_key_is_refused_then_redelivered_once(tmp_path, inbox) -> None:
    run_folder(make(tmp_path), inbox, outbox_delivery)
    archives, _ = outside(tmp_path)
    other = b"another-secret-key-0123456789abcdef"
    with pytest.raises(RunNeedsAttention, match="local keyed pseudonyms"):
        run_folder(make(tmp_path, secret=other), inbox, outbox_delivery)
    again = run_folder(
        make(tmp_path, secret=other), inbox, outbox_delivery, RunRequest(redeliver=True)
    )
    assert {r.state for r in again.values()} == {"DONE"}
    new_archives, new_rows = outside(tmp_path)
    assert len(new_archives) == 2 and len(new_rows) == 2
    assert not set(new_archives) & set(archives)
    # the old records say what replaced them; the next run neither refuses nor redoes
    assert run_folder(make(tmp_path, secret=other), inbox, outbox_delivery) == {}
