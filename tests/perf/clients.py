"""Load generators for the benchmark: back-to-back batch clients and many concurrent singles."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
import urllib.parse

import aiohttp
import httpx
import numpy as np


def throughput(
    url: str, body: bytes, headers: dict[str, str], rows: int, concurrency: int, seconds: float
) -> float:
    """Samples/s with `concurrency` clients posting the same body back to back."""
    # http.client, not httpx: the stdlib client sends a 20 MB body with one sendall, so the load
    # generator takes as little as possible of the two cores it shares with the server
    parts = urllib.parse.urlsplit(url)
    done = [0]
    lock = threading.Lock()

    def post(conn: http.client.HTTPConnection) -> None:
        conn.request("POST", parts.path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: {response.status} {text[:300]!r}")

    def client(stop: float) -> None:
        conn = http.client.HTTPConnection(parts.netloc, timeout=600)
        while True:
            post(conn)
            with lock:
                done[0] += rows
            if time.perf_counter() >= stop:
                break
        conn.close()

    warm = http.client.HTTPConnection(parts.netloc, timeout=600)
    post(warm)  # first-request costs are not throughput
    warm.close()
    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(start + seconds,)) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.perf_counter() - start)


async def _singles(
    url: str, bodies: list[bytes], headers: dict[str, str], seconds: float
) -> tuple[float, float, float]:
    # aiohttp, not httpx: with 64 connections httpx's client costs more CPU per request than the
    # server under test, and this machine has two cores for both
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=len(bodies))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(url, data=bodies[0], headers=headers) as r:
            await r.read()
        stop = time.perf_counter() + seconds

        async def client(body: bytes) -> None:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as r:
                    text = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{url}: {r.status} {text[:300]!r}")
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(client(b) for b in bodies))
        elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return len(latencies) / elapsed, float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def singles(
    url: str, bodies: list[bytes], headers: dict[str, str], seconds: float
) -> tuple[float, float, float]:
    """(profiles/s, p50 ms, p99 ms) with one client per body, each posting one profile at a time."""
    return asyncio.run(_singles(url, bodies, headers, seconds))


def batches(base: str) -> tuple[float, float]:
    """(samples, ONNX Runtime calls) so far, from the service's own /metrics."""
    total = {"sum": 0.0, "count": 0.0}
    for line in httpx.get(base + "/metrics").text.splitlines():
        for key in total:
            if line.startswith(f"genexfer_batch_size_{key}{{"):
                total[key] += float(line.rsplit(" ", 1)[1])
    return total["sum"], total["count"]
