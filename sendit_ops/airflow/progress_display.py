"""``sendit run``'s progress display: a rich progress bar on a terminal, plain lines in a
file or a pipe (a log must not fill with redraws).

The figures come from the ledger (``core.progress.RunProgress``: batches finished and
delivered, images, MB/s, ETA), read by a thread while the run's tasks work in this process.
Best effort: a ledger not created yet just shows nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from sendit_ops.core.progress import RunProgress


class ProgressDisplay:
    """Draw a run's progress while it works: on a terminal a rich bar (refreshed twice a
    second), else a ``progress: ...`` line every ``plain_every`` seconds when it changed."""

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
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.tty:
            console = Console(file=self.stream, force_terminal=True)
            self._bar = Progress(
                BarColumn(bar_width=24),
                TextColumn("{task.description}"),
                console=console,
                auto_refresh=False,
                transient=False,
            )
            self._bar.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._draw()
        if self._bar is not None:
            self._bar.stop()

    def snapshot(self) -> RunProgress | None:
        """The run's figures now (None: nothing to show yet)."""
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

    def _draw(self) -> None:
        progress = self.snapshot()
        if progress is None:
            return
        text = progress.line()
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(text, total=progress.batches)
            self._bar.update(
                self._task, description=text, completed=progress.finished, total=progress.batches
            )
            self._bar.refresh()
            self._last = text
            return
        if text == self._last:
            return
        self.stream.write("progress: " + text + "\n")
        self.stream.flush()
        self._last = text
