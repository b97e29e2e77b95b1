"""Work the training loop hands to a helper thread: reading the next batch ahead, writing files behind.

Neither changes what is trained: reading a batch draws no random numbers, and a file is written
from a snapshot of the state it saves, copied while validation runs (which changes no weight) and
finished before the next epoch changes them. What they take off the training thread: the shard
reads (system calls) and, per saved file, the copy, serialisation, `fsync` and the rename.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class ReadAhead:
    """Iterates `loader` one item ahead on a helper thread: item i+1 is read while item i trains.

    Each `iter()` starts on the calling thread (a DataLoader draws its base seed there); the
    helper only calls `next` on that iterator, one call at a time, so the items and their order
    are the loader's own. An exception in the loader is raised by the loop that consumes it.
    """

    def __init__(self, loader: Iterable) -> None:
        self.loader = loader
        self._pool: ThreadPoolExecutor | None = None  # started on first use: a set-up-only recipe starts no thread

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmops-read-ahead")
        items = iter(self.loader)
        ahead = self._pool.submit(next, items, _END)
        while (item := ahead.result()) is not _END:
            ahead = self._pool.submit(next, items, _END)
            yield item

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


_END = object()


class WriteBehind:
    """Runs jobs (snapshots, file writes) on one helper thread, in the order submitted.

    `submit` returns the job's future at once; `wait` returns when every job submitted so far
    has finished, and raises the first one's error (so does the next `submit`: a failed write
    stops training at the next save, not one run later). A job reads what the training thread
    does not change until the job is done (a snapshot's caller waits for it), or a snapshot.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def submit(self, job: Callable[..., Any], *args: Any) -> Future:
        self._raise_finished_errors()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmops-write-behind")
        self._pending.append(self._pool.submit(job, *args))
        return self._pending[-1]

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        for job in pending:
            job.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _raise_finished_errors(self) -> None:
        done = {job: job.done() for job in self._pending}  # one look per job: none slips between lists
        self._pending = [job for job, finished in done.items() if not finished]
        for job, finished in done.items():
            if finished:
                job.result()
