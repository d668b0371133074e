"""Progress of a run you can watch: batches and images done, MB/s, ETA.

An hour-long request must not be silent between "running" and the summary. Two readers
share this module: ``sendit run`` draws a bar from the ledger while its tasks work (a line
every few seconds when not on a terminal), and each task logs a line at a steady pace
(``ProgressLog``). Only counts, rates and batch ids appear: never names or paths.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

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

    def bar(self, width: int = 24) -> str:
        done = int(width * self.finished / self.batches) if self.batches else 0
        return "[" + "#" * done + "." * (width - done) + "] " + self.line()


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
    and at the end), so a task log shows counts and rates while a long chunk works."""

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

    def batch_done(self, images: int = 0, bytes_in: int = 0) -> None:
        self.done += 1
        self.images += images
        self.bytes += bytes_in
        now = self.clock()
        if now - self.last >= self.every and self.done < self.total:
            self.last = now
            self.emit(self._line(now))

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


class ProgressDisplay:
    """``sendit run``'s progress: a thread reads the run's batches from the ledger and
    draws a bar on a terminal (redrawn in place twice a second), or prints a plain line
    every ``plain_every`` seconds when the output is a file or a pipe (only when it
    changed). Best effort: a ledger not created yet just shows nothing."""

    def __init__(
        self,
        read: Callable[[], tuple[dict[str, int], int, int]],
        stream: TextIO,
        plain_every: float = 10.0,
    ):
        self.read, self.stream, self.plain_every = read, stream, plain_every
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sendit-progress", daemon=True)
        self._last = ""

    def __enter__(self) -> ProgressDisplay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._draw(final=True)
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()

    def snapshot(self) -> RunProgress | None:
        try:
            states, images, size = self.read()
        except Exception:  # the ledger may not exist yet; progress is only a display
            return None
        if not states:
            return None
        return RunProgress.from_counts(states, images, size, time.monotonic() - self.started)

    def _loop(self) -> None:
        while not self._stop.wait(0.5 if self.tty else self.plain_every):
            self._draw()

    def _draw(self, final: bool = False) -> None:
        progress = self.snapshot()
        if progress is None:
            return
        if self.tty:
            text = progress.bar()
            self.stream.write("\r" + text.ljust(len(self._last)))
        else:
            text = progress.line()
            if text == self._last:
                return
            self.stream.write("progress: " + text + "\n")
        self._last = text
        self.stream.flush()
