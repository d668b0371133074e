"""The dashboard in a real browser inside the real Airflow UI.

A whole Airflow (api-server, scheduler, dag-processor, triggerer on PostgreSQL) runs the demo;
a headless Chromium, driven over the DevTools protocol (a websocket; nothing but the Debian
package ``chromium`` and the ``websockets`` client), then does what a user does: opens the
dashboard logged out and is sent to Airflow's login page, logs in there, finds *sendit
batches* in the *Browse* menu, reads the page inside the UI's frame, filters it, and follows
a batch's links to its DAG run and task in the UI.

Why the DevTools protocol and not ``chromium --dump-dom``: the page is a frame in a
JavaScript application; only a live browser shows whether the menu entry, the frame, the
chart, the reader's local times and the links out of the frame's sandbox work.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import requests
from conftest import ROOT
from test_live_airflow import GOOD, stack_env

from devtools.airflow_stack import AirflowStack, create_database
from sendit_ops.core.ledger import Ledger
from sendit_ops.delivery import outbox as box
from sendit_ops.sample_data import PATIENTS, make_demo_input, write_screen_capture

pytestmark = pytest.mark.live

DAG = "sendit_live"
ZONE = "Australia/Adelaide"  # UTC+09:30 or +10:30: no local time passes for UTC
DOCS_IMG = ROOT / "docs" / "img"  # the screenshots docs/operations.md shows
FRAME = "document.querySelector('iframe[title=\"sendit batches\"]')"
FRAME_DOC = f"{FRAME}.contentDocument"


class Browser:
    """Headless Chromium driven by Selenium through Debian's ``chromium-driver``, with the
    few verbs the tests use; expressions are JavaScript evaluated in the page."""

    def __init__(self, shots: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        driver, chromium = shutil.which("chromedriver"), shutil.which("chromium")
        if driver is None or chromium is None:
            pytest.fail(
                "the dashboard's browser test needs Chromium and its driver: `make test-deps` "
                "installs them (Debian packages chromium, chromium-driver)"
            )
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for arg in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,1000"):  # fmt: skip
            options.add_argument(arg)
        if os.geteuid() == 0:
            options.add_argument("--no-sandbox")  # Chromium refuses to run as root with it
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(driver), options=options)
        self.shots = shots
        self.logs: list[dict[str, Any]] = []

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        return self.driver.execute_script(f"return ({expression});")

    def fetch_status(self, url: str, form: dict[str, str]) -> int:
        """POST ``form`` from the page with the page's cookies (as a forged form would)."""
        return self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {method: 'POST', body: new URLSearchParams(arguments[1]),"
            " redirect: 'manual'}).then(r => done(r.status), e => done(String(e)));",
            url,
            form,
        )

    def wait(self, expression: str, what: str, timeout: float = 60) -> Any:
        """Wait until ``expression`` is truthy; on timeout fail with a screenshot."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.js(expression)
            except Exception:  # the page is changing (navigation, frame not there yet)
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                shot = self.screenshot(what)
                raise AssertionError(
                    f"timed out waiting for {what} at {self.driver.current_url} (screenshot {shot})"
                )
            time.sleep(0.25)

    def screenshot(self, name: str, element: str | None = None, path: Path | None = None) -> Path:
        """The window (or one element) as PNG."""
        path = path or self.shots / (name.replace(" ", "_")[:60] + ".png")
        if element:
            self.js(f"({element}).scrollIntoView({{block: 'start'}})")
            self.js(element).screenshot(str(path))
        else:
            self.driver.save_screenshot(str(path))
        return path

    def goto(self, url: str) -> None:
        """Open a URL in the page."""
        self.driver.get(url)

    def click(self, element: str, frame: str | None = None) -> None:
        """Click an element with the mouse, as a user does (the UI's menus open on pointer
        events); ``frame``: the iframe holding it (``element`` then uses ``document``)."""
        from selenium.webdriver import ActionChains

        if frame:
            self.driver.switch_to.frame(self.js(frame))
        try:
            target = self.js(element.replace(FRAME_DOC, "document"))
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
            ActionChains(self.driver).move_to_element(target).click().perform()
        finally:
            self.driver.switch_to.default_content()

    def type_into(self, field: str, text: str) -> None:
        """Type into a field with the keyboard (React sees the input events)."""
        self.js(field).send_keys(text)

    def errors(self) -> list[str]:
        """Console errors of the dashboard so far (an uncaught exception, a script or style
        the page's Content-Security-Policy refused)."""
        self.logs += self.driver.get_log("browser")
        return [
            e["message"] for e in self.logs if e["level"] == "SEVERE" and "/sendit/" in e["message"]
        ]

    def close(self) -> None:
        """End the browser and its driver."""
        self.driver.quit()


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory):
    """Airflow after the demo: 4 batches DONE (a run of 3, then the rest), 3 ERROR, 1
    EMPTY, 2 HELD (the demo's dose screen capture, and a second one to reject)."""
    root = tmp_path_factory.mktemp("live-dashboard")
    make_demo_input(root / "input")
    # the second a screen recording: the report on frames 3 and 6 of 8 (the frame strip)
    write_screen_capture(
        root / "input" / "ACC20010", PATIENTS[0], "ACC20010", "20240309",
        frames=8, report_on=(2, 5),
    )  # fmt: skip
    db = create_database(f"sendit_dash_{secrets.token_hex(4)}", migrated=True)
    stack = AirflowStack(root / "airflow", ROOT / "dags", db, env=stack_env(root)).start()
    try:
        stack.wait_dag(DAG)
        first = stack.trigger(DAG, {"batches": GOOD})
        assert stack.wait_run(DAG, first) == "success"
        rest = stack.trigger(DAG, {})
        assert stack.wait_run(DAG, rest) == "failed"  # the demo's deliberate ERROR batches
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def browser(tmp_path):
    chromium = Browser(tmp_path)
    try:
        chromium.driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ZONE})
        yield chromium
    finally:
        chromium.close()


def _login(b: Browser, stack: AirflowStack, page: str) -> None:
    """Open ``page`` logged out: Airflow's login page, then back to ``page`` as admin."""
    b.goto(f"{stack.url}{page}")
    b.wait("!!document.querySelector('input[name=password]')", "the login page")
    assert b.js("location.pathname") == "/auth/login"
    assert b.js("new URLSearchParams(location.search).get('next')") == page
    b.type_into("document.querySelector('input[name=username]')", "admin")
    b.type_into("document.querySelector('input[name=password]')", stack.password)
    b.wait("!document.querySelector('button[type=submit]').disabled", "the sign-in button")
    b.click("document.querySelector('button[type=submit]')")
    b.wait(f"location.pathname === '{page.split('?')[0]}'", "the page after logging in")


def _frame_ready(condition: str) -> str:
    return (
        f"(() => {{ const f = {FRAME}; const d = f && f.contentDocument; "
        f"return !!d && d.readyState === 'complete' && ({condition}); }})()"
    )


def test_the_dashboard_inside_the_airflow_ui(browser, demo_stack):
    stack, b = demo_stack, browser

    # logged out: the page sends the browser to Airflow's login, which brings it back
    _login(b, stack, "/sendit/?state=DONE")
    b.wait("document.querySelectorAll('#batch-table tbody tr').length === 4", "4 DONE rows")

    # the UI's Browse menu lists it; it opens inside the UI, in a frame
    b.goto(f"{stack.url}/")
    browse = (
        'document.querySelector(\'nav button[aria-label="Browse"], button[aria-label="Browse"]\')'
    )
    b.wait(f"!!{browse}", "the Browse menu")
    b.click(browse)
    item = (
        "[...document.querySelectorAll('[role=menuitem]')]"
        ".find(e => e.textContent.trim() === 'sendit batches')"
    )
    b.wait(f"!!{item}", "sendit batches in the Browse menu")
    assert b.js(f"{item}.getAttribute('href')").endswith("plugin/sendit-batches")
    b.click(item)
    b.wait(_frame_ready("d.querySelectorAll('#batch-table tbody tr').length > 0"), "the table")
    assert b.js("location.pathname").startswith("/plugin/sendit-batches")
    assert b.js(f"{FRAME_DOC}.documentElement.classList.contains('embedded')")
    rows = b.js(f"{FRAME_DOC}.querySelectorAll('#batch-table tbody tr').length")
    assert rows == 10  # 4 DONE, 3 ERROR, 1 EMPTY, 2 HELD
    text = b.js(f"{FRAME_DOC}.body.innerText")
    assert "DONE 4" in text and "ERROR 3" in text and "HELD 2" in text
    assert "ACC1000" not in text and "ACC2001" not in text  # never a folder name
    b.screenshot("batches page", path=DOCS_IMG / "batches-page.png")

    # the chart fits the deliveries of these few minutes: minute bars, not 48 empty hours
    # (drawn by Chart.js, the package's own copy, on a canvas: read back from its chart object)
    chart = f"{FRAME_DOC}.getElementById('throughput-chart')"
    b.wait(f"{chart}.dataset.drawn === '1'", "the chart")
    drawn = b.js(
        f"(() => {{ const c = {FRAME}.contentWindow.Chart.getChart({chart}); return {{"
        "types: c.data.datasets.map(d => d.type), data: c.data.datasets.map(d => d.data),"
        "axes: c.data.datasets.map(d => d.yAxisID), ticks: c.scales.x.ticks.length,"
        f"width: c.width, bars: Number({chart}.dataset.bars) }}; }})()"
    )
    mb, images = drawn["data"]
    assert drawn["types"] == ["bar", "line"] and drawn["axes"] == ["mb", "images"], drawn
    assert 1 <= len(mb) <= 60 and drawn["bars"] == sum(v > 0 for v in mb) >= 1, drawn
    assert len(images) == len(mb) and sum(v > 0 for v in images) >= 1, drawn
    assert drawn["ticks"] >= 1 and drawn["width"] > 300, drawn

    # times in the reader's zone (Adelaide here), to the second
    first = b.js(
        f"(() => {{ const t = {FRAME_DOC}.querySelector('#batch-table time'); "
        "return [Number(t.dataset.ts), t.textContent]; })()"
    )
    local = datetime.fromtimestamp(first[0], ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S")
    assert first[1] == local
    assert ZONE in b.js(f"{FRAME_DOC}.getElementById('tz-name').textContent")

    # the held batches: their reason and masked thumbnail, loaded with the session
    held = f"{FRAME_DOC}.querySelector('.held-batch')"
    assert "more than pixel_mask_max_share" in b.js(f"{held}.innerText")
    b.wait(f"{held}.querySelector('img').naturalWidth > 100", "the masked thumbnail")

    # filtering reloads the frame and the UI's address follows it (a link to this view)
    state = f"{FRAME_DOC}.querySelector('select[name=state]')"
    b.js(f"{state}.value = 'ERROR', {state}.dispatchEvent(new Event('change', {{bubbles: true}}))")
    b.wait(
        "location.search.includes('state=ERROR')"
        f" && {FRAME_DOC}.querySelectorAll('#batch-table tbody tr').length === 3",
        "the ERROR rows",
    )
    assert b.js("new URLSearchParams(location.search).get('tz')") == ZONE
    states = b.js(
        f"[...{FRAME_DOC}.querySelectorAll('#batch-table tbody tr')].map(r => r.dataset.state)"
    )
    assert states == ["ERROR"] * 3

    # a batch's log link opens its task in the UI, out of the frame
    log = f"{FRAME_DOC}.querySelector('#batch-table a[data-airflow-path*=\"/tasks/\"]')"
    path = b.js(f"{log}.dataset.airflowPath")
    b.click(log, frame=FRAME)
    b.wait(f"location.pathname === '/{path}'", "the task page")
    task = path.split("/tasks/")[1].split("/")[0]
    b.wait(f"document.body.innerText.includes('{task}')", "the task's name on its page")

    # a batch's run link opens its DAG run, which exists
    b.goto(f"{stack.url}/plugin/sendit-batches/sendit/?state=DONE")
    b.wait(_frame_ready("d.querySelectorAll('#batch-table tbody tr').length === 4"), "DONE rows")
    link = f"{FRAME_DOC}.querySelector('#batch-table a[data-airflow-path*=\"/runs/\"]')"
    run_id = b.js(f"{link}.title")
    path = b.js(f"{link}.dataset.airflowPath")
    assert path == f"dags/{DAG}/runs/{quote(run_id, safe='')}"
    assert stack.api("GET", f"/api/v2/dags/{DAG}/dagRuns/{run_id}").status_code == 200
    b.click(link, frame=FRAME)
    b.wait(f"location.pathname === '/{path}'", "the DAG run page")
    b.wait(f"document.body.innerText.includes({json.dumps(run_id)})", "the run id on its page")
    assert b.js(f"!{FRAME}")  # the UI left the plugin page: no frame any more

    assert b.errors() == []


def test_the_json_api_answers_401_to_a_logged_out_client(demo_stack):
    for path in ("batches", "totals", "throughput", "running", "held"):
        response = requests.get(f"{demo_stack.url}/sendit/api/{path}", timeout=10)
        assert response.status_code == 401, path
        assert response.json() == {"detail": "Not authenticated"}
    totals = demo_stack.api("GET", "/sendit/api/totals").json()
    assert totals["total"]["states"]["DONE"]["batches"] == 4


def _held_ids(stack: AirflowStack) -> list[str]:
    return [b["batch_id"] for b in stack.api("GET", "/sendit/api/held").json()["batches"]]


def _decide(b: Browser, stack: AirflowStack, key: str, decision: str) -> str:
    """Press a held batch's Release or Reject button; the run it triggered, finished."""
    button = f"document.querySelector('#held-{key} button[value={decision}]')"
    b.click(button)
    b.wait(f"location.search.includes('reviewed={key}')", f"the page after the {decision}")
    assert f"Sent: {decision} of batch {key} by admin" in b.js("document.body.innerText")
    (review,) = [r for r in stack.api("GET", "/sendit/api/reviews").json()["reviews"]
                 if r["batch_id"] == key]  # fmt: skip
    assert stack.wait_run(DAG, review["run_id"]) in ("success", "failed")  # ERRORs stay
    return review["run_id"]


def test_a_reviewer_releases_one_held_batch_and_rejects_another(browser, demo_stack, tmp_path):
    stack, b = demo_stack, browser
    root = stack.home.parent
    ledger = Ledger(root / "work", DAG)
    release, reject = _held_ids(stack)
    _login(b, stack, "/sendit/")
    desk = "document.getElementById('held')"
    b.wait(f"[...{desk}.querySelectorAll('img')].every(i => i.naturalWidth > 100)", "pictures")
    for key in (release, reject):
        text = b.js(f"document.getElementById('held-{key}').innerText")
        assert "more than pixel_mask_max_share" in text and "% of the image" in text
        assert "DOSE" not in text and "MRN" not in text  # never the text OCR read
    # the recording's frame strip: the frame with the report, a sample of the others, each
    # numbered from 1 and outlined in magenta (the black masks alone are invisible on it)
    frames = b.js(f"[...{desk}.querySelectorAll('figure.frame')].map(f => f.dataset.frame)")
    assert {"1", "3", "8"} <= set(frames) and len(frames) >= 6, frames
    assert "frame 3 of 8 · text read here" in b.js(f"{desk}.innerText")
    outlined = b.js(
        f"""(() => {{ const img = {desk}.querySelector("figure.frame[data-frame='3'] img");
        const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4)
          if (d[i] === 255 && d[i + 1] === 0 && d[i + 2] === 255) n++;
        return n; }})()"""
    )
    assert outlined > 100, outlined
    b.screenshot("review desk", element=desk, path=DOCS_IMG / "review-desk.png")

    # forged decisions are refused: no CSRF token, another token, no session
    url = f"{stack.url}/sendit/review/{DAG}/{release}"
    assert b.fetch_status(url, {"decision": "release"}) == 403
    assert b.fetch_status(url, {"decision": "release", "csrf": "0" * 64}) == 403
    token = b.js("document.querySelector('input[name=csrf]').value")
    logged_out = requests.post(url, data={"decision": "release", "csrf": token}, timeout=30)
    assert logged_out.status_code == 401
    assert ledger.reviews() == [] and ledger.get(release).state == "HELD"
    forged = b.errors()  # the browser logs the two refused requests; nothing else failed
    assert len(forged) == 2 and all("403 (Forbidden)" in e for e in forged), forged
    b.logs.clear()

    # Release: the batch ends DONE with its image, delivered; the ledger names the reviewer
    run_id = _decide(b, stack, release, "release")
    record = ledger.get(release)
    assert record.state == "DONE" and record.outputs.files == ["0001_0001.dcm"]
    assert record.outputs.object_name and record.run_id == run_id
    (review,) = ledger.reviews(key=release)
    assert (review.decision, review.reviewer, review.run_id) == ("release", "admin", run_id)
    assert time.time() - review.decided_at < 600

    # Reject: nothing of it leaves
    b.goto(f"{stack.url}/sendit/")
    rows_before = len(box.read_rows(box.table_path(root / "outbox", "DEMO", "dicom")))
    _decide(b, stack, reject, "reject")
    record = ledger.get(reject)
    assert record.state == "EMPTY" and not record.outputs.object_name
    assert len(box.read_rows(box.table_path(root / "outbox", "DEMO", "dicom"))) == rows_before
    assert [r.decision for r in ledger.reviews()] == ["reject", "release"]

    # the review history on the page
    b.goto(f"{stack.url}/sendit/")
    history = b.js("document.getElementById('review-table').innerText")
    assert release in history and reject in history and "admin" in history
    assert _held_ids(stack) == [] and b.errors() == []
