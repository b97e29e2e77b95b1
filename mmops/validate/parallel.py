"""Map a function over batches with this process and worker processes working together, in order.

    outcome = ordered_map(fn, batches, workers=2)   # outcome.results[i] == fn(batches[i]), always

Decoding small media files is GIL-bound, so threads do not scale; processes do, but a spawned worker
needs about a second to start (interpreter plus imports). The caller therefore never waits for one:
it takes batches from the back of the queue itself while the workers start, and feeds a worker only
once it has answered (at most two batches queued per worker that answered), so at the end it waits
for two batches at most. Who ran a batch never changes its result or its place: the output is a serial
loop's, in the same order. `workers` counts every process that checks, this one included.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

QUEUED_PER_WORKER = 2  # batches sent ahead to each started worker: it never idles, the tail stays short


@dataclass
class Outcome:
    """Results in batch order, which batches ran in a worker process, and why any did not."""

    results: list[Any]
    in_worker: list[bool]
    note: str | None = None


def _ready() -> int:
    """A worker answers once its start-up (interpreter, imports, initializer) is done."""
    return os.getpid()


def ordered_map(
    fn: Callable[[Any], Any],
    batches: Sequence[Any],
    workers: int,
    *,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    local: Callable[[Any], Any] | None = None,
    caller_helps: bool = True,
) -> Outcome:
    """[fn(b) for b in batches], spread over `workers` processes (this one included when `caller_helps`).

    `fn`, `initializer` and the batches must pickle (module-level functions); workers are spawned,
    so nothing of this process's state (threads, open files, patched modules) leaks into them.
    `local(batch)` runs a batch here (default `fn`), e.g. with state a worker gets from `initializer`.
    If workers cannot start or one dies (killed for memory, say), the batches it had are run here and
    `note` says so; an exception raised by `fn` itself propagates as it would from a serial loop.
    """
    local = local or fn
    procs = min(workers - 1 if caller_helps else workers, len(batches))
    if procs < 1 or (len(batches) < 2 and caller_helps):
        return Outcome([local(b) for b in batches], [False] * len(batches))
    pool = None
    try:
        pool = ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=initializer, initargs=initargs)
        readies = [pool.submit(_ready) for _ in range(procs)]  # one each: every worker starts now
    except Exception as err:  # no semaphores (some sandboxes); a daemonic process may not have children
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        return Outcome([local(b) for b in batches], [False] * len(batches),
                       note=f"worker processes could not start ({type(err).__name__}: {err}); "
                            "all checked in this process")
    results: list[Any] = [None] * len(batches)
    todo = deque(range(len(batches)))
    inflight: dict[Future, int] = {}
    in_worker = [False] * len(batches)
    broken: BaseException | None = None
    try:
        while todo or inflight:
            if broken is None:
                failed = [r.exception() for r in readies if r.done() and r.exception() is not None]
                if failed:
                    broken = failed[0]
                else:
                    started = sum(r.done() for r in readies)
                    while todo and len(inflight) < QUEUED_PER_WORKER * started:
                        try:
                            fut = pool.submit(fn, batches[todo[0]])
                        except BrokenProcessPool as err:  # a worker died since we last looked
                            broken = err
                            break
                        inflight[fut] = todo.popleft()
            for fut in [f for f in inflight if f.done()]:
                i = inflight.pop(fut)
                try:
                    results[i] = fut.result()
                    in_worker[i] = True
                except BrokenProcessPool as err:
                    broken = broken or err
                    todo.append(i)
            if todo and (caller_helps or broken is not None):
                i = todo.pop()  # from the back: the workers take from the front
                results[i] = local(batches[i])
            else:
                waiting = list(inflight) + [r for r in readies if not r.done()]
                if waiting:
                    wait(waiting, return_when=FIRST_COMPLETED)
    finally:
        # never wait for a worker still starting: it takes its ping, finds the pool shut, and exits
        pool.shutdown(wait=False, cancel_futures=True)
    note = None
    if broken is not None:
        note = (f"a worker process died or did not start ({type(broken).__name__}: {broken}); "
                f"{in_worker.count(False)} of {len(batches)} batches were checked in this process")
    return Outcome(results, in_worker, note=note)
