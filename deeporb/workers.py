"""The one process pool: fork-safe, bounded, and its workers die with their parent.

- **Fork-safe:** workers are started by spawn, never by forking the caller, which may
  already run threads (torch, a progress bar) that a fork would deadlock. The job function
  must therefore be importable (defined at module level), and a script using the pool needs
  the ``if __name__ == "__main__":`` guard.
- **Bounded:** at most ``window`` chunks are in flight, so a 100k-file job list never
  turns into 100k pending results in memory; results come back in input order
  (``ordered=True``) or as they complete, each also passed to ``on_result`` (a progress bar).
- **No orphans:** each worker asks the kernel to kill it when its parent dies
  (``PR_SET_PDEATHSIG`` on Linux, which works even while the worker is stuck in C code),
  and elsewhere polls the parent's PID; so ``kill -9`` of a run leaves no worker behind.
  Spawn rather than a fork server for this: a fork server's workers are its children, and
  it outlives the caller as long as they live. The kernel ties the signal to the thread
  that started a worker, so use a pool from the thread that opened it.

``workers <= 1`` runs the jobs inline, in order, with the same interface.
"""

from __future__ import annotations

import collections
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from itertools import islice
from typing import Any

_PR_SET_PDEATHSIG = 1


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch_parent(pid: int) -> None:
    while pid_alive(pid):
        time.sleep(1.0)
    os._exit(1)


def die_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this process when ``parent_pid`` (the caller) dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    else:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if not pid_alive(parent_pid):  # died before the request above took effect
        os._exit(1)


def _run_chunk(fn: Callable[[Any], Any], chunk: list) -> list:
    return [fn(job) for job in chunk]


class WorkerPool:
    """``with WorkerPool(workers) as pool: for r in pool.imap(fn, jobs): ...``

    One pool can serve several ``imap`` calls (batches) without restarting its workers.
    """

    def __init__(self, workers: int, chunksize: int = 1, window: int | None = None):
        self.workers = max(1, int(workers))
        self.chunksize = max(1, int(chunksize))
        self.window = window or 4 * self.workers
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        if self.workers > 1:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            )
        return self

    def __exit__(self, *exc) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def imap(
        self,
        fn: Callable[[Any], Any],
        jobs: Iterable,
        ordered: bool = True,
        on_result: Callable[[Any], None] | None = None,
    ) -> Iterator:
        """Yield ``fn(job)`` for each job; an exception from ``fn`` ends the iteration."""
        if self._executor is None:
            for job in jobs:
                result = fn(job)
                if on_result:
                    on_result(result)
                yield result
            return
        it = iter(jobs)
        chunks = iter(lambda: list(islice(it, self.chunksize)), [])
        pending: collections.deque[Future] = collections.deque()

        def fill() -> None:
            while len(pending) < self.window:
                chunk = next(chunks, None)
                if chunk is None:
                    return
                pending.append(self._executor.submit(_run_chunk, fn, chunk))

        fill()
        while pending:
            if ordered:
                done = [pending.popleft()]
            else:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                done = [f for f in pending if f in finished]
                for f in done:
                    pending.remove(f)
            for fut in done:
                for result in fut.result():
                    if on_result:
                        on_result(result)
                    yield result
            fill()
