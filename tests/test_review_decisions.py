"""A reviewer's release / reject is refused unless it names a HELD batch of the folder, with
the content that was held: by the runner (every Airflow run's discover), by ``sendit run``
(exit 2, before Airflow is even prepared) and, for an id of the wrong length, by the DAG's
Param schema (the trigger form and REST refuse the run before it is created)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import SECRET

from sendit_ops.airflow import cli
from sendit_ops.core.discovery import discover_input
from sendit_ops.core.lifecycle import State
from sendit_ops.core.settings import InputFolder
from sendit_ops.pipeline.decisions import (
    BATCH_ID,
    MALFORMED_ID_SCHEMA_PATTERN,
    DecisionRefused,
    named_decisions,
    resolve_decisions,
)
from sendit_ops.pipeline.run import RunRequest, run_folder
from sendit_ops.sample_data import make_demo_input

pytestmark = pytest.mark.unit

UNKNOWN = "b0123456789abcde"  # well-formed, no batch has it


@pytest.fixture
def folder_with_states(tmp_path, make_pipeline):
    """The demo input folder, its batches registered in the ledger, one HELD, one DONE, one
    ERROR (states set on the real ledger: what a finished run leaves)."""
    inbox = tmp_path / "input"
    make_demo_input(inbox)
    pipe = make_pipeline()
    found = discover_input(inbox, SECRET, "demo").batches
    pipe.register(found[:3])  # the others: never processed
    states = {}
    for batch, state in zip(found, (State.HELD, State.DONE, State.ERROR), strict=False):
        record = pipe.ledger.get(batch.key)
        record.set_state(state, "set by the test")
        pipe.ledger.save(record)
        states[state] = batch
    return pipe, inbox, states


def _refused(pipe, inbox, **decisions) -> str:
    params = {k: v for k, v in decisions.items()}
    with pytest.raises(DecisionRefused) as err:
        found = discover_input(inbox, SECRET, "demo").batches
        resolve_decisions(pipe.ledger, found, named_decisions(params), "demo")
    return str(err.value)


def test_a_held_batch_is_accepted_by_id_or_folder_name(folder_with_states):
    pipe, inbox, states = folder_with_states
    held = states[State.HELD]
    found = discover_input(inbox, SECRET, "demo").batches
    for name in (held.key, held.folder_name, f"  {held.key} "):
        decisions = named_decisions({"release": [name], "reject": []})
        assert resolve_decisions(pipe.ledger, found, decisions, "demo") == {held.key: "release"}


def test_unknown_and_not_held_ids_are_refused_naming_what_is_wrong(folder_with_states):
    pipe, inbox, states = folder_with_states
    message = _refused(pipe, inbox, release=[UNKNOWN])
    assert f"release {UNKNOWN}: no batch of input folder 'demo' has this id" in message
    assert "Nothing was processed" in message
    done, error = states[State.DONE], states[State.ERROR]
    message = _refused(pipe, inbox, release=[done.key], reject=[error.folder_name])
    assert f"release {done.key}: the batch is DONE, not HELD" in message
    assert f"reject {error.key}: the batch is ERROR, not HELD" in message
    # a folder name is never repeated (folder names are often accession numbers)
    assert error.folder_name not in message
    assert "bdeadbeefdeadbeef: not a batch id" in _refused(
        pipe, inbox, release=["bdeadbeefdeadbeef"]
    )
    message = _refused(pipe, inbox, reject=["ACC99999"])
    assert "a folder name that is not a finished batch folder" in message
    assert "ACC99999" not in message


def test_a_batch_never_processed_or_changed_since_held_is_refused(folder_with_states, tmp_path):
    pipe, inbox, states = folder_with_states
    found = discover_input(inbox, SECRET, "demo").batches
    fresh = next(b for b in found if b not in states.values())
    assert "has not been processed yet" in _refused(pipe, inbox, release=[fresh.key])
    held = states[State.HELD]
    (inbox / held.folder_name / "added.dcm").write_bytes(b"not yet reviewed")
    message = _refused(pipe, inbox, release=[held.key])
    assert f"release {held.key}: the batch folder changed since it was HELD" in message


def test_one_batch_both_released_and_rejected_is_refused(folder_with_states):
    pipe, inbox, states = folder_with_states
    held = states[State.HELD]
    with pytest.raises(DecisionRefused, match="named in both 'release' and 'reject'"):
        RunRequest.from_params({"release": [held.key], "reject": [held.key]})
    # the same batch by id in one list and by folder name in the other
    message = _refused(pipe, inbox, release=[held.key], reject=[held.folder_name])
    assert f"batch {held.key} is named in both release and reject" in message


def test_a_refused_run_touches_no_batch(folder_with_states):
    """The runner every DAG run uses: the refusal comes before any batch is queued."""
    pipe, inbox, states = folder_with_states
    before = {r.key: (r.state, r.run_id, len(r.history)) for r in pipe.ledger.all()}
    request = RunRequest.from_params({"release": [states[State.DONE].key, UNKNOWN]})
    with pytest.raises(DecisionRefused, match="not HELD"):
        run_folder(pipe, inbox, lambda: pytest.fail("no target may be opened"), request, "demo")
    after = {r.key: (r.state, r.run_id, len(r.history)) for r in pipe.ledger.all()}
    assert after == before
    outbox = Path(pipe.settings.outbox)
    assert not outbox.exists() or not any(outbox.iterdir())


def test_the_param_schema_refuses_ids_of_the_wrong_length_only():
    from airflow.sdk.exceptions import ParamValidationError

    from sendit_ops.airflow.dag_factory import trigger_params

    params = trigger_params()
    for name in ("release", "reject"):
        for good in (UNKNOWN, "ACC10009", "bad", "b1234567890123", "study 7"):
            assert params[name].resolve([good]) == [good]
        for bad in ("bdeadbeefdeadbeef", "b0123456789abcd", "b0123456789abcdef0"):
            with pytest.raises(ParamValidationError, match="does not match"):
                params[name].resolve([bad])
    assert BATCH_ID.fullmatch(UNKNOWN) and re.search(MALFORMED_ID_SCHEMA_PATTERN, UNKNOWN)


def _cli(tmp_path, monkeypatch, capsys, *extra: str) -> tuple[int, str]:
    for name in ("AIRFLOW_VAR_SENDIT_SETTINGS", "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS"):
        monkeypatch.delenv(name, raising=False)  # cmd_run sets them: restored after the test
    monkeypatch.setenv("SENDIT_HOME", str(tmp_path / "home"))
    # the refusal comes before Airflow is prepared: nothing may touch its home
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "no-airflow-here"))
    code = cli.main(
        [
            "run",
            *("--input", str(tmp_path / "input"), "--outbox", str(tmp_path / "outbox")),
            *("--work-root", str(tmp_path / "work"), "--name", "demo"),
            *extra,
        ]
    )
    assert not (tmp_path / "no-airflow-here").exists()
    return code, capsys.readouterr().err


def test_sendit_run_refuses_bad_decisions_with_exit_2(tmp_path, monkeypatch, capsys):
    inbox = tmp_path / "input"
    make_demo_input(inbox)
    from sendit_ops.core.ledger import Ledger
    from sendit_ops.core.settings import load_settings
    from sendit_ops.pipeline.batch import Pipeline

    dag_id = InputFolder(str(inbox), "demo").dag_id
    settings = load_settings({"work_root": str(tmp_path / "work"), "outbox": str(tmp_path / "o")})
    assert os.environ["AIRFLOW_VAR_SENDIT_SECRET_KEY"].encode() == SECRET
    found = discover_input(inbox, SECRET, "demo").batches
    Pipeline(settings, SECRET, dag_id, run_id="r1").register(found[:1])
    ledger = Ledger(tmp_path / "work", dag_id)
    record = ledger.get(found[0].key)
    record.set_state(State.DONE)
    ledger.save(record)

    code, err = _cli(tmp_path, monkeypatch, capsys, "--release", "bdeadbeefdeadbeef")
    assert code == cli.EXIT_USAGE and "bdeadbeefdeadbeef: not a batch id" in err, err
    assert len(err.strip().splitlines()) == 1, err
    code, err = _cli(tmp_path, monkeypatch, capsys, "--reject", UNKNOWN)
    assert code == 2 and f"reject {UNKNOWN}: no batch of input folder 'demo'" in err, err
    code, err = _cli(tmp_path, monkeypatch, capsys, "--release", found[0].folder_name)
    assert code == 2 and f"release {found[0].key}: the batch is DONE, not HELD" in err, err
    assert found[0].folder_name not in err
    code, err = _cli(tmp_path, monkeypatch, capsys, "--release", UNKNOWN, "--reject", UNKNOWN)
    assert code == 2 and "named in both 'release' and 'reject'" in err, err
    assert json.loads(json.dumps(ledger.get(found[0].key).state)) == "DONE"


def test_the_decision_words_are_the_pipelines():
    from sendit_ops.pipeline import batch, decisions

    assert (decisions.RELEASE, decisions.REJECT) == (batch.RELEASE, batch.REJECT)
