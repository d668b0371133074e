"""Progress you can watch: the figures of a run (counts, MB/s, ETA), a task's steady log
lines, and the CLI's display (a bar on a terminal, plain lines in a pipe)."""

from __future__ import annotations

import io
import threading

import pytest

from sendit_ops.airflow.progress_display import ProgressDisplay
from sendit_ops.core.progress import ProgressLog, RunProgress, duration

pytestmark = pytest.mark.unit


def test_figures_of_a_run() -> None:
    p = RunProgress.from_counts(
        {"DONE": 8, "ERROR": 1, "EMPTY": 1, "PROCESSING": 5, "QUEUE": 5},
        images=400,
        bytes_in=200_000_000,
        elapsed=20.0,
    )
    assert (p.batches, p.finished, p.delivered) == (20, 10, 8)
    assert p.mb_per_s == pytest.approx(10.0)
    assert p.eta_seconds == pytest.approx(20.0)  # 10 left at 2 s each
    assert p.line() == "10/20 batches (8 delivered) · 400 images · 10.0 MB/s · ETA 20s"


def test_no_eta_before_a_batch_finished() -> None:
    p = RunProgress.from_counts({"QUEUE": 3}, 0, 0, 5.0)
    assert p.eta_seconds is None and p.line().endswith("ETA —")


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.4, "59s"), (125, "2m05s"), (3720, "1h02m")]
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_task_log_lines_at_a_steady_pace() -> None:
    now = [0.0]
    lines: list[str] = []
    log = ProgressLog("filter", 10, lines.append, every=30, clock=lambda: now[0])
    for _ in range(10):
        now[0] += 10  # a batch every 10 s: a line every third batch
        log.batch_done(images=50, bytes_in=5_000_000)
    log.close()
    assert len(lines) == 4  # at 30, 60, 90 s, and the end
    assert lines[0] == "filter: 3/10 batches, 150 images, 0.5 MB/s, 360 batches/h, ETA 1m10s"
    assert lines[-1].startswith("filter: 10/10 batches, 500 images")


def test_a_short_step_logs_nothing_extra() -> None:
    lines: list[str] = []
    log = ProgressLog("package", 2, lines.append, every=30)
    log.batch_done(1, 1)
    log.batch_done(1, 1)
    log.close()
    assert lines == []


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_display_draws_a_bar_on_a_terminal_and_lines_in_a_pipe() -> None:
    counts = ({"DONE": 1, "QUEUE": 1}, 10, 1_000_000)
    tty = _Tty()
    with ProgressDisplay(lambda: counts, tty):
        pass
    drawn = tty.getvalue()
    assert "━" in drawn and "1/2 batches (1 delivered)" in drawn  # rich's bar and the figures
    pipe = io.StringIO()
    with ProgressDisplay(lambda: counts, pipe, plain_every=0.01):
        pass
    out = pipe.getvalue().splitlines()
    assert out and all(line.startswith("progress: 1/2 batches") for line in out)
    assert len(out) == len(set(out))  # a line only when something changed


def test_display_before_the_ledger_exists_shows_nothing() -> None:
    def missing() -> tuple[dict[str, int], int, int]:
        raise FileNotFoundError

    out = io.StringIO()
    with ProgressDisplay(missing, out, plain_every=0.01):
        pass
    assert out.getvalue() == ""


def test_a_long_batch_logs_its_images_at_least_every_30_s() -> None:
    """The heartbeat's check, with a fake clock: one batch working for 95 s (OCR over many
    images) gives a line at 30, 60 and 90 s naming the batch and its images done."""
    now = [0.0]
    lines: list[str] = []
    log = ProgressLog("anonymize", 3, lines.append, every=30, clock=lambda: now[0])
    log.batch_done(10, 1_000_000)  # the first batch was quick
    log.begin("b1f00dfeedbeef00")
    for second in range(1, 96):
        now[0] = float(second)
        log.images_done(second * 40 // 95, 40)
        log.poll()  # what the heartbeat thread calls every second
    assert lines == [
        "anonymize: batch b1f00dfeedbeef00 (2/3 batches): 12/40 images, 30 s",
        "anonymize: batch b1f00dfeedbeef00 (2/3 batches): 25/40 images, 60 s",
        "anonymize: batch b1f00dfeedbeef00 (2/3 batches): 37/40 images, 90 s",
    ]
    log.batch_done(40, 4_000_000)
    now[0] = 200.0
    log.poll()  # between batches nothing is in work: no heartbeat line
    assert len(lines) == 3


def test_a_step_without_image_counts_still_logs_the_batch_and_its_time() -> None:
    now = [0.0]
    lines: list[str] = []
    log = ProgressLog("filter", 1, lines.append, every=30, clock=lambda: now[0])
    log.begin("b0123456789abcde")
    now[0] = 29.0
    log.poll()
    now[0] = 31.0
    log.poll()
    assert lines == ["filter: batch b0123456789abcde (1/1 batches): 31 s"]


def test_the_heartbeat_thread_polls_while_the_step_works_and_stops_after() -> None:
    now = [0.0]
    lines: list[str] = []
    seen = threading.Event()

    def clock() -> float:
        now[0] += 31.0  # every look at the clock: 31 s later
        return now[0]

    def emit(line: str) -> None:
        lines.append(line)
        seen.set()

    log = ProgressLog("anonymize", 1, emit, every=30, clock=clock)
    log.begin("b0123456789abcde")
    with log.heartbeat(check_every=0.001):
        assert seen.wait(30), "the heartbeat thread never polled"
    count = len(lines)
    assert lines[0].startswith("anonymize: batch b0123456789abcde (1/1 batches): ")
    assert not any(t.name == "progress-anonymize" for t in threading.enumerate())
    log.poll()  # the thread is gone: only this call can add a line
    assert len(lines) == count + 1
