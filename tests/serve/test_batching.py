"""MicroBatcher with a fake model: gathering, limits, error isolation, calls off the event loop."""

import asyncio
import threading
import time

import pytest

from mmops.serve.batching import MicroBatcher, Overloaded, ShuttingDown


class FakeModel:
    def __init__(self, delay: float = 0.0, fail_on=None):
        self.calls: list[list] = []
        self.threads: set[str] = set()
        self.delay, self.fail_on = delay, fail_on

    def __call__(self, rows):
        self.calls.append(list(rows))
        self.threads.add(threading.current_thread().name)
        if self.fail_on is not None and self.fail_on in rows:
            raise ValueError("bad row")
        if self.delay:
            time.sleep(self.delay)
        return [r * 10 for r in rows]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_concurrent_requests_share_one_call():
    model = FakeModel()

    async def main():
        b = MicroBatcher(model, max_batch_size=64, max_wait_ms=200)
        await b.start()
        b._recent.append(2)  # concurrent traffic seen: the batcher waits for more
        try:
            results = await asyncio.gather(*(b.submit([i, i + 100]) for i in range(8)))
        finally:
            await b.stop()
        return results

    results = run(main())
    assert results == [[i * 10, (i + 100) * 10] for i in range(8)]
    assert len(model.calls) == 1 and len(model.calls[0]) == 16
    assert len(model.threads) == 1 and "MainThread" not in model.threads  # one model thread, not the loop's


def test_the_event_loop_runs_during_a_model_call():
    """A slow model call does not block the loop: a concurrent task keeps ticking."""
    model = FakeModel(delay=0.5)

    async def main():
        b = MicroBatcher(model, max_batch_size=1, max_wait_ms=0)
        await b.start()
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.ensure_future(tick())
        try:
            assert await b.submit([1]) == [10]
        finally:
            ticker.cancel()
            await b.stop()
        return ticks

    assert run(main()) >= 20  # ~50 ticks of 10 ms during the 0.5 s call


def test_max_batch_size_is_respected_and_requests_never_split():
    model = FakeModel()

    async def main():
        b = MicroBatcher(model, max_batch_size=5, max_wait_ms=100)
        await b.start()
        b._recent.append(2)
        try:
            return await asyncio.gather(*(b.submit([i] * 2) for i in range(6)))
        finally:
            await b.stop()

    results = run(main())
    assert results == [[i * 10] * 2 for i in range(6)]
    assert all(len(c) <= 5 for c in model.calls)
    assert sum(len(c) for c in model.calls) == 12
    for call in model.calls:  # each request's two rows land in the same call
        assert all(call.count(v) == 2 for v in set(call))


def test_a_lone_request_does_not_wait():
    async def main():
        b = MicroBatcher(FakeModel(), max_batch_size=8, max_wait_ms=2000)
        await b.start()
        try:
            start = time.perf_counter()
            await b.submit([1])
            return time.perf_counter() - start
        finally:
            await b.stop()

    assert run(main()) < 1.0  # not the 2 s max wait


def test_incoming_requests_are_waited_for():
    model = FakeModel()

    async def main():
        b = MicroBatcher(model, max_batch_size=8, max_wait_ms=2000)
        await b.start()
        try:
            async def late():
                with b.incoming():
                    await asyncio.sleep(0.2)  # being read / validated
                return await b.submit([2])

            return await asyncio.gather(b.submit([1]), late())
        finally:
            await b.stop()

    # the first request is submitted while the second is still "incoming": one call for both
    assert run(main()) == [[10], [20]]
    assert model.calls == [[1, 2]]


def test_one_bad_request_does_not_fail_its_neighbours():
    model = FakeModel(fail_on=3)

    async def main():
        b = MicroBatcher(model, max_batch_size=16, max_wait_ms=200)
        await b.start()
        b._recent.append(2)
        try:
            return await asyncio.gather(*(b.submit([i]) for i in range(5)), return_exceptions=True)
        finally:
            await b.stop()

    results = run(main())
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == [[0], [10], [20], [40]]


def test_overload_and_shutdown():
    model = FakeModel(delay=0.3)

    async def main():
        b = MicroBatcher(model, max_batch_size=1, max_wait_ms=0, max_queue_rows=2)
        await b.start()
        first = asyncio.ensure_future(b.submit([1]))
        await asyncio.sleep(0.05)  # first is in the model; the queue is empty again
        queued = asyncio.ensure_future(b.submit([2, 3]))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await b.submit([4])
        assert await first == [10]
        assert await queued == [20, 30]
        await b.stop()
        with pytest.raises(ShuttingDown):
            await b.submit([5])

    run(main())
