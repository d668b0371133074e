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

import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import requests
from conftest import ROOT
from test_live_airflow import GOOD, stack_env
from websockets.sync.client import connect

from devtools.airflow_stack import AirflowStack, create_database
from sendit_ops.core.ledger import Ledger
from sendit_ops.core.records import BatchRecord
from sendit_ops.sample_data import make_demo_input

pytestmark = pytest.mark.live

DAG = "sendit_live"
ZONE = "Australia/Adelaide"  # UTC+09:30 or +10:30: no local time passes for UTC
HELD_KEY = "b0d15ab0a4d0e1d0"  # a made-up held batch, so the review section has a thumbnail
FRAME = "document.querySelector('iframe[title=\"sendit batches\"]')"
FRAME_DOC = f"{FRAME}.contentDocument"


class Chromium:
    """A headless Chromium and one page of it, driven over the DevTools protocol."""

    def __init__(self, profile: Path, shots: Path):
        exe = shutil.which("chromium")
        if exe is None:
            pytest.fail(
                "the dashboard's browser test needs Chromium: `make test-deps` installs it "
                "(Debian package chromium)"
            )
        profile.mkdir(parents=True, exist_ok=True)
        self.shots = shots
        args = [
            exe,
            "--headless",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-port=0",  # the port it chose is written to DevToolsActivePort
            f"--user-data-dir={profile}",
            "--window-size=1400,1000",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=(profile / "chromium.log").open("w"),
            start_new_session=True,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while True:
            try:
                port = int(port_file.read_text().split()[0])
                pages = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                target = next(p for p in pages if p["type"] == "page")
                break
            except (OSError, ValueError, IndexError, StopIteration, requests.RequestException) as e:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    log = profile / "chromium.log"
                    raise RuntimeError(f"Chromium did not start; see {log}") from e
                time.sleep(0.2)
        self.exit = ExitStack()
        self.ws = self.exit.enter_context(
            connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        )
        self.calls = 0
        self.events: list[dict[str, Any]] = []
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; events arriving meanwhile are kept in ``events``."""
        self.calls += 1
        call = self.calls
        self.ws.send(json.dumps({"id": call, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == call:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def js(self, expression: str) -> Any:
        """Evaluate JavaScript in the page (promises awaited); its value as JSON."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression: str, what: str, timeout: float = 60) -> Any:
        """Wait until ``expression`` is truthy; on timeout fail with a screenshot."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.js(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                shot = self.screenshot(what)
                raise AssertionError(
                    f"timed out waiting for {what} at {self.js('location.href')} "
                    f"(screenshot {shot})"
                )
            time.sleep(0.25)

    def screenshot(self, name: str) -> Path:
        """The page as PNG, for a failure message."""
        import base64

        path = self.shots / (name.replace(" ", "_")[:60] + ".png")
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot")["data"]))
        return path

    def goto(self, url: str) -> None:
        """Open a URL in the page."""
        self.send("Page.navigate", url=url)

    def click(self, element: str, frame: str | None = None) -> None:
        """Click an element with the mouse, as a user does (the UI's menus open on pointer
        events, not on a scripted ``click()``); ``frame``: the iframe holding it."""
        self.js(f"({element}).scrollIntoView({{block: 'center'}})")
        box = self.js(
            f"(() => {{ const r = ({element}).getBoundingClientRect(); "
            "return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        if frame:
            origin = self.js(
                f"(() => {{ const r = ({frame}).getBoundingClientRect(); return [r.x, r.y]; }})()"
            )
            box = [box[0] + origin[0], box[1] + origin[1]]
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                type=kind,
                x=box[0],
                y=box[1],
                button="left",
                clickCount=1,
            )

    def type_into(self, field: str, text: str) -> None:
        """Focus a field and type, as the keyboard would (React sees the input events)."""
        self.js(f"({field}).focus()")
        self.send("Input.insertText", text=text)

    def errors(self) -> list[str]:
        """Uncaught exceptions and console errors (a refused script or style: the page's
        Content-Security-Policy) of the dashboard so far."""
        found = []
        for event in self.events:
            if event.get("method") == "Runtime.exceptionThrown":
                details = json.dumps(event["params"]["exceptionDetails"])
                if "/sendit/" in details:  # ours, not the Airflow UI's
                    found.append(details[:500])
            elif event.get("method") == "Log.entryAdded":
                entry = event["params"]["entry"]
                if entry["level"] == "error" and "/sendit/" in entry.get("url", ""):
                    found.append(f"{entry['url']}: {entry['text']}")
        return found

    def close(self) -> None:
        """End the browser and its child processes (its own process group)."""
        if hasattr(self, "exit"):
            self.exit.close()  # the websocket
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (64, 48), 90).save(out, format="PNG")
    return out.getvalue()


def _held_batch(root: Path) -> None:
    """A HELD batch as the pixel stage leaves one: its record and its masked thumbnail."""
    ledger = Ledger(root / "work", DAG)
    held = [
        {
            "file": "US_0001.dcm",
            "held_reason": "text remains after masking",
            "boxes": [{"x0": 2, "y0": 2, "x1": 40, "y1": 10}],
            "thumbnail": "0001_0001.png",
        }
    ]
    now = round(time.time(), 3)
    ledger.save(
        BatchRecord(
            key=HELD_KEY,
            dag_id=DAG,
            source_path=str(root / "input" / "held-study"),
            state="HELD",
            reasons=["pixels: 1 image held for review (burned-in text)"],
            outputs={"held": held},
            history=[[now, "HELD", ""]],
        )
    )
    review = ledger.batch_dir(HELD_KEY) / "review"
    review.mkdir(parents=True, exist_ok=True)
    (review / "0001_0001.png").write_bytes(_png())


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory):
    """Airflow after the demo: 4 batches DONE (a run of 3, then the rest), 3 ERROR, 1
    EMPTY; plus one HELD batch."""
    root = tmp_path_factory.mktemp("live-dashboard")
    make_demo_input(root / "input")
    db = create_database(f"sendit_dash_{secrets.token_hex(4)}")
    stack = AirflowStack(root / "airflow", ROOT / "dags", db, env=stack_env(root)).start()
    try:
        stack.wait_dag(DAG)
        first = stack.trigger(DAG, {"batches": GOOD})
        assert stack.wait_run(DAG, first) == "success"
        rest = stack.trigger(DAG, {})
        assert stack.wait_run(DAG, rest) == "failed"  # the demo's deliberate ERROR batches
        _held_batch(root)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def browser(tmp_path):
    chromium = Chromium(tmp_path / "profile", tmp_path)
    try:
        chromium.send("Emulation.setTimezoneOverride", timezoneId=ZONE)
        yield chromium
    finally:
        chromium.close()


def _frame_ready(condition: str) -> str:
    return (
        f"(() => {{ const f = {FRAME}; const d = f && f.contentDocument; "
        f"return !!d && d.readyState === 'complete' && ({condition}); }})()"
    )


def test_the_dashboard_inside_the_airflow_ui(browser, demo_stack):
    stack, b = demo_stack, browser

    # logged out: the page sends the browser to Airflow's login, which brings it back
    b.goto(f"{stack.url}/sendit/?state=DONE")
    b.wait("!!document.querySelector('input[name=password]')", "the login page")
    assert b.js("location.pathname") == "/auth/login"
    assert b.js("new URLSearchParams(location.search).get('next')") == "/sendit/?state=DONE"
    b.type_into("document.querySelector('input[name=username]')", "admin")
    b.type_into("document.querySelector('input[name=password]')", stack.password)
    b.wait("!document.querySelector('button[type=submit]').disabled", "the sign-in button")
    b.click("document.querySelector('button[type=submit]')")
    b.wait("location.pathname === '/sendit/'", "the dashboard after logging in")
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
    assert rows == 9  # 4 DONE, 3 ERROR, 1 EMPTY, 1 HELD
    text = b.js(f"{FRAME_DOC}.body.innerText")
    assert "DONE 4" in text and "ERROR 3" in text and "HELD 1" in text
    assert "ACC1000" not in text and "held-study" not in text  # never a folder name

    # the chart is drawn: a bar per hour of the last 48 h, the hour of the runs not empty
    chart = f"{FRAME_DOC}.getElementById('throughput-chart')"
    b.wait(f"{chart}.dataset.drawn === '1'", "the chart")
    bars = b.js(f"[...{chart}.querySelectorAll('rect.bar')].map(r => r.getBBox().height)")
    assert len(bars) in (48, 49) and sum(h > 0 for h in bars) >= 1, bars
    assert b.js(f"{chart}.querySelector('path.line').getAttribute('d').length") > 10

    # times in the reader's zone (Adelaide here), to the second
    first = b.js(
        f"(() => {{ const t = {FRAME_DOC}.querySelector('#batch-table time'); "
        "return [Number(t.dataset.ts), t.textContent]; })()"
    )
    local = datetime.fromtimestamp(first[0], ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S")
    assert first[1] == local
    assert ZONE in b.js(f"{FRAME_DOC}.getElementById('tz-name').textContent")

    # the held batch: its reason and masked thumbnail, loaded with the session
    held = f"{FRAME_DOC}.getElementById('held-{HELD_KEY}')"
    assert "text remains after masking" in b.js(f"{held}.innerText")
    b.wait(f"{held}.querySelector('img').naturalWidth === 64", "the masked thumbnail")

    # filtering reloads the frame and the UI's address follows it (a link to this view)
    state = f"{FRAME_DOC}.querySelector('select[name=state]')"
    b.js(f"{state}.value = 'ERROR'; {state}.dispatchEvent(new Event('change', {{bubbles: true}}))")
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
