"""`make bench`: serving throughput and latency on one model and one machine, in one run.

(a) raw in-process ONNX Runtime, batches of 256 — the limit; (b) the service over HTTP, KServe v2
binary tensors, batches of 256; (c) the same with JSON (v2 JSON and /v1 JSON matrix); (d) 64
concurrent clients posting one profile each, batching on vs off; (e) the textbook FastAPI +
PyTorch-eager + pydantic service, JSON batches of 256 and 64 single-profile clients.
Clients run on the same machine as the servers (there is no other), so they take CPU from them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson

from tests.factories import free_port, wait_until_ready
from tests.perf.clients import batches, singles, throughput
from tests.perf.model import GENES, NAME, export, profiles

BATCH = 256
ROUNDS = 3
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def ort_session(folder: Path) -> ort.InferenceSession:
    """An in-process session with the service's session options."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"]
    )


def raw_ort(session: ort.InferenceSession, seconds: float) -> float:
    """Samples/s of one in-process session, batches of 256."""
    x = profiles(BATCH)
    for _ in range(2):
        session.run(None, {"expression": x})
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or done < 3 * BATCH:
        session.run(None, {"expression": x})
        done += BATCH
    return done / (time.perf_counter() - start)


@contextlib.contextmanager
def serve(command: list[str], env: dict[str, str], ready_path: str) -> Iterator[str]:
    """Run a server subprocess until it answers `ready_path`; yield its base URL."""
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [*command, "--port", str(port)],
        env={**os.environ, **env},
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(proc, base + ready_path, 180, Path(log.name).read_text)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def genexfer(models_dir: Path, db: str, batching: bool) -> contextlib.AbstractContextManager[str]:
    env = {
        "GENEXFER_MODELS_DIR": str(models_dir),
        "GENEXFER_DATABASE_URL": db,
        "GENEXFER_PROVIDERS": '["CPUExecutionProvider"]',
        "GENEXFER_LOG_LEVEL": "warning",
        "GENEXFER_RELOAD_INTERVAL_S": "0",
        "GENEXFER_BATCHING": "true" if batching else "false",
    }
    return serve([sys.executable, "-m", "app.cli", "serve"], env, "/readyz")


def textbook() -> contextlib.AbstractContextManager[str]:
    command = [sys.executable, "-m", "uvicorn", "tests.perf.textbook_server:app", "--no-access-log"]
    return serve(command, {}, "/docs")


def v2_binary(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "expression",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
        }
    )
    headers = {
        "inference-header-content-length": str(len(header)),
        "content-type": "application/octet-stream",
    }
    return header + x.tobytes(), headers


def v2_json(x: np.ndarray) -> bytes:
    tensor = {"name": "expression", "shape": list(x.shape), "datatype": "FP32", "data": x}
    return orjson.dumps({"inputs": [tensor]}, option=orjson.OPT_SERIALIZE_NUMPY)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{os.cpu_count()} CPUs (nproc), {cpu}, {mem_kb / 1024**2:.1f} GiB RAM"


def run(seconds: float, clients: int) -> tuple[list[tuple[str, str, str]], dict[str, float]]:
    """Every measurement; returns table rows (what, result, vs target) and the raw numbers."""
    tmp = Path(tempfile.mkdtemp(prefix="genexfer-bench-"))
    print("exporting the benchmark model (20000 → 1024 → 256 → 10) ...", flush=True)
    folder = export(tmp / "models")
    n: dict[str, float] = {}
    session = ort_session(folder)

    x = profiles(BATCH)
    one = profiles(clients, seed=2)
    binary, binary_headers = v2_binary(x)
    v2_url = f"/v2/models/{NAME}/infer"
    single_bodies = [v2_binary(one[i : i + 1]) for i in range(clients)]
    single_headers = {
        "inference-header-content-length": single_bodies[0][1]["inference-header-content-length"]
    }
    matrix = orjson.dumps(
        {"genes": GENES, "sample_ids": [f"s{i}" for i in range(BATCH)], "values": x},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    db = f"sqlite:///{tmp / 'bench.db'}"
    with genexfer(tmp / "models", db, batching=True) as base:
        # (a) and (b) alternate in short rounds: the machine is shared and its speed drifts by
        # tens of percent within minutes, so only measurements taken side by side compare
        a, b = [], []
        for _ in range(ROUNDS):
            a.append(raw_ort(session, seconds / 2))
            b.append(throughput(base + v2_url, binary, binary_headers, BATCH, 2, seconds / 2))
            print(f"(a) raw ONNX Runtime {a[-1]:.0f}, (b) HTTP v2 binary {b[-1]:.0f} samples/s")
        n["a"], n["b"] = float(np.median(a)), float(np.median(b))
        n["ratio"] = float(np.median(np.array(b) / np.array(a)))
        rounds = ", ".join(f"{y / x:.0%}" for x, y in zip(a, b, strict=True))
        json_headers = {"content-type": "application/json"}
        n["c_v2"] = throughput(base + v2_url, v2_json(x), json_headers, BATCH, 1, seconds)
        n["c_v1"] = throughput(
            f"{base}/v1/models/{NAME}/classify", matrix, json_headers, BATCH, 1, seconds
        )
        print(f"(c) JSON: v2 {n['c_v2']:.0f}, v1 matrix {n['c_v1']:.0f} samples/s", flush=True)
        bodies = [b for b, _ in single_bodies]
        # (d) alternates batching on and off in rounds too, against two servers started side by
        # side (the one not measured is idle), for the same reason as (a) and (b)
        with genexfer(tmp / "models", db, batching=False) as unbatched:
            on, off = [], []
            before = batches(base)
            for _ in range(ROUNDS):
                on.append(singles(base + v2_url, bodies, single_headers, seconds / 2))
                off.append(singles(unbatched + v2_url, bodies, single_headers, seconds / 2))
                print(
                    f"(d) {clients} clients, batching on {on[-1][0]:.0f}/s, off {off[-1][0]:.0f}/s",
                    flush=True,
                )
            after = batches(base)
        n["d_batch"] = (after[0] - before[0]) / max(after[1] - before[1], 1)
        n["d_on"], n["d_on_p50"], n["d_on_p99"] = np.median(np.array(on), axis=0).tolist()
        n["d_off"], n["d_off_p50"], n["d_off_p99"] = np.median(np.array(off), axis=0).tolist()
        n["d_ratio"] = float(np.median([x[0] / y[0] for x, y in zip(on, off, strict=True)]))
        d_rounds = ", ".join(f"{x[0] / y[0]:.1f}×" for x, y in zip(on, off, strict=True))
    with textbook() as base:
        body = orjson.dumps({"values": x}, option=orjson.OPT_SERIALIZE_NUMPY)
        json_headers = {"content-type": "application/json"}
        n["e"] = throughput(base + "/predict", body, json_headers, BATCH, 2, seconds)
        one_bodies = [
            orjson.dumps({"values": one[i : i + 1]}, option=orjson.OPT_SERIALIZE_NUMPY)
            for i in range(clients)
        ]
        n["e_1"], n["e_1_p50"], n["e_1_p99"] = singles(
            base + "/predict", one_bodies, json_headers, seconds
        )
        print(f"(e) textbook: {n['e']:.0f} samples/s batched, {n['e_1']:.0f}/s singles", flush=True)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    rows = [
        (
            "(a) raw in-process ONNX Runtime, batches of 256",
            f"{n['a']:.0f} samples/s (median of {ROUNDS} rounds alternating with (b))",
            "the limit",
        ),
        (
            "(b) service, HTTP, v2 binary tensors, batches of 256 (2 clients)",
            f"{n['b']:.0f} samples/s; (b)/(a) per round {rounds}, median {n['ratio']:.0%}",
            f"≥ 80 % of (a): {verdict(n['ratio'] >= 0.8)}",
        ),
        (
            "(c) service, HTTP, v2 JSON, batches of 256",
            f"{n['c_v2']:.0f} samples/s = {n['c_v2'] / n['a']:.0%} of (a)",
            "reported",
        ),
        (
            "(c) service, HTTP, /v1 JSON matrix form, batches of 256",
            f"{n['c_v1']:.0f} samples/s = {n['c_v1'] / n['a']:.0%} of (a)",
            "reported",
        ),
        (
            f"(d) {clients} clients × 1 profile, v2 binary, batching on",
            f"{n['d_on']:.0f} profiles/s; p50 {n['d_on_p50']:.1f} ms, p99 {n['d_on_p99']:.1f} ms; "
            f"{n['d_batch']:.1f} profiles per ONNX Runtime call (medians of {ROUNDS} rounds "
            "alternating with off)",
            f"≥ 3× off: per round {d_rounds}, median {n['d_ratio']:.1f}× "
            f"{verdict(n['d_ratio'] >= 3)}",
        ),
        (
            f"(d) {clients} clients × 1 profile, v2 binary, batching off",
            f"{n['d_off']:.0f} profiles/s; "
            f"p50 {n['d_off_p50']:.1f} ms, p99 {n['d_off_p99']:.1f} ms",
            "",
        ),
        (
            "(e) textbook FastAPI + PyTorch eager + pydantic, JSON batches of 256 (2 clients)",
            f"{n['e']:.0f} samples/s",
            f"(b) is {n['b'] / n['e']:.1f}× this: {verdict(n['b'] >= 3 * n['e'])}",
        ),
        (
            f"(e) textbook, {clients} clients × 1 profile (JSON)",
            f"{n['e_1']:.0f} profiles/s; p50 {n['e_1_p50']:.1f} ms, p99 {n['e_1_p99']:.1f} ms",
            f"(d, on) is {n['d_on'] / n['e_1']:.1f}× this: {verdict(n['d_on'] >= 3 * n['e_1'])}",
        ),
    ]
    return rows, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    rows, _ = run(args.seconds, args.clients)
    table = "| measurement | result | target |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )
    header = (
        f"- command: `make bench` (= `python -m tests.perf.bench --seconds {args.seconds:g} "
        f"--clients {args.clients}`)\n"
        f"- machine: {machine()}; no GPU (CPUExecutionProvider only)\n"
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; onnxruntime {ort.__version__}, "
        f"Python {platform.python_version()}\n"
    )
    generated = "<!-- generated by tests/perf/bench.py -->\n" + header + "\n" + table + "\n"
    print("\n" + generated)
    text = args.out.read_text() if args.out.exists() else ""
    marker = "<!-- generated by tests/perf/bench.py -->"
    notes = text.split(marker, 1)[0] if marker in text else "# Benchmark results\n\n"
    args.out.write_text(notes + generated)


if __name__ == "__main__":
    main()
