"""The queue between the HTTP handlers and the one thread that runs the model.

Handlers :meth:`Batcher.submit` jobs and await their futures; a worker thread takes the
oldest job together with every waiting job that may share its batch (equal
:meth:`deeporb.generation.compose.Plan.batch_key`, up to ``max_rows`` sampler rows), runs
them as one call, and goes again. So requests that arrive while a batch runs are served
together by the next one, and the event loop never waits on the model. The queue is
bounded: a full queue is :class:`QueueFull` (the app answers 503), not unbounded memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field

log = logging.getLogger(__name__)
GATHER_WINDOWS = 10  # the longest the worker waits for a burst to finish arriving, in windows


class QueueFull(Exception):
    """The queue holds ``max_queue`` jobs already."""


@dataclass
class Job:
    key: Hashable  # jobs with equal keys may share a batch
    rows: int  # sampler rows the job adds to a batch
    work: object  # what the batch function needs (a planned request)
    future: Future = field(default_factory=Future)


class Batcher:
    """``run_batch(jobs)`` is called on the worker thread with jobs of one key; it must
    resolve every job's future (an exception it raises is set on those it left open)."""

    def __init__(self, run_batch: Callable[[list[Job]], None], max_queue: int, max_rows: int,
                 window_s: float = 0.0) -> None:
        self.run_batch, self.max_queue, self.max_rows, self.window_s = run_batch, max_queue, max_rows, window_s
        self._pending: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.batches: list[int] = []  # jobs per batch run, for tests and the benchmark
        self._thread = threading.Thread(target=self._work, name="deeporb-generate", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Jobs queued and not yet taken into a batch."""
        return len(self._pending)

    def submit(self, job: Job) -> Future:
        with self._cond:
            if self._closed:
                raise QueueFull("the server is shutting down")
            if len(self._pending) >= self.max_queue:
                raise QueueFull(f"{len(self._pending)} requests are waiting already")
            self._pending.append(job)
            self._cond.notify()
        return job.future

    def close(self) -> None:
        """Finish the queued jobs, then stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _take(self) -> list[Job]:
        """The oldest job and the waiting jobs that may join it, in arrival order."""
        first = self._pending[0]
        batch, rest, rows = [], deque(), 0
        for job in self._pending:
            if not batch or (job.key == first.key and rows + job.rows <= self.max_rows):
                batch.append(job)
                rows += job.rows
            else:
                rest.append(job)
        self._pending = rest
        return batch

    def _gather(self) -> None:
        """Let the requests sent together with the waiting ones arrive: wait ``window_s`` at a
        time while more keep coming (a burst of any size lands in one batch; clients answered
        by the last batch send their next requests while its pieces are still being written),
        at most :data:`GATHER_WINDOWS` windows, and not once a batch is full."""
        seen = 0
        for _ in range(GATHER_WINDOWS):
            with self._cond:
                waiting, rows = len(self._pending), sum(j.rows for j in self._pending)
            if waiting == seen or rows >= self.max_rows:
                return
            seen = waiting
            time.sleep(self.window_s)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
            if self.window_s:
                self._gather()
            with self._cond:
                batch = self._take()
            self.batches.append(len(batch))
            try:
                self.run_batch(batch)
            except Exception as e:  # a bug: answer these requests, keep serving the next ones
                log.exception("generation failed for a batch of %d", len(batch))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(e)
