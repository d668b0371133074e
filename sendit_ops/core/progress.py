"""Progress of a run you can watch: batches and images done, MB/s, ETA.

An hour-long request must not be silent between "running" and the summary. The figures of
a run (``RunProgress``, read from the ledger) are shown by ``sendit run``'s display
(``sendit_ops.airflow.progress_display``, a rich progress bar), and each task logs a line at
a steady pace (``ProgressLog``). Only counts, rates and batch ids appear: never names or
paths.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sendit_ops.core.lifecycle import FINAL_STATES, State


@dataclass(frozen=True)
class RunProgress:
    """A snapshot of one run's batches (from the ledger)."""

    batches: int  # chosen for the run
    finished: int  # in a final state (DONE, HELD, EMPTY, ERROR)
    delivered: int  # DONE
    images: int  # accepted images of the batches past the filter step
    megabytes: float  # input size of the batches past the filter step
    elapsed: float  # seconds since the run started

    @classmethod
    def from_counts(
        cls, states: dict[str, int], images: int, bytes_in: int, elapsed: float
    ) -> RunProgress:
        finished = sum(n for s, n in states.items() if s in FINAL_STATES)
        return cls(
            batches=sum(states.values()),
            finished=finished,
            delivered=states.get(State.DONE, 0),
            images=images,
            megabytes=bytes_in / 1e6,
            elapsed=elapsed,
        )

    @property
    def mb_per_s(self) -> float:
        return self.megabytes / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Time left at the pace so far (None until a batch has finished)."""
        if not self.finished or self.elapsed <= 0:
            return None
        return (self.batches - self.finished) * self.elapsed / self.finished

    def line(self) -> str:
        """``12/40 batches (10 delivered) · 600 images · 12.3 MB/s · ETA 2m05s``"""
        eta = self.eta_seconds
        return (
            f"{self.finished}/{self.batches} batches ({self.delivered} delivered) · "
            f"{self.images} images · {self.mb_per_s:.1f} MB/s · "
            f"ETA {'—' if eta is None else duration(eta)}"
        )


def duration(seconds: float) -> str:
    """``45s``, ``2m05s``, ``1h02m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLog:
    """Logs a step's progress over its batches at a steady pace (every ``every`` seconds,
    and at the end), so a task log shows counts and rates while a long chunk works.

    One batch can be long too (OCR over a cine, hundreds of images): while ``heartbeat``
    runs, a line comes at least every ``every`` seconds whatever the step is doing, naming
    the batch (its id) and, when the step reports them (``images``), its images done so
    far, e.g. ``anonymize: batch b1f… (1/3 batches): 12/40 images, 35 s``."""

    def __init__(
        self,
        step: str,
        total: int,
        emit: Callable[[str], None],
        every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.step, self.total, self.emit, self.every, self.clock = step, total, emit, every, clock
        self.started = self.last = clock()
        self.done = self.images = 0
        self.bytes = 0
        # the batch in work: its id, when it began, its images done and in all (0: unknown)
        self.current = ""
        self.current_started = self.started
        self.items_done = self.items_total = 0
        self._lock = threading.Lock()  # the heartbeat thread emits too

    def begin(self, batch_id: str) -> None:
        """A batch's step starts (its id is opaque: no PHI)."""
        with self._lock:
            self.current, self.current_started = batch_id, self.clock()
            self.items_done = self.items_total = 0

    def images_done(self, done: int, total: int) -> None:
        """The step has handled ``done`` of the batch's ``total`` images."""
        self.items_done, self.items_total = done, total

    def batch_done(self, images: int = 0, bytes_in: int = 0) -> None:
        with self._lock:
            self.done += 1
            self.images += images
            self.bytes += bytes_in
            self.current = ""
            now = self.clock()
            if now - self.last >= self.every and self.done < self.total:
                self.last = now
                self.emit(self._line(now))

    def poll(self) -> None:
        """Log the batch in work when no line came for ``every`` seconds (the heartbeat
        calls this; a test may too, with a fake clock)."""
        with self._lock:
            now = self.clock()
            if not self.current or now - self.last < self.every:
                return
            self.last = now
            images = f"{self.items_done}/{self.items_total} images, " if self.items_total else ""
            self.emit(
                f"{self.step}: batch {self.current} ({self.done + 1}/{self.total} batches): "
                f"{images}{now - self.current_started:.0f} s"
            )

    @contextmanager
    def heartbeat(self, check_every: float = 1.0) -> Iterator[None]:
        """Poll in a background thread while the body runs (a long batch logs its
        progress at least every ``every`` seconds, plus ``check_every``)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(check_every):
                self.poll()

        thread = threading.Thread(target=beat, name=f"progress-{self.step}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def close(self) -> None:
        if self.done and self.clock() - self.started >= self.every:
            self.emit(self._line(self.clock()))

    def _line(self, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        left = (self.total - self.done) * elapsed / self.done if self.done else None
        return (
            f"{self.step}: {self.done}/{self.total} batches, {self.images} images, "
            f"{self.bytes / 1e6 / elapsed:.1f} MB/s, "
            f"{self.done / elapsed * 3600:.0f} batches/h, "
            f"ETA {'—' if left is None else duration(left)}"
        )
