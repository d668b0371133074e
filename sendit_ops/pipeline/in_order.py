"""Jobs of a step run by a few long-lived threads while the step's own thread goes on, their
results taken back strictly in the order they were given (issue 22: the anonymize step
cleans the next images' headers while earlier images' pixels are screened).

What the step does with a result (``finish``: write the file, count it in the record) runs
on the step's thread, one result after the other in the order the jobs were put, so the
outcome is the one a sequential run gives. What is in flight (put, not yet finished) is
bounded by a count and by a weight (the decoded pixel bytes): a job that would go over
either waits until the oldest ones are finished (one job alone always fits: a cine of
hundreds of MB runs by itself, small images are the case that pays).

Errors come back as they would sequentially: a job's exception is raised when its turn to
be finished comes, after every job put before it was finished; an exception of the step's
own thread (e.g. reading the next image) first finishes what was put before it. After an
exception, jobs not yet started are cancelled and running ones waited for (no thread works
on a failed batch once the step has returned; after an interrupt such as Ctrl-C, not
waited for).

The threads are the process's, made on first use and kept (``pool``): each keeps its OCR
engine object (``dicom.pixels.ocr.engine``: one per thread over the process's one set of
models) from one batch to the next. They are
not the pixel stage's frame helpers (``stage._helpers``): a job may use those itself.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _forget_pools() -> None:
    """In a forked child: the parent's threads are not there (a pool that believes they
    are would never run a job); the child makes its own."""
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools)


def pool(threads: int) -> ThreadPoolExecutor:
    """The process's pool of ``threads`` job threads (made on first use, then kept)."""
    with _pools_lock:
        if threads not in _pools:
            _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="sendit-images")
        return _pools[threads]


@dataclass(frozen=True)
class _Entry(Generic[K, R]):
    key: K
    weight: int
    future: Future[R]


class InOrder(Generic[K, R]):
    """Jobs run by ``threads`` threads (``threads`` <= 1: each on the calling thread, when
    put, and finished at once: a sequential run), finished in order by ``finish(key,
    result)`` on the calling thread. At most ``most`` jobs and ``budget`` weight in flight.
    Use as a context manager: leaving the block finishes the rest (see the module)."""

    def __init__(
        self, threads: int, finish: Callable[[K, R], None], *, most: int, budget: int
    ) -> None:
        self.threads = threads
        self.finish = finish
        self.most = 1 if threads <= 1 else max(1, most)
        self.budget = budget
        self._pending: deque[_Entry[K, R]] = deque()
        self._weight = 0
        self._broken = False  # a finish (or a job's result) raised: the rest is abandoned

    def put(self, key: K, job: Callable[[], R], weight: int = 0, *, inline: bool = False) -> None:
        """Run ``job`` (in a thread; ``inline``: now, on this thread, e.g. nothing to do but
        a few attributes), after finishing the oldest jobs until this one fits."""
        while self._pending and (
            len(self._pending) >= self.most or self._weight + weight > self.budget
        ):
            self._finish_oldest()
        future: Future[R]
        if inline or self.threads <= 1:
            future = Future()
            try:
                future.set_result(job())
            except Exception as exc:  # raised in its turn (after the jobs put before it)
                future.set_exception(exc)
        else:
            future = pool(self.threads).submit(job)
        self._pending.append(_Entry(key, weight, future))
        self._weight += weight
        while self._pending and self._pending[0].future.done():
            self._finish_oldest()

    def drain(self) -> None:
        """Finish every job put, in order."""
        while self._pending:
            self._finish_oldest()

    def _finish_oldest(self) -> None:
        entry = self._pending[0]
        try:
            result = entry.future.result()  # its error; or an interrupt while it runs
            self._pending.popleft()
            self._weight -= entry.weight
            self.finish(entry.key, result)
        except BaseException:
            self._broken = True
            raise

    def _abandon(self, wait: bool) -> None:
        """Cancel the jobs not started; ``wait``: for the running ones too. Forget them."""
        for entry in self._pending:
            entry.future.cancel()
        if wait:
            wait_all([e.future for e in self._pending])
        self._pending.clear()
        self._weight = 0

    def __enter__(self) -> InOrder[K, R]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        orderly = kind is None or issubclass(kind, Exception)  # not an interrupt (Ctrl-C)
        try:
            if orderly and not self._broken:
                # the jobs put before the step's own error are finished first, as a
                # sequential run would have (their own error, if any, is raised instead)
                self.drain()
        finally:
            self._abandon(wait=orderly)
