"""The batches dashboard without a browser: its JSON (totals, throughput buckets, filters,
time windows, stages, held images, links into the Airflow UI), the page it renders, and who
may see it (a browser without a session is sent to Airflow's login; the API answers 401/403).

Two DAGs' ledgers are filled with records at known times, so every figure is checked
exactly; their source paths hold an accession number that must never come out."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from sendit_ops.airflow.dashboard import app as dashboard_app
from sendit_ops.airflow.dashboard import queries
from sendit_ops.airflow.dashboard.app import may_view
from sendit_ops.core.ledger import Ledger
from sendit_ops.core.records import BatchRecord

pytestmark = pytest.mark.unit

T0 = int(datetime(2024, 3, 1, 10, 0, tzinfo=UTC).timestamp())  # a Friday, 10:00 UTC
RUN = "manual__2024-03-01T10:00:00+00:00"
SOURCE = "/data/in/ACC99999"  # an accession number: must never leave the ledger
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def _save(ledger: Ledger, key: str, state: str, at: float, **extra) -> BatchRecord:
    images, size = extra.pop("images", 0), extra.pop("bytes_in", 0)
    record = BatchRecord(
        key=key,
        dag_id=ledger.dag_id,
        source_path=f"{SOURCE}/{key}",
        state=state,
        metrics={"images_accepted": images, "images_found": images, "bytes_in": size},
        history=[[at, state, extra.get("run_id", RUN)]],
        run_id=extra.pop("run_id", RUN),
        **extra,
    )
    ledger.save(record)
    return record


@pytest.fixture
def dags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Ledger]:
    """sendit_a (steps layout) and sendit_b (fused layout), one work root."""
    work = tmp_path / "work"
    folders = [
        {"path": str(tmp_path / "a"), "name": "a", "settings": {"work_root": str(work)}},
        {
            "path": str(tmp_path / "b"),
            "name": "b",
            "settings": {"work_root": str(work), "task_layout": "fused"},
        },
    ]
    monkeypatch.setenv("AIRFLOW_VAR_SENDIT_INPUT_FOLDERS", json.dumps(folders))
    monkeypatch.setenv("AIRFLOW_VAR_SENDIT_SETTINGS", "{}")
    a, b = Ledger(work, "sendit_a"), Ledger(work, "sendit_b")
    m = 60
    _save(a, "b00000000000a001", "DONE", T0 + 10 * m, images=10, bytes_in=5_000_000)
    _save(a, "b00000000000a002", "DONE", T0 + 20 * m, images=20, bytes_in=15_000_000)
    _save(a, "b00000000000a003", "DONE", T0 + 70 * m, images=6, bytes_in=3_000_000)
    _save(
        a,
        "b00000000000a004",
        "ERROR",
        T0 + 30 * m,
        reasons=["filter: two study dates"],
        map_index={"filter": 1},  # the chunk (mapped task instance) that ran its filter step
    )
    held = [
        {
            "file": "US_0001.dcm",
            "held_reason": "text remains after masking",
            "risk": "high",
            "frames": 1,
            "boxes": [{"x0": 1, "y0": 2, "x1": 30, "y1": 12}],
            "thumbnail": "0001_0001.png",
            "ocr_text": "DOE^JANE",  # what OCR read: never shown
        }
    ]
    _save(a, "b00000000000a005", "HELD", T0 + 40 * m, images=2, outputs={"held": held})
    (a.batch_dir("b00000000000a005") / "review").mkdir(parents=True)
    (a.batch_dir("b00000000000a005") / "review" / "0001_0001.png").write_bytes(PNG)
    _save(
        a,
        "b00000000000a006",
        "PROCESSING",
        T0 + 50 * m,
        outputs={"stage": "pseudonymized"},
        times={"filter": [T0 + 45 * m, T0 + 46 * m], "pseudonymize": [T0 + 47 * m, T0 + 48 * m]},
    )
    _save(a, "b00000000000a007", "QUEUE", T0 + 55 * m)
    _save(a, "b00000000000a008", "DONE", T0 - 24 * 3600, images=1, bytes_in=1_000_000)
    _save(b, "b00000000000b001", "DONE", T0 + 15 * m, images=4, bytes_in=2_000_000)
    _save(b, "b00000000000b002", "ERROR", T0 + 25 * m, reasons=["deliver: bucket refused"])
    _save(b, "b00000000000b003", "DONEPROCESSING", T0 + 35 * m)
    return {"sendit_a": a, "sendit_b": b}


@pytest.fixture
def client(dags) -> TestClient:
    """The app mounted at /sendit as the API server mounts it, the viewer check passed."""
    root = FastAPI()
    root.mount("/sendit", dashboard_app)
    dashboard_app.dependency_overrides[may_view] = lambda: None
    try:
        yield TestClient(root)
    finally:
        dashboard_app.dependency_overrides.pop(may_view, None)


def _no_phi(text: str) -> None:
    assert "ACC99999" not in text and "/data/in" not in text and "DOE" not in text


# ---- totals ------------------------------------------------------------------------------


def test_totals_per_dag_and_over_all(client):
    response = client.get("/sendit/api/totals")
    assert response.status_code == 200
    body = response.json()
    a, b = body["dags"]
    assert a["dag_id"] == "sendit_a" and a["batches"] == 8
    assert a["states"]["DONE"] == {"batches": 4, "images": 37, "mb": 24.0}
    assert {s: v["batches"] for s, v in a["states"].items()} == {
        "QUEUE": 1,
        "PROCESSING": 1,
        "DONE": 4,
        "HELD": 1,
        "ERROR": 1,
    }
    assert a["images"] == 39 and a["mb"] == 24.0
    assert b["states"]["DONE"] == {"batches": 1, "images": 4, "mb": 2.0}
    assert body["total"]["batches"] == 11 and body["total"]["states"]["DONE"]["mb"] == 26.0
    assert body["since"] is None and body["until"] is None
    _no_phi(response.text)


def test_totals_in_a_date_range_and_for_one_dag(client):
    # the day before T0 holds only a008; dates are whole days, the end day included
    day_before = client.get(
        "/sendit/api/totals", params={"since": "2024-02-29", "until": "2024-02-29"}
    )
    assert day_before.json()["total"]["states"] == {"DONE": {"batches": 1, "images": 1, "mb": 1.0}}
    assert day_before.json()["since"] == "2024-02-29T00:00:00Z"
    assert day_before.json()["until"] == "2024-03-01T00:00:00Z"
    only_b = client.get("/sendit/api/totals", params={"dag_id": "sendit_b"}).json()
    assert [d["dag_id"] for d in only_b["dags"]] == ["sendit_b"]
    assert only_b["total"]["batches"] == 3


def test_dates_are_days_of_the_readers_time_zone(client):
    # 2024-03-01 in Tokyo (UTC+9) ends at 15:00 UTC: everything of T0's day is in it; in
    # Honolulu (UTC-10) it starts at 10:00 UTC, so only what changed from T0 on
    tokyo = client.get("/sendit/api/totals", params={"since": "2024-03-01", "tz": "Asia/Tokyo"})
    assert tokyo.json()["since"] == "2024-02-29T15:00:00Z"
    assert tokyo.json()["total"]["batches"] == 10
    hawaii = {"since": "2024-03-01", "until": "2024-03-01", "tz": "Pacific/Honolulu"}
    rows = client.get("/sendit/api/batches", params=hawaii).json()
    assert rows["since"] == "2024-03-01T10:00:00Z" and rows["total"] == 10
    exact = {"since": f"{T0 + 30 * 60}", "until": "2024-03-01T11:00:00+00:00"}
    assert client.get("/sendit/api/batches", params=exact).json()["total"] == 5


def test_a_bad_filter_is_a_400_naming_it(client):
    bad_date = client.get("/sendit/api/totals", params={"since": "last tuesday"})
    assert bad_date.status_code == 400 and "last tuesday" in bad_date.json()["detail"]
    bad_zone = client.get(
        "/sendit/api/batches", params={"since": "2024-03-01", "tz": "Mars/Olympus"}
    )
    assert bad_zone.status_code == 400 and "time zone" in bad_zone.json()["detail"]
    backwards = client.get(
        "/sendit/api/totals", params={"since": "2024-03-02", "until": "2024-03-01"}
    )
    assert backwards.status_code == 400
    assert client.get("/sendit/api/throughput", params={"bucket": 7}).status_code == 400
    for nonsense in ("1e300", "nan", "-5", "0001-01-01"):
        answer = client.get("/sendit/api/batches", params={"since": nonsense})
        assert answer.status_code == 400, nonsense
    assert client.get("/sendit/api/totals", params={"until": "9999-12-31"}).status_code == 400
    # the chart has at most 2400 bars: a decade is refused there, not in the totals
    decade = {"since": "2014-01-01", "until": "2024-12-31"}
    assert client.get("/sendit/api/throughput", params=decade).status_code == 400
    assert client.get("/sendit/api/totals", params=decade).json()["total"]["batches"] == 11
    page = client.get("/sendit/", params=decade).text
    assert "too long for the chart" in page and "DONE 5" in page


# ---- throughput --------------------------------------------------------------------------


def test_throughput_in_hourly_buckets_of_done_batches(client):
    window = {"since": f"{T0}", "until": f"{T0 + 4 * 3600}"}
    body = client.get("/sendit/api/throughput", params=window).json()
    assert body["bucket_minutes"] == 60
    buckets = body["buckets"]
    assert [b["start"] for b in buckets] == [
        "2024-03-01T10:00:00Z",
        "2024-03-01T11:00:00Z",
        "2024-03-01T12:00:00Z",
        "2024-03-01T13:00:00Z",
    ]
    first, second = buckets[0], buckets[1]
    # a001 + a002 + b001 (ERROR, HELD and the rest are not throughput)
    assert (first["batches"], first["images"], first["mb"]) == (3, 34, 22.0)
    assert first["mb_per_min"] == round(22 / 60, 4) and first["images_per_h"] == 34
    assert (second["batches"], second["images"], second["mb"]) == (1, 6, 3.0)
    assert buckets[2]["batches"] == buckets[3]["batches"] == 0  # empty buckets are listed
    assert body["total"] == {
        "batches": 4,
        "images": 40,
        "mb": 25.0,
        "mb_per_min": round(25 / 240, 4),
        "images_per_h": 10.0,
    }
    one_dag = client.get("/sendit/api/throughput", params={**window, "dag_id": "sendit_b"}).json()
    assert [b["batches"] for b in one_dag["buckets"]] == [1, 0, 0, 0]


def test_throughput_buckets_follow_the_window_and_the_readers_clock(client):
    quarter = {"since": f"{T0}", "until": f"{T0 + 3600}", "bucket": 15}
    body = client.get("/sendit/api/throughput", params=quarter).json()
    assert [b["batches"] for b in body["buckets"]] == [1, 2, 0, 0]
    # a month at most 240 bars: the buckets widen (3 h)
    month = client.get(
        "/sendit/api/throughput", params={"since": "2024-02-01", "until": "2024-03-01"}
    )
    assert month.json()["bucket_minutes"] == 180 and len(month.json()["buckets"]) <= 240
    # days start at the reader's midnight: Kolkata is UTC+05:30
    days = {"since": "2024-02-29", "until": "2024-03-01", "tz": "Asia/Kolkata", "bucket": 1440}
    body = client.get("/sendit/api/throughput", params=days).json()
    assert [b["start"] for b in body["buckets"]] == ["2024-02-28T18:30:00Z", "2024-02-29T18:30:00Z"]
    assert [b["batches"] for b in body["buckets"]] == [1, 4]


def test_throughput_without_a_window_fits_the_deliveries_of_the_last_48_hours(dags):
    now = T0 + 2 * 3600 + 5
    body = queries.throughput(now=now)
    # from a008's delivery (the day before) to now: 26 h in half hours, not 48 empty hours
    assert body["bucket_minutes"] == 30 and len(body["buckets"]) == 53  # the last is partial
    assert body["since"] == "2024-02-29T10:00:00Z" and body["until"] == "2024-03-01T12:00:05Z"
    assert body["total"]["batches"] == 5  # a008 of the day before, and the four of T0
    # sendit_b's one delivery 7 minutes ago: seven one-minute bars
    nothing_before = queries.throughput(now=T0 + 22 * 60, dag_id="sendit_b")
    assert nothing_before["bucket_minutes"] == 1 and len(nothing_before["buckets"]) == 7
    assert [b["batches"] for b in nothing_before["buckets"]] == [1, 0, 0, 0, 0, 0, 0]
    # nothing delivered in the last 48 hours: the 48 hours in hours
    empty = queries.throughput(now=T0 + 30 * 24 * 3600)
    assert empty["bucket_minutes"] == 60 and empty["total"]["batches"] == 0


def test_a_reprocess_keeps_the_earlier_delivery_in_the_chart(dags):
    ledger = dags["sendit_b"]
    first = _save(ledger, "b00000000000b009", "DONE", T0 + 5 * 60, images=3, bytes_in=1_000_000)
    ledger.confirm_delivery(first)
    # reprocessed an hour later: the record is DONE again, delivered again
    again = _save(ledger, "b00000000000b009", "DONE", T0 + 65 * 60, images=3, bytes_in=1_000_000)
    ledger.confirm_delivery(again)
    window = queries.Window(T0, T0 + 2 * 3600)
    body = queries.throughput("sendit_b", window)
    # b001 (DONE before the delivery log: counted from its record) and b009 twice
    assert [b["batches"] for b in body["buckets"]] == [2, 1]
    assert body["total"]["images"] == 4 + 3 + 3


# ---- rows, links, stages, held images ------------------------------------------------------


def test_batches_filtered_by_state_and_dag_with_links_to_runs_and_logs(client):
    body = client.get("/sendit/api/batches", params={"state": "ERROR"}).json()
    assert body["total"] == 2
    rows = {r["batch_id"]: r for r in body["batches"]}
    run = "dags/sendit_a/runs/manual__2024-03-01T10%3A00%3A00%2B00%3A00"
    a = rows["b00000000000a004"]
    assert a["run_path"] == run and a["run_id"] == RUN
    # the ERROR came from the filter step: its (mapped) task's instance that ran the batch
    assert a["log_task"] == "filter_images"
    assert a["log_path"] == f"{run}/tasks/filter_images/mapped/1"
    b = rows["b00000000000b002"]  # fused layout: the step ran in process_and_deliver
    # a record without map_index (written before it was kept): the list of the chunks
    assert b["log_path"].endswith("/tasks/process_and_deliver/mapped")
    # times to the second, plus the instant for scripts
    assert a["changed"] == "2024-03-01T10:30:00Z" and a["changed_ts"] == T0 + 1800
    done = client.get("/sendit/api/batches", params={"state": "DONE", "dag_id": "sendit_a"}).json()
    assert done["total"] == 4 and [r["batch_id"][-4:] for r in done["batches"]] == [
        "a003",
        "a002",
        "a001",
        "a008",
    ]
    assert done["batches"][0]["log_path"].endswith("/tasks/deliver")
    page = client.get("/sendit/api/batches", params={"offset": 2, "limit": 3}).json()
    assert page["total"] == 11 and len(page["batches"]) == 3


def test_running_batches_with_their_stage(client):
    rows = client.get("/sendit/api/running").json()["batches"]
    assert [(r["batch_id"][-4:], r["state"], r["label"]) for r in rows] == [
        ("b003", "DONEPROCESSING", "packaged and verified; delivery next"),
        ("a006", "PROCESSING", "pseudonymized; headers next"),
        ("a007", "QUEUE", "queued"),
    ]
    assert rows[1]["last_step"] == "pseudonymize" and rows[1]["last_step_ts"] == T0 + 48 * 60
    _no_phi(json.dumps(rows))


def test_held_images_with_reasons_and_masked_thumbnails(client):
    held = client.get("/sendit/api/held").json()["batches"]
    assert [h["batch_id"] for h in held] == ["b00000000000a005"]
    image = held[0]["held"][0]
    assert image["reason"] == "text remains after masking" and image["boxes"] == [[1, 2, 30, 12]]
    assert image["thumbnail"] == "review/b00000000000a005/0001_0001.png"
    one = client.get("/sendit/api/batches/b00000000000a005/held").json()
    assert one["held"] == held[0]["held"]
    thumb = client.get(f"/sendit/{image['thumbnail']}")
    assert thumb.status_code == 200 and thumb.content == PNG
    assert thumb.headers["content-type"] == "image/png"
    # only the thumbnails the record lists; no path out of the review folder
    assert client.get("/sendit/review/b00000000000a005/0002_0001.png").status_code == 404
    assert client.get("/sendit/review/b00000000000a005/..%2F..%2Fledger.sqlite").status_code == 404
    assert client.get("/sendit/api/batches/bnotabatch/held").status_code == 404
    _no_phi(json.dumps(held))


# ---- the page ------------------------------------------------------------------------------


def test_the_page_shows_totals_chart_running_held_and_batches(client):
    response = client.get("/sendit/")
    assert response.status_code == 200
    text = response.text
    assert "sendit batches" in text and "DONE 5" in text and "ERROR 2" in text
    # links into the Airflow UI: into the frame's parent, with the path for the script
    run = "dags/sendit_a/runs/manual__2024-03-01T10%3A00%3A00%2B00%3A00"
    assert f"href='/{run}' target='_top' data-airflow-path='{run}'" in text
    assert f"href='/{run}/tasks/filter_images/mapped/1'" in text
    # UTC to the second until the script shows the reader's time; never microseconds
    assert "data-ts='1709289000'>2024-03-01 10:30:00 UTC</time>" in text
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", text)
    assert "id='throughput-chart'" in text and "id='throughput-data'" in text
    assert "pseudonymized; headers next" in text
    assert "src='review/b00000000000a005/0001_0001.png'" in text
    assert "text remains after masking" in text
    assert "static/dashboard.js" in text and "static/dashboard.css" in text
    # the chart's library is the package's own copy, loaded before the script that uses it
    assert text.index("src='static/chart.umd.min.js'") < text.index("src='static/dashboard.js'")
    assert "<canvas id='throughput-chart'" in text
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    # batches are in progress: the page reloads itself until none is
    assert "<meta http-equiv='refresh' content='10'>" in text
    _no_phi(text)


def test_the_page_filters_keep_each_other(client):
    text = client.get("/sendit/", params={"dag_id": "sendit_b", "state": "ERROR"}).text
    assert "b00000000000b002" in text and "b00000000000a004" not in text
    assert "<option selected>sendit_b</option>" in text
    # a state chip keeps the DAG filter
    assert "href='?dag_id=sendit_b&amp;state=DONE'" in text
    # sendit_b's DONEPROCESSING batch is in progress; sendit_a's ERROR view has none running
    assert "http-equiv='refresh'" in text
    bad = client.get("/sendit/", params={"since": "soon"})
    assert bad.status_code == 200 and "not a date or time" in bad.text


def test_the_page_stops_reloading_when_nothing_is_in_progress(client, dags):
    for dag, key in (("a", "a006"), ("a", "a007"), ("b", "b003")):
        _save(dags[f"sendit_{dag}"], f"b00000000000{key}", "DONE", T0 + 80 * 60)
    text = client.get("/sendit/").text
    assert "No batch is queued or being processed." in text and "http-equiv" not in text


def test_the_script_and_style_sheet_are_served(client):
    js = client.get("/sendit/static/dashboard.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "throughput-chart" in js.text and "pushState" in js.text
    assert client.get("/sendit/static/dashboard.css").status_code == 200
    # Chart.js, vendored: served from the package, its version and licence beside it
    chart = client.get("/sendit/static/chart.umd.min.js")
    assert chart.status_code == 200 and "javascript" in chart.headers["content-type"]
    assert chart.text.startswith("/*!\n * Chart.js v4.") and "MIT License" in chart.text[:200]
    licence = resources.files("sendit_ops.airflow.dashboard").joinpath(
        "static", "chart.js.LICENSE.md"
    )
    assert "Chart.js Contributors" in licence.read_text()
    # only the listed files: not the licence, not a module beside them
    assert client.get("/sendit/static/chart.js.LICENSE.md").status_code == 404
    assert client.get("/sendit/static/../app.py").status_code == 404


# ---- who may see it --------------------------------------------------------------------------


@pytest.fixture
def auth_manager(monkeypatch: pytest.MonkeyPatch):
    """Airflow's simple auth manager, as the API server initialises it."""
    from airflow.api_fastapi.app import create_auth_manager

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "dashboard-test-" + "0" * 64)
    return create_auth_manager()


def test_logged_out_the_page_goes_to_the_login_and_the_api_says_401(dags, auth_manager):
    root = FastAPI()
    root.mount("/sendit", dashboard_app)
    anonymous = TestClient(root)
    page = anonymous.get("/sendit/", params={"state": "DONE"}, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/auth/login?next=%2Fsendit%2F%3Fstate%3DDONE"
    # a stale or forged session cookie: to the login too
    stale_session = TestClient(root, cookies={"_token": "not-a-jwt"})
    stale = stale_session.get("/sendit/", follow_redirects=False)
    assert stale.status_code == 303 and stale.headers["location"].startswith("/auth/login")
    for path in ("/sendit/api/batches", "/sendit/api/totals", "/sendit/api/throughput"):
        response = anonymous.get(path, follow_redirects=False)
        assert response.status_code == 401, path
        assert response.json() == {"detail": "Not authenticated"}
    forged = anonymous.get("/sendit/api/totals", headers={"Authorization": "Bearer nope"})
    assert forged.status_code == 403 and forged.json() == {"detail": "Invalid JWT token"}
    assert anonymous.get("/sendit/review/b00000000000a005/0001_0001.png").status_code == 401


def test_a_held_cine_shows_its_frame_strip_with_outlined_boxes(client, dags):
    """The pixel stage's frame strip, written by the anonymize step into the review folder,
    is on the page: each shown frame numbered from 1, its boxes, the frames left out."""
    from sendit_ops.dicom.pixels import Box, PixelOutcome, thumbnail
    from sendit_ops.pipeline.steps.anonymize import _held_entry

    ledger, key = dags["sendit_a"], "b00000000000a009"
    frames = np.zeros((40, 200, 100, 3), dtype=np.uint8)
    boxes = [Box(10, 20, 60, 40, 2), Box(5, 150, 90, 170, 5)]
    strip, rest = thumbnail.strip(40, [2, 5], lambda f: frames[f], boxes)
    outcome = PixelOutcome(
        False, "the text mask would cover 9.9% of the image", tuple(boxes), frames=40,
        masked_share=0.099, strip=strip, frames_not_shown=rest, rows=200, columns=100,
    )  # fmt: skip
    review = ledger.batch_dir(key) / "review"
    entry = _held_entry("0001_0002.dcm", "high", outcome, review)
    assert [s["file"] for s in entry["strip"]][:2] == ["0001_0002_f0000.png", "0001_0002_f0002.png"]
    _save(ledger, key, "HELD", T0 + 60 * 60, images=1, outputs={"held": [entry]})

    image = client.get(f"/sendit/api/batches/{key}/held").json()["held"][0]
    assert (image["rows"], image["columns"], image["frames"]) == (200, 100, 40)
    shown = [s["frame"] for s in image["strip"]]
    assert {0, 2, 5, 39} <= set(shown) and len(shown) == 2 + thumbnail.SAMPLE
    assert image["not_shown"] == 34 and image["strip"][1]["boxes"] == [
        [10, 20, 60, 40],
        [5, 150, 90, 170],
    ]
    served = client.get(f"/sendit/{image['strip'][1]['url']}")
    assert served.status_code == 200 and served.content == strip[1].png
    picture = np.asarray(Image.open(io.BytesIO(served.content)).convert("RGB"))
    assert np.all(picture == thumbnail.MASKED_OUTLINE, axis=-1).any()  # the outline is there

    text = client.get("/sendit/").text
    article = text[text.index(f"id='held-{key}'") :]
    article = article[: article.index("</article>")]
    assert "frame 3 of 40 · <b>text read here</b> · 2 box(es)" in article
    assert "frame 6 of 40 · <b>text read here</b>" in article
    assert "frame 1 of 40 · 2 box(es)" in article  # a sample frame: the masks, no finding
    assert (
        f"<img src='review/{key}/0001_0002_f0005.png' alt='masked frame 6 of 0001_0002.dcm'"
        in article
    )
    assert "data-not-shown='34'>34 more frame(s) not shown" in article
    assert "100 x 200 px" in article and "x 10-60, y 20-40 (top)" in article
    assert "9.9% of the image" in article
    _no_phi(text)
