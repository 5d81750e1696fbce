"""The micro-batcher on a recording backend: merging, slicing, limits, errors, drain."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from app.errors import ServiceUnavailable
from app.inference.backend import Array
from app.inference.batcher import Batcher
from app.metrics import Metrics


class Recording:
    """A backend doubling its input and remembering every batch size it was called with."""

    def __init__(self, fail: bool = False, delay_s: float = 0.0) -> None:
        self.calls: list[int] = []
        self.fail = fail
        self.delay_s = delay_s
        self.threads: set[str] = set()

    @property
    def providers(self) -> list[str]:
        return ["CPUExecutionProvider"]

    @property
    def requested_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]

    def run(self, x: Array) -> dict[str, Array]:
        self.threads.add(threading.current_thread().name)
        self.calls.append(x.shape[0])
        if self.delay_s:
            threading.Event().wait(self.delay_s)
        if self.fail:
            raise RuntimeError("session exploded")
        return {"double": x * 2, "first": x[:, :1]}

    def close(self) -> None:
        pass


def _rows(n: int, start: float) -> Array:
    return np.arange(start, start + 3 * n, dtype=np.float32).reshape(n, 3)


async def _concurrently(batcher: Batcher, sizes: list[int]) -> list[dict[str, Array]]:
    return await asyncio.gather(*(batcher.run(_rows(n, 100.0 * i)) for i, n in enumerate(sizes)))


def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    backend = Recording()
    metrics = Metrics()
    batcher = Batcher(
        backend, label=("m", "1"), max_batch_size=64, max_delay_s=0.05, metrics=metrics
    )
    results = asyncio.run(_concurrently(batcher, [1, 3, 2, 1]))
    assert backend.calls == [7]
    assert all(t.startswith("ort-m") for t in backend.threads)  # never on the event loop
    for i, (n, out) in enumerate(zip([1, 3, 2, 1], results, strict=True)):
        np.testing.assert_array_equal(out["double"], _rows(n, 100.0 * i) * 2)
        assert out["first"].shape == (n, 1)
    assert metrics.batch_size.labels("m", "1")._sum.get() == 7  # type: ignore[attr-defined]
    batcher.close()


def test_batches_never_exceed_the_size_and_big_requests_run_alone() -> None:
    backend = Recording()
    batcher = Batcher(backend, label=("m", "1"), max_batch_size=4, max_delay_s=0.05)
    results = asyncio.run(_concurrently(batcher, [2, 2, 3, 9, 1]))
    assert sum(backend.calls) == 17
    assert 9 in backend.calls  # larger than a batch: alone, never split or refused
    assert all(c <= 4 for c in backend.calls if c != 9)
    assert [r["double"].shape[0] for r in results] == [2, 2, 3, 9, 1]
    batcher.close()


def test_batching_off_runs_every_request_on_its_own() -> None:
    backend = Recording()
    batcher = Batcher(backend, label=("m", "1"), enabled=False)
    asyncio.run(_concurrently(batcher, [1, 1, 1]))
    assert backend.calls == [1, 1, 1]


def test_a_failing_batch_fails_each_of_its_requests() -> None:
    batcher = Batcher(Recording(fail=True), label=("m", "1"), max_delay_s=0.02)

    async def go() -> list[BaseException | dict[str, Array]]:
        runs = (batcher.run(_rows(1, 0.0)) for _ in range(3))
        return await asyncio.gather(*runs, return_exceptions=True)

    results = asyncio.run(go())
    assert all(isinstance(r, RuntimeError) for r in results)
    batcher.close()


def test_drain_waits_for_requests_in_flight_and_refuses_new_ones() -> None:
    batcher = Batcher(Recording(delay_s=0.2), label=("m", "1"), max_delay_s=0.0)
    order: list[str] = []

    async def request() -> None:
        async with batcher.lease():
            await batcher.run(_rows(1, 0.0))
            order.append("request done")

    async def go() -> bool:
        task = asyncio.create_task(request())
        await asyncio.sleep(0.05)
        drained = await batcher.drain(5.0)
        order.append("drained")
        await task
        with pytest.raises(ServiceUnavailable):
            async with batcher.lease():
                pass
        return drained

    assert asyncio.run(go()) is True
    assert order == ["request done", "drained"]


def test_drain_gives_up_after_its_timeout() -> None:
    batcher = Batcher(Recording(), label=("m", "1"))

    async def go() -> bool:
        async with batcher.lease():  # a request that never finishes in time
            return await batcher.drain(0.05)

    assert asyncio.run(go()) is False
