"""The query/retrieve layer's pure parts: requests, keys, the study folder, sources, windows,
connections (no PACS needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from conftest import SECRET

from sendit_ops.core.errors import ConfigError
from sendit_ops.pacs.keys import instance_name, item_key, received_study_key, study_key
from sendit_ops.pacs.model import PacsConnection, parse_request
from sendit_ops.pacs.sources import TimeWindow, parse_sources
from sendit_ops.pacs.study_folder import FolderExists, StudyFolder

pytestmark = pytest.mark.unit


def test_a_request_from_the_form_and_a_file():
    req = parse_request(
        {"accession_numbers": ["A1", " A2 ", "A1"], "study_uids": "1.2.3, 1.2.4"},
        "AccessionNumber\nA3,extra\n# a comment\nuid:1.2.5\n\n",
    )
    assert req.accessions == ("A1", "A2", "A3")
    assert req.study_uids == ("1.2.3", "1.2.4", "1.2.5")
    dated = parse_request({"date_from": "2024-01-01", "date_to": "2024-01-31", "modality": "ct"})
    assert (dated.date_from, dated.date_to, dated.modality) == ("20240101", "20240131", "CT")
    assert dated.items() == [("query", "20240101-20240131/CT")]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "the request is empty"),
        ({"date_from": "2024-01-01"}, "both date_from and date_to"),
        ({"date_from": "20240201", "date_to": "20240101"}, "after"),
        ({"date_from": "20240231", "date_to": "20240301"}, "calendar date"),
        ({"accession_numbers": ["A"], "modality": "C T"}, "modality"),
    ],
)
def test_a_bad_request_says_what_is_wrong(params, message):
    with pytest.raises(ConfigError, match=message):
        parse_request(params)


def test_keys_are_keyed_stable_and_name_no_value():
    assert item_key(SECRET, "accession", "ACC1") == item_key(SECRET, "accession", " ACC1 ")
    assert item_key(SECRET, "accession", "ACC1") != item_key(
        b"another-key-0123456789", "accession", "ACC1"
    )
    assert study_key(SECRET, "1.2.3").startswith("p") and "1.2.3" not in study_key(SECRET, "1.2.3")
    assert received_study_key(SECRET, "CT01", "1.2.3") != received_study_key(
        SECRET, "CT02", "1.2.3"
    )
    assert instance_name(SECRET, "1.2.3.4").endswith(".dcm")


def test_the_study_folder_is_tmp_until_finished_and_reopens_after_a_crash(tmp_path):
    folder = StudyFolder(tmp_path, "pabc").open()
    folder.write("a.dcm", b"x" * 10)
    (folder.tmp / "b.dcm.123.part").write_bytes(b"half")  # a crash in the middle of a write
    again = StudyFolder(tmp_path, "pabc").open()
    assert [p.name for p in again.tmp.iterdir()] == ["a.dcm"]
    assert again.count() == 1 and again.size() == 10 and not again.finished
    again.finish()
    assert again.finished and [p.name for p in tmp_path.iterdir()] == ["pabc"]
    other = StudyFolder(tmp_path, "pabc").open()
    with pytest.raises(FolderExists):
        other.finish()


def test_time_window_across_midnight():
    night = TimeWindow.parse("19:00-07:00")
    assert night.contains(datetime(2024, 1, 1, 23, 0, tzinfo=UTC))
    assert night.contains(datetime(2024, 1, 1, 6, 59, tzinfo=UTC))
    noon = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert not night.contains(noon)
    assert night.next_opening(noon) == datetime(2024, 1, 1, 19, 0, tzinfo=UTC)
    assert night.next_opening(datetime(2024, 1, 1, 20, 0, tzinfo=UTC)).hour == 20
    with pytest.raises(ConfigError, match="HH:MM"):
        TimeWindow.parse("evenings")


def test_sources_are_validated():
    (src,) = parse_sources(
        [
            {
                "name": "rad",
                "conn_id": "c",
                "input_folder": "in",
                "window": "19:00-07:00",
                "associations": 2,
            }
        ]
    )
    assert src.dag_id == "sendit_retrieve_rad" and src.policy.attempts == 3
    for bad, message in [
        ([{"name": "rad"}], "conn_id"),
        ([{"name": "r-d", "conn_id": "c", "input_folder": "i"}], "letters"),
        ([{"name": "r", "conn_id": "c", "input_folder": "i", "colour": 1}], "unknown"),
        ([{"name": "r", "conn_id": "c", "input_folder": "i", "associations": 0}], "associations"),
        ([{"name": "r", "conn_id": "c", "input_folder": "i", "window": "7-19"}], "HH:MM"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_sources(bad)


def test_connections_are_validated():
    with pytest.raises(ConfigError, match="method"):
        PacsConnection("p", method="c-echo")
    with pytest.raises(ConfigError, match="AE title"):
        PacsConnection("p", called_ae="A" * 17)
    with pytest.raises(ConfigError, match="DICOMweb base URL"):
        PacsConnection("p", method="dicomweb")
    conn = PacsConnection.from_dict("p", {"port": "4242", "method": "c-move", "tls": "yes"})
    assert conn.port == 4242 and conn.tls and conn.destination_ae == "SENDIT"


def test_the_connection_types_are_registered():
    from sendit_ops.airflow.provider_info import get_provider_info

    types = {c["connection-type"]: c for c in get_provider_info()["connection-types"]}
    assert {"dasher", "dicom_pacs", "dicomweb"} <= set(types)
    assert "method" in types["dicom_pacs"]["conn-fields"]
    assert types["dicomweb"]["hook-class-name"].endswith("DicomwebHook")


def test_the_receiver_is_a_compose_service_and_a_make_target():
    import yaml
    from conftest import ROOT

    service = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["services"][
        "sendit-receiver"
    ]
    assert service["entrypoint"] == ["sendit", "receive"]
    assert service["restart"] == "always" and "11112" in service["ports"][0]
    makefile = (ROOT / "Makefile").read_text()
    assert "\nreceiver: " in makefile and "sendit receive" in makefile
    assert "\ndemo-pacs: " in makefile


def test_a_scheduled_run_asks_for_its_data_interval():
    from types import SimpleNamespace

    import pendulum

    from sendit_ops.airflow.retrieve_tasks import request_of
    from sendit_ops.pacs.sources import PacsSource

    source = PacsSource("rad", "c", "in", modality="CT")
    context = {
        "params": {"accession_numbers": [], "study_uids": [], "date_from": None},
        "dag_run": SimpleNamespace(run_type="scheduled", run_id="scheduled__x"),
        "data_interval_start": pendulum.datetime(2024, 3, 3, tz="UTC"),
        "data_interval_end": pendulum.datetime(2024, 3, 4, tz="UTC"),
    }
    req = request_of(source, context)
    assert (req.date_from, req.date_to, req.modality) == ("20240303", "20240303", "CT")
    # a manual run with nothing asked is an error that says what to give
    context["dag_run"] = SimpleNamespace(run_type="manual", run_id="manual__x")
    with pytest.raises(ConfigError, match="empty"):
        request_of(source, context)
    # a scheduled run without a data interval (a timetable without one) says what to do
    context["dag_run"] = SimpleNamespace(run_type="scheduled", run_id="scheduled__x")
    context["data_interval_start"] = context["data_interval_end"] = None
    with pytest.raises(ConfigError, match="data interval"):
        request_of(source, context)


def test_outside_its_window_the_run_defers_until_it_opens(monkeypatch):
    import pendulum
    from airflow.sdk.exceptions import TaskDeferred

    from sendit_ops.airflow.retrieve_dag import WaitForWindow

    now = pendulum.datetime(2024, 3, 3, 12, 0, tz="UTC")
    monkeypatch.setattr(pendulum, "now", lambda tz=None: now)
    with pytest.raises(TaskDeferred) as deferred:
        WaitForWindow(task_id="w", window="19:00-07:00").execute({})
    assert deferred.value.trigger.moment == pendulum.datetime(2024, 3, 3, 19, 0, tz="UTC")
    assert WaitForWindow(task_id="w2", window="11:00-13:00").execute({}) is None


def test_the_hook_reads_both_connection_types(monkeypatch):
    from sendit_ops.airflow.pacs_hook import PacsHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_PACS_U1",
        json.dumps(
            {
                "conn_type": "dicom_pacs",
                "host": "pacs.example.org",
                "port": 4242,
                "schema": "PACSAE",
                "login": "SENDIT",
                "extra": {
                    "extra__dicom_pacs__method": "c-move",
                    "move_port": 11200,
                    "tls": True,
                    "timeout": "",
                },
            }
        ),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_PACS_U2",
        json.dumps(
            {
                "conn_type": "dicomweb",
                "host": "https://pacs.example.org/dicom-web",
                "login": "u",
                "password": "p",
                "extra": {"max_find_results": 100},
            }
        ),
    )
    dimse = PacsHook("pacs_u1").get_pacs("a")
    assert (dimse.host, dimse.port, dimse.called_ae, dimse.calling_ae) == (
        "pacs.example.org",
        4242,
        "PACSAE",
        "SENDIT",
    )
    assert (dimse.method, dimse.move_port, dimse.tls, dimse.timeout) == ("c-move", 11200, True, 60)
    web = PacsHook("pacs_u2").get_pacs("b")
    assert (web.method, web.dicomweb_url, web.username, web.max_find_results) == (
        "dicomweb",
        "https://pacs.example.org/dicom-web",
        "u",
        100,
    )
    with pytest.raises(ConfigError, match="does not exist"):
        PacsHook("pacs_missing").get_pacs("c")
