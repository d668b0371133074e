"""Delivery to Cloud Storage and BigQuery, against fake-gcs-server and crucible (real
emulator processes) through the Google provider's hooks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PHI_STRINGS
from emulators import start_bigquery, start_gcs
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery, storage

from sendit_ops.delivery.bigquery_sql import literal, merge_statements
from sendit_ops.sample_data import PATIENTS, write_study

pytestmark = pytest.mark.emulator

PROJECT, BUCKET = "sendit-test", "radiology"


@pytest.fixture(scope="module")
def emulators(tmp_path_factory):
    logs = tmp_path_factory.mktemp("emulators")
    gcs_url, gcs = start_gcs(logs / "gcs.log")
    bq_url, bq = start_bigquery(logs / "bq.log")
    yield gcs_url, bq_url
    for proc in (gcs, bq):
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def google(emulators, monkeypatch, request):
    gcs_url, bq_url = emulators
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_url)
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bq_url)
    monkeypatch.setenv(
        "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
        json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {"is_anonymous": True, "project": PROJECT},
            }
        ),
    )
    gcs = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
    bucket_name = f"{BUCKET}-{abs(hash(request.node.name)) % 10**8}"
    gcs.create_bucket(bucket_name)
    bq = bigquery.Client(
        project=PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": bq_url}
    )
    collection = f"C{abs(hash(request.node.name)) % 10**8}"
    return gcs.bucket(bucket_name), bq, collection


def google_settings(tmp_path: Path, bucket, collection: str) -> dict:
    return {
        "work_root": str(tmp_path / "work"),
        "outbox": str(tmp_path / "outbox"),
        "send_to_google": True,
        "google_cloud_storage": bucket.name,
        "google_project_name": PROJECT,
        "google_storage_collection": collection,
    }


def rows(bq, collection):
    query = f"SELECT * FROM `{PROJECT}.{collection}.dicom` ORDER BY CodedAccessionNumberID"
    return [dict(r) for r in bq.query(query).result()]


def objects(bucket):
    return {b.name: (b.md5_hash, b.generation) for b in bucket.client.list_blobs(bucket.name)}


def run_dag(monkeypatch, input_dir: Path, settings: dict, conf=None):
    from sendit_ops.airflow.dag_factory import build_all_dags

    monkeypatch.setenv(
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS", json.dumps([{"path": str(input_dir), "name": "g"}])
    )
    monkeypatch.setenv("AIRFLOW_VAR_SENDIT_SETTINGS", json.dumps(settings))
    return build_all_dags()["sendit_g"].test(run_conf=conf or {})


def test_literal_round_trips_and_cannot_break_out():
    nasty = "x' OR 1=1; DROP TABLE t; -- \\ \" ` é 😀"
    assert "'" not in literal(nasty)[1:-1] and "`" not in literal(nasty)
    statements = merge_statements("`p.d.t`", [{"CodedAccessionNumberID": "a", "x": nasty}] * 2)
    assert len(statements) == 1 and statements[0].count("SELECT") == 1


def test_merge_statement_round_trip_in_the_emulator(google):
    _, bq, collection = google
    bq.create_dataset(f"{PROJECT}.{collection}")
    from sendit_ops.packaging.archive import BQ_SCHEMA

    bq.create_table(
        bigquery.Table(
            f"{PROJECT}.{collection}.dicom",
            schema=[bigquery.SchemaField(n, "STRING") for n in BQ_SCHEMA],
        )
    )
    nasty = '{"a": "it\'s"}\n\\ é 😀 `'
    row = {c: "" for c in BQ_SCHEMA} | {"CodedAccessionNumberID": "k1", "DicomHeader": nasty}
    for statement in merge_statements(f"`{PROJECT}.{collection}.dicom`", [row, row]):
        bq.query(statement).result()
    (stored,) = rows(bq, collection)
    assert stored["DicomHeader"] == nasty


@pytest.mark.parametrize("layout", ["steps", "fused"])
def test_dag_delivers_to_gcs_and_bigquery_idempotently(
    airflow_db, google, demo_input, tmp_path, monkeypatch, capfd, layout
):
    """Both task layouts; with `fused` each chunk delivers its own batches (two chunks here:
    two uploads and MERGE statements into the same table)."""
    bucket, bq, collection = google
    settings = google_settings(tmp_path, bucket, collection) | {"task_layout": layout}
    run = run_dag(monkeypatch, demo_input, settings)
    delivering = "process_and_deliver" if layout == "fused" else "deliver"
    tis = [ti for ti in run.get_task_instances() if ti.task_id == delivering]
    assert len(tis) == (2 if layout == "fused" else 1)
    objs = objects(bucket)
    assert len(objs) == 4
    for name in objs:
        assert name.startswith(f"Collection/{collection}/Entity/") and name.endswith(".tar.gz")
        blob = bucket.get_blob(name)
        assert blob.content_type == "application/gzip"
        assert set(blob.metadata) >= {
            "CodedPatientID",
            "CodedAccessionNumberID",
            "images",
            "series",
            "sendit_version",
            "recipe_sha256",
            "sha256",
        }
    table = rows(bq, collection)
    assert len(table) == 4
    assert {
        r["storage_metadataLink"].rsplit("/o/", 1)[-1].replace("%2F", "/") for r in table
    } == set(objs)
    assert not (tmp_path / "outbox").exists()  # Google replaced the outbox
    text = "".join(capfd.readouterr()) + json.dumps(table)
    for phi in PHI_STRINGS:
        assert phi not in text, phi
    # rerun of the same work: nothing rewritten, no duplicate rows
    run_dag(monkeypatch, demo_input, settings, {"reprocess": True})
    assert objects(bucket) == objs
    assert len(rows(bq, collection)) == 4


def test_crash_between_upload_and_bigquery_then_rerun(
    airflow_db, google, tmp_path, monkeypatch, make_pipeline
):
    from sendit_ops.airflow.google_target import GoogleTarget
    from sendit_ops.delivery.target import Archive

    bucket, bq, collection = google
    inbox = tmp_path / "in"
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 2)
    settings = google_settings(tmp_path, bucket, collection)
    # the first attempt: processed and uploaded, then killed before the rows and the record
    pipe = make_pipeline(**{k: v for k, v in settings.items()})
    from sendit_ops.core.discovery import find_batches

    keys = pipe.register(find_batches(inbox, pipe.secret_key, "in"))
    for step in (pipe.filter, pipe.pseudonymize, pipe.anonymize, pipe.package):
        step(keys)
    target = GoogleTarget.open(pipe.settings)
    for record in pipe.ready_for_delivery(keys):
        target.put_object(Archive.of(record))
    assert len(objects(bucket)) == 1 and rows(bq, collection) == []
    before = objects(bucket)
    # the rerun completes the delivery: one object (not rewritten), one row
    run_dag(monkeypatch, inbox, settings)
    assert objects(bucket) == before
    assert len(rows(bq, collection)) == 1


def test_conflicting_object_is_an_error_and_left_untouched(
    airflow_db, google, tmp_path, monkeypatch
):
    bucket, bq, collection = google
    inbox = tmp_path / "in"
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    write_study(inbox / "ACC2", PATIENTS[1], "ACC2", "20240116", "CT", 1, 1)
    settings = google_settings(tmp_path, bucket, collection)
    run_dag(monkeypatch, inbox, settings, {"dry_run": True})  # learn the object names
    from sendit_ops.core.ledger import Ledger

    records = Ledger(settings["work_root"], "sendit_g").all()
    victim = records[0].outputs.object_name
    bucket.blob(victim).upload_from_string(b"not ours", content_type="text/plain")
    run = run_dag(monkeypatch, inbox, settings)
    assert str(run.state).endswith("failed")
    states = {r.outputs.object_name: r for r in Ledger(settings["work_root"], "sendit_g").all()}
    assert states[victim].state == "ERROR"
    assert "different object already exists" in states[victim].reasons[-1]
    assert bucket.get_blob(victim).download_as_bytes() == b"not ours"
    assert len(rows(bq, collection)) == 1  # the other batch still delivered


def test_missing_setting_or_bucket_stops_before_any_upload(
    airflow_db, google, demo_input, tmp_path, monkeypatch, capfd
):
    bucket, _, collection = google
    settings = google_settings(tmp_path, bucket, collection)
    settings.pop("google_cloud_storage")
    run = run_dag(monkeypatch, demo_input, settings)
    assert str(run.state).endswith("failed")
    assert "'send_to_google' is true but 'google_cloud_storage' is not set" in "".join(
        capfd.readouterr()
    )
    settings["google_cloud_storage"] = "no-such-bucket"
    run = run_dag(monkeypatch, demo_input, settings)
    assert "bucket 'no-such-bucket' does not exist" in "".join(capfd.readouterr())
    assert objects(bucket) == {}
    assert not (tmp_path / "work" / "sendit_g" / "batches").exists()


def test_only_verified_batches_are_uploaded(google, tmp_path, make_pipeline):
    """The upload re-checks the record: a batch not verified is refused, not uploaded."""
    bucket, _, collection = google
    inbox = tmp_path / "in"
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    pipe = make_pipeline(**google_settings(tmp_path, bucket, collection))
    from sendit_ops.airflow.google_target import GoogleTarget
    from sendit_ops.core.discovery import find_batches
    from sendit_ops.delivery.loop import deliver

    keys = pipe.register(find_batches(inbox, pipe.secret_key, "in"))
    for step in (pipe.filter, pipe.pseudonymize, pipe.anonymize, pipe.package):
        step(keys)
    record = pipe.ledger.load(keys[0])
    record.outputs.verified = False  # as if the leak check had not passed
    pipe.ledger.save(record)
    counts = deliver(pipe, GoogleTarget.open(pipe.settings), keys)
    assert counts.as_dict() == {"created": 0, "exists": 0, "replaced": 0, "failed": 0, "rows": 0}
    assert objects(bucket) == {}
    assert pipe.ledger.load(keys[0]).state == "ERROR"


def test_new_pseudonyms_replace_the_object_and_row_in_the_bucket_and_table(
    airflow_db, google, tmp_path
):
    """A secret-key (or provider) switch re-delivered on request: the study's old object
    and row are removed, one object and one row per study remain."""
    from sendit_ops.airflow.google_target import GoogleTarget
    from sendit_ops.core.errors import RunNeedsAttention
    from sendit_ops.core.settings import load_settings
    from sendit_ops.pipeline.batch import Pipeline
    from sendit_ops.pipeline.run import RunRequest, run_folder

    bucket, bq, collection = google
    inbox = tmp_path / "in"
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 2)
    write_study(inbox / "ACC2", PATIENTS[1], "ACC2", "20240116", "CT", 1, 2)
    settings = load_settings(google_settings(tmp_path, bucket, collection))

    def to_google():
        return GoogleTarget.open(settings)

    run_folder(Pipeline(settings, b"first-key-0123456789abcdef", "sendit_g"), inbox, to_google)
    first_objects, first_rows = objects(bucket), rows(bq, collection)
    assert len(first_objects) == 2 and len(first_rows) == 2
    other = Pipeline(settings, b"second-key-0123456789abcdef", "sendit_g")
    with pytest.raises(RunNeedsAttention):
        run_folder(other, inbox, to_google)
    done = run_folder(other, inbox, to_google, RunRequest(redeliver=True)).records
    assert {r.state for r in done.values()} == {"DONE"}
    now_objects, now_rows = objects(bucket), rows(bq, collection)
    assert len(now_objects) == 2 and not set(now_objects) & set(first_objects)
    assert sorted(r["CodedAccessionNumberID"] for r in now_rows) == sorted(
        r.outputs.item_suid for r in done.values()
    )


def test_the_real_service_gets_the_values_as_query_parameters():
    """Against BigQuery itself the values travel as query parameters, never in the SQL text
    (the emulator refuses parameters, so the literal form above is what it runs). Without a
    real BigQuery here, the request is checked as the client library sends it."""
    from sendit_ops.airflow.google_target import GoogleTarget, key_parameter, rows_parameter
    from sendit_ops.delivery.bigquery_sql import (
        PARAMETER_ROWS,
        delete_with_parameter,
        merge_with_parameters,
    )
    from sendit_ops.packaging.archive import BQ_SCHEMA

    nasty = "x' OR 1=1; DROP TABLE t; -- \\ \" ` é 😀"
    rows = [{"CodedAccessionNumberID": f"k{n}", BQ_SCHEMA[1]: nasty} for n in range(5)]
    [(statement, part)] = merge_with_parameters("`p.d.t`", rows + rows[:1])
    assert "UNNEST(@rows)" in statement and nasty not in statement and len(part) == 5
    sent = rows_parameter(part).to_api_repr()["query"]["queryParameters"][0]
    assert sent["name"] == "rows" and sent["parameterType"]["type"] == "ARRAY"
    fields = [f["name"] for f in sent["parameterType"]["arrayType"]["structTypes"]]
    assert fields == list(BQ_SCHEMA)
    values = sent["parameterValue"]["arrayValues"][0]["structValues"]
    assert values[BQ_SCHEMA[1]]["value"] == nasty
    assert values["CodedAccessionNumberID"]["value"] == "k0"
    many = [{"CodedAccessionNumberID": f"k{n}"} for n in range(PARAMETER_ROWS + 1)]
    assert [len(p) for _, p in merge_with_parameters("`p.d.t`", many)] == [PARAMETER_ROWS, 1]
    assert "@key" in delete_with_parameter("`p.d.t`")
    key = key_parameter(nasty).to_api_repr()["query"]["queryParameters"][0]
    assert key["parameterValue"]["value"] == nasty

    class Recorder:  # what put_rows asks of the client, without a service
        def __init__(self):
            self.calls = []

        def query(self, statement, job_config=None):
            self.calls.append((statement, job_config))
            return self

        def result(self):
            return []

    real = GoogleTarget(None, Recorder(), "`p.d.t`", literal_sql=False)
    real.put_rows(rows)
    [(statement, config)] = real.bigquery.calls
    assert nasty not in statement and config.query_parameters
    emulator = GoogleTarget(None, Recorder(), "`p.d.t`", literal_sql=True)
    emulator.put_rows(rows)
    [(statement, config)] = emulator.bigquery.calls
    assert config is None and "\\u0027" in statement
