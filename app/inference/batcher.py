"""Dynamic micro-batching: concurrent requests to one model version share one ONNX Runtime call.

A request's rows (already aligned to the panel) join a queue; a collector task takes the first
waiting request, then keeps taking more until the batch holds `max_batch_size` samples or
`max_delay_s` has passed since that first request arrived, runs the concatenated batch on a
worker thread and hands every request its own slice of the outputs. While one batch runs the next
one fills, so the session never waits for Python. A request larger than the batch runs alone.

With batching off every request runs on its own (concurrently, in threads): the baseline the
benchmark compares against.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from app.errors import ServiceUnavailable
from app.inference.backend import Array, InferenceBackend
from app.metrics import Metrics


@dataclass
class _Pending:
    x: Array
    future: asyncio.Future[dict[str, Array]]
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    """Queues requests for one model version and runs them in merged batches.

    Parameters
    ----------
    backend:
        The model version's shared inference session.
    label:
        (model name, version) as metric labels.
    enabled:
        False runs every request on its own, unmerged.
    max_batch_size:
        Most samples in one merged call.
    max_delay_s:
        Longest a request waits for others to join its batch.
    metrics:
        Where batch size, queue and compute times are recorded; None records nothing.
    """

    def __init__(
        self,
        backend: InferenceBackend,
        *,
        label: tuple[str, str],
        enabled: bool = True,
        max_batch_size: int = 256,
        max_delay_s: float = 0.002,
        metrics: Metrics | None = None,
    ) -> None:
        self.backend = backend
        self.enabled = enabled
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self._label = label
        self._metrics = metrics
        self._queue: asyncio.Queue[_Pending] | None = None
        self._collector: asyncio.Task[None] | None = None
        self._carry: _Pending | None = None
        # one worker: batches of one version run one after the other, each using all of ONNX
        # Runtime's intra-op threads; the collector assembles the next batch meanwhile
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ort-{label[0]}")
        self._leases = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[None]:
        """Hold the version open for one request (decoding included); drain waits for leases."""
        if self._closing:
            raise ServiceUnavailable(
                f"model version {self._label[0]}/{self._label[1]} is being unloaded; retry"
            )
        self._leases += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._leases -= 1
            if self._leases == 0:
                self._idle.set()

    async def run(self, x: Array) -> dict[str, Array]:
        """Every output for the rows of `x`, computed in a merged batch when batching is on."""
        if not self.enabled:
            return await asyncio.to_thread(self._compute, x, 1)
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._collector = asyncio.create_task(self._collect(self._queue))
        future: asyncio.Future[dict[str, Array]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(x, future))
        return await future

    async def _collect(self, queue: asyncio.Queue[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = self._carry or await queue.get()
            self._carry = None
            batch, rows = [first], first.x.shape[0]
            deadline = first.queued_at + self.max_delay_s
            while rows < self.max_batch_size:
                if queue.empty():
                    wait = deadline - time.perf_counter()
                    if wait <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), wait)
                    except TimeoutError:
                        break
                else:
                    item = queue.get_nowait()
                if rows + item.x.shape[0] > self.max_batch_size:
                    self._carry = item  # too big to join: it starts the next batch
                    break
                batch.append(item)
                rows += item.x.shape[0]
            await self._dispatch(loop, batch)

    async def _dispatch(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        if self._metrics is not None:
            for item in batch:
                self._metrics.queue_time.labels(*self._label).observe(started - item.queued_at)
        x = batch[0].x if len(batch) == 1 else np.concatenate([i.x for i in batch])
        try:
            outputs = await loop.run_in_executor(self._worker, self._compute, x, len(batch))
        except Exception as exc:  # every waiting request gets the error, not a hang
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        start = 0
        for item in batch:
            stop = start + item.x.shape[0]
            if not item.future.done():  # a timed-out request has cancelled its future
                item.future.set_result({k: v[start:stop] for k, v in outputs.items()})
            start = stop

    def _compute(self, x: Array, n_requests: int) -> dict[str, Array]:
        started = time.perf_counter()
        outputs = self.backend.run(x)
        if self._metrics is not None:
            self._metrics.compute_time.labels(*self._label).observe(time.perf_counter() - started)
            self._metrics.batch_size.labels(*self._label).observe(x.shape[0])
            self._metrics.samples.labels(*self._label).inc(x.shape[0])
        return outputs

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new requests, wait for those in flight; True when all finished in time."""
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            drained = True
        except TimeoutError:
            drained = False
        self.close()
        return drained

    def close(self) -> None:
        """Stop the collector and the worker thread (after drain, or at shutdown)."""
        self._closing = True
        if self._collector is not None:
            self._collector.cancel()
        self._worker.shutdown(wait=False, cancel_futures=True)
