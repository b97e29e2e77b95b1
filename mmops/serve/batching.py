"""Micro-batching: concurrent requests are gathered into one model call.

Each request submits its rows and awaits its own slice of the results. A single loop task takes
the first waiting request, then keeps gathering until `max_batch_size` rows are collected or
`max_wait_ms` has passed since that first request, and makes one model call. A request is never
split across batches; if a batch of several requests fails, each is retried alone, so one bad
request cannot fail its neighbours.

When to wait: only while traffic is concurrent. If the last few batches each held a single
request and nothing is queued or being read (`incoming()`), a request goes straight to the
model instead of idling `max_wait_ms`; under concurrent load the batch also takes whatever
queued up during the previous model call.

Where the model runs: on one dedicated thread, never on the event loop, so the loop keeps
answering /health and reading the next requests while a batch (decode, featurize, forward) runs.
Requests that arrive during a call queue up and form the next batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

log = logging.getLogger("mmops.serve")

RunBatch = Callable[[list[Any]], Sequence[Any]]


class Overloaded(RuntimeError):
    """More rows are queued than `max_queue_rows`: shed load instead of queueing forever."""


class ShuttingDown(RuntimeError):
    """The batcher stopped before this request was served."""


@dataclass
class _Pending:
    rows: list[Any]
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Gather rows from concurrent `submit` calls into calls of `run_batch(rows) -> results`.

    `run_batch` gets a flat list of rows and must return one result per row, in order.
    `on_batch(rows, requests, seconds)` is called after every model call (for metrics).
    `thread_initializer` runs once on the thread that makes model calls.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        max_queue_rows: int = 1024,
        on_batch: Callable[[int, int, float], None] | None = None,
        thread_initializer: Callable[[], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.max_queue_rows = max_queue_rows
        self.on_batch = on_batch
        self.thread_initializer = thread_initializer
        self._arriving = 0
        self._recent = deque([1], maxlen=4)  # requests per batch, last few batches
        self._queue: asyncio.Queue[_Pending] | None = None
        self._carry: _Pending | None = None
        self._queued_rows = 0
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="mmops-model", initializer=self.thread_initializer
        )
        self._task = asyncio.create_task(self._loop(), name="mmops-micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        pending = [self._carry] if self._carry else []
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for item in pending:
            if not item.future.done():
                item.future.set_exception(ShuttingDown("server is shutting down"))
        self._carry = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @contextmanager
    def incoming(self):
        """Mark a request that will `submit` soon (while it is read and validated).

        Leave the block right before `submit` (no `await` in between), so the batch loop never
        sees the request as neither incoming nor queued.
        """
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1

    async def submit(self, rows: list[Any]) -> list[Any]:
        """Queue `rows` (one request) and wait for their results."""
        if self._queue is None or self._task is None or self._task.done():
            raise ShuttingDown("batcher is not running")
        if not rows:
            return []
        if self._queued_rows + len(rows) > self.max_queue_rows:
            raise Overloaded(f"{self._queued_rows} rows already queued (limit {self.max_queue_rows})")
        future = asyncio.get_running_loop().create_future()
        self._queued_rows += len(rows)
        self._queue.put_nowait(_Pending(list(rows), future))
        return await future

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if timeout is None:
            return await self._queue.get()
        if not self._queue.empty():
            return self._queue.get_nowait()
        if timeout <= 0:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return None

    def _quiet(self) -> bool:
        """Nothing queued, nothing being read, and recent batches were single requests."""
        return self._carry is None and self._queue.empty() and self._arriving == 0 and max(self._recent) <= 1

    async def _gather(self) -> list[_Pending]:
        first = await self._next(None)
        batch, size = [first], len(first.rows)
        deadline = first.enqueued + self.max_wait
        while size < self.max_batch_size and not self._quiet():
            item = await self._next(deadline - time.perf_counter())
            if item is None:
                break
            if size + len(item.rows) > self.max_batch_size:
                self._carry = item  # it opens the next batch
                break
            batch.append(item)
            size += len(item.rows)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            self._recent.append(len(batch))
            live = [p for p in batch if not p.future.done()]  # drop requests whose client went away
            self._queued_rows -= sum(len(p.rows) for p in batch)
            if live:
                await self._run(loop, live)

    async def _run(self, loop, batch: list[_Pending]) -> None:
        rows = [row for p in batch for row in p.rows]
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._call, rows)
        except Exception as err:
            if len(batch) == 1:
                _settle(batch[0].future, error=err)
                return
            log.warning("batch of %d requests failed (%s); retrying each alone", len(batch), type(err).__name__)
            for item in batch:
                await self._run(loop, [item])
            return
        if self.on_batch:
            self.on_batch(len(rows), len(batch), time.perf_counter() - start)
        offset = 0
        for item in batch:
            _settle(item.future, result=list(results[offset : offset + len(item.rows)]))
            offset += len(item.rows)

    def _call(self, rows: list[Any]) -> Sequence[Any]:
        results = self.run_batch(rows)
        if len(results) != len(rows):
            raise RuntimeError(f"run_batch returned {len(results)} results for {len(rows)} rows")
        return results


def _settle(future: asyncio.Future, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # cancelled: the client disconnected
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
