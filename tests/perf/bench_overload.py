"""Overload (issue 13): 64 clients push classify requests at a real `genexfer serve`, with and
without admission control; reports the admitted requests' p50/p99 latency and how many were
shed (503 + Retry-After). Not a test: run it by hand,
`python tests/perf/bench_overload.py [--clients 64] [--seconds 10] [--bound 8]`.

Each client sends its next request as soon as the last is answered; a shed one waits the
Retry-After it was given, plus up to as much again at random (as a well-behaved client does),
before sending again. The bounded run
should keep the admitted requests' p99 near the unloaded latency while the unbounded one queues
every request behind all the others.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.factories import REPO
from tests.perf.server import (
    genexfer_command,
    genexfer_env,
    load,
    machine,
    serve,
    write_block,
)

MODEL = "pbmc68k-celltype"


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # admitted (200) requests, seconds
    early: list[float] = field(default_factory=list)  # admitted in the first second (connecting)
    shed: int = 0  # 503 with Retry-After
    other: dict[int, int] = field(default_factory=dict)  # any other status

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


def body(genes: list[str], n: int, seed: int) -> bytes:
    """`n` log-scale-looking profiles on the model's panel, as JSON (encoded once: the clients
    share this machine's CPUs with the server)."""
    rng = np.random.default_rng(seed)
    values = np.log1p(rng.gamma(0.5, 2.0, size=(n, len(genes)))).round(3).astype(np.float32)
    ids = [f"s{i}" for i in range(n)]
    document = {"genes": genes, "sample_ids": ids, "values": values}
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


async def client(
    base: str, payload: bytes, until: float, tally: Tally, seed: int, steady: float
) -> None:
    headers = {"Content-Type": "application/json"}
    jitter = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=120, headers=headers) as http:
        while time.monotonic() < until:
            started = time.perf_counter()
            r = await http.post(f"/v1/models/{MODEL}/classify", content=payload)
            took = time.perf_counter() - started
            if r.status_code == 200:
                (tally.latencies if time.monotonic() - took >= steady else tally.early).append(took)
            elif r.status_code == 503 and "retry-after" in r.headers:
                tally.shed += 1
                # Retry-After, plus up to as much again at random: shed clients retrying all at
                # once would arrive as one wave and be shed together again
                wait = float(r.headers["retry-after"]) * (1 + jitter.random())
                await asyncio.sleep(max(0.0, min(wait, until - time.monotonic())))
            else:
                tally.other[r.status_code] = tally.other.get(r.status_code, 0) + 1


async def push(base: str, clients: int, seconds: float, payload: bytes) -> Tally:
    tally = Tally()
    start = time.monotonic()
    until, steady = start + seconds, start + 1.0
    await asyncio.gather(*(client(base, payload, until, tally, i, steady) for i in range(clients)))
    return tally


def run(bound: int, args: argparse.Namespace, tmp: Path) -> tuple[Tally, float]:
    """One server with GENEXFER_MAX_INFLIGHT_INFERENCE=bound: a warm-up, then the push."""
    env = genexfer_env(
        tmp / "models",
        f"sqlite:///{tmp / f'bench-{bound}.db'}",
        GENEXFER_MAX_INFLIGHT_INFERENCE=str(bound),
        GENEXFER_RETRY_AFTER_S="1",
        GENEXFER_REQUEST_TIMEOUT_S="120",
    )
    with serve(genexfer_command(), env, "/readyz") as base:
        genes = httpx.get(f"{base}/v1/models/{MODEL}").json()["genes"]
        payload = body(genes, args.samples, seed=bound)
        alone = []
        for _ in range(20):  # the unloaded latency, one request at a time
            started = time.perf_counter()
            httpx.post(
                f"{base}/v1/models/{MODEL}/classify",
                content=payload,
                headers={"Content-Type": "application/json"},
                timeout=60,
            )
            alone.append(time.perf_counter() - started)
        tally = asyncio.run(push(base, args.clients, args.seconds, payload))
    return tally, statistics.median(alone) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--samples", type=int, default=16, help="profiles per request")
    parser.add_argument("--bound", type=int, default=8, help="GENEXFER_MAX_INFLIGHT_INFERENCE")
    parser.add_argument(
        "--results",
        type=Path,
        default=Path(__file__).resolve().parent / "RESULTS.md",
        help="results file whose overload block is replaced ('-': none)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="genexfer-overload-"))
    shutil.copytree(REPO / "models" / MODEL, tmp / "models" / MODEL)
    rows, before = [], load()
    for bound in (args.bound, 0):
        tally, alone = run(bound, args, tmp)
        label = f"bound {bound}" if bound else "no bound"
        n = len(tally.latencies)
        early = max(tally.early, default=float("nan")) * 1000
        row = (
            f"| {label} | {n} ({n / args.seconds:.0f}/s) | {early:.0f} | "
            f"{tally.percentile(50):.0f} | "
            f"{tally.percentile(90):.0f} | {tally.percentile(99):.0f} | {tally.shed} | "
            f"{tally.other or '-'} | {alone:.1f} |"
        )
        print(row, flush=True)
        rows.append(row)
    command = (
        f"python tests/perf/bench_overload.py --clients {args.clients} --seconds "
        f"{args.seconds:g} --samples {args.samples} --bound {args.bound}"
    )
    text = "\n".join(
        [
            "## Overload: admission control (tests/perf/bench_overload.py)",
            "",
            f"`{command}` on {machine()}; load average before {before}, after {load()}. "
            f"{args.clients} clients, each sending its next `{MODEL}` classify request "
            f"({args.samples} profiles, JSON) as soon as the last is answered, and waiting the "
            "Retry-After of a shed one (plus up to as much again, at random). Latencies are of "
            "admitted (200) requests sent after the first second (when 64 connections open at "
            "once), in ms; the first second's slowest is shown apart; "
            "'alone' is the median of 20 requests sent one at a time before the push.",
            "",
            "| server | admitted | first second: max ms | p50 ms | p90 ms | p99 ms | shed (503) "
            "| other | alone ms |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(text)
    if str(args.results) != "-":
        write_block(args.results, "overload", text)


if __name__ == "__main__":
    main()
