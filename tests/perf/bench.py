# ruff: noqa: E501  (the result rows are long f-strings; they read best one per line)
"""`make bench`: serving throughput and latency on one model and one machine, in one run.

(a) raw in-process ONNX Runtime, batches of 256 — the model's limit; (b) the service over HTTP,
KServe v2 binary tensors, batches of 256; (c) each text format (/v1 JSON matrix and records, v2
JSON, CSV) against its own parse limit, measured in-process in the same run (orjson.loads of the
very body plus np.asarray(..., float32); pyarrow's CSV reader with the gene columns typed float32
on the same matrix as CSV), at 256 × 20,000 and 2,000 × 765; (d) 64 concurrent clients posting one
profile each, batching on vs off; (e) the textbook FastAPI + PyTorch-eager + pydantic service;
(g) the peers on the same model and clients: Triton through PyTriton and KServe's ModelServer,
each running the exported model.onnx with ONNX Runtime. Clients run on the same machine as the
servers (there is no other), so they take CPU from them; measurements that are compared alternate
in short rounds, since this machine's speed drifts by tens of percent within minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv

from contract.card import ModelCard
from tests.perf import server
from tests.perf.clients import batches, singles, throughput
from tests.perf.model import GENES, N_CLASSES, N_GENES, export, name_of, profiles
from tests.perf.server import genexfer_command, genexfer_env, load, machine, serve

BATCH = 256
ROUNDS = 3
SHAPES = ((256, 20_000), (2_000, 765))  # (samples per request, genes) of the text formats
HERE = Path(__file__).resolve().parent
SECTIONS = ("ab", "c", "d", "e", "g")


def ort_session(folder: Path) -> ort.InferenceSession:
    """An in-process session with the service's session options and providers."""
    from app.inference.onnx import provider_options

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    card = ModelCard.read(folder)
    providers = [(p, provider_options(p, card, 0, BATCH)) for p in server.PROVIDERS]
    return ort.InferenceSession(str(folder / "model.onnx"), opts, providers=providers)


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


def genexfer(
    models_dir: Path, db: str, batching: bool, **extra: str
) -> contextlib.AbstractContextManager[str]:
    env = genexfer_env(models_dir, db, GENEXFER_BATCHING="true" if batching else "false", **extra)
    return serve(genexfer_command(), env, "/readyz")


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


# --- (c) text formats and their parse limits ---


def csv_body(x: np.ndarray, genes: list[str]) -> bytes:
    table = pa.table(
        {"sample_id": [f"s{i}" for i in range(len(x))], **dict(zip(genes, x.T, strict=True))}
    )
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()


def csv_reader(body: bytes, names: list[str]) -> Callable[[], Any]:
    """pyarrow's CSV reader at its fastest on this body: gene columns typed float32, and the
    block size (1, 4, 16 or 64 MiB) that read it fastest here."""
    types = {names[0]: pa.string(), **dict.fromkeys(names[1:], pa.float32())}

    def reader(block: int) -> Callable[[], Any]:
        options = pacsv.ReadOptions(block_size=block)
        convert = pacsv.ConvertOptions(column_types=types)
        return lambda: pacsv.read_csv(
            pa.BufferReader(body), read_options=options, convert_options=convert
        )

    timed = {}
    for block in (1 << 20, 1 << 22, 1 << 24, 1 << 26):
        read = reader(block)
        read()
        start = time.perf_counter()
        read()
        timed[block] = time.perf_counter() - start
    return reader(min(timed, key=timed.__getitem__))


def text_formats(
    n: int, n_genes: int
) -> dict[str, tuple[bytes, dict[str, str], str, Callable[[], Any]]]:
    """format → (body, headers, path, its parse limit: a function doing what the limit does)."""
    x = profiles(n, n_genes=n_genes)
    genes = GENES[:n_genes]
    ids = [f"s{i}" for i in range(n)]
    name = name_of(n_genes)
    opt = orjson.OPT_SERIALIZE_NUMPY
    matrix = orjson.dumps({"genes": genes, "sample_ids": ids, "values": x}, option=opt)
    records = orjson.dumps(
        {
            "genes": genes,
            "samples": [{"id": i, "values": row} for i, row in zip(ids, x, strict=True)],
        },
        option=opt,
    )
    v2 = v2_json(x)
    csv = csv_body(x, genes)
    json_h = {"content-type": "application/json"}
    v1 = f"/v1/models/{name}/classify"

    def json_limit(body: bytes, values: Callable[[Any], Any]) -> Callable[[], Any]:
        return lambda: np.asarray(values(orjson.loads(body)), dtype=np.float32)

    return {
        "/v1 JSON matrix": (matrix, json_h, v1, json_limit(matrix, lambda d: d["values"])),
        "/v1 JSON records": (
            records, json_h, v1, json_limit(records, lambda d: [s["values"] for s in d["samples"]])
        ),
        "v2 JSON": (v2, json_h, f"/v2/models/{name}/infer", json_limit(v2, lambda d: d["inputs"][0]["data"])),
        "/v1 CSV": (csv, {"content-type": "text/csv"}, v1, csv_reader(csv, ["sample_id", *genes])),
    }  # fmt: skip


def parse_rate(parse: Callable[[], Any], rows: int, seconds: float) -> tuple[float, float]:
    """(samples/s, CPU seconds per parse) of one in-process parse loop (the limit), ≥ 3 parses.

    The CPU time is this process's (all threads: pyarrow's too); on a machine shared with other
    work it is what wall time cannot be, the same whatever the load.
    """
    parse()
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds or done < 3 * rows:
        parse()
        done += rows
    return done / (time.perf_counter() - start), (time.process_time() - cpu) * rows / done


# --- the run ---


@contextlib.contextmanager
def maybe(label: str, errors: list[str]) -> Iterator[None]:
    """Run one part; a peer that cannot start is reported, not fatal."""
    try:
        yield
    except (FileNotFoundError, RuntimeError, OSError) as exc:
        errors.append(f"{label}: {str(exc).splitlines()[0][:300]}")
        print(f"{label}: not measured ({errors[-1]})", flush=True)


def run(
    seconds: float, clients: int, sections: tuple[str, ...]
) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """Every measurement asked for; returns table rows (what, result, vs target) and numbers."""
    tmp = Path(tempfile.mkdtemp(prefix="genexfer-bench-"))
    print("exporting the benchmark models (20000 and 765 genes → 1024 → 256 → 10) ...", flush=True)
    folder = export(tmp / "models")
    if "c" in sections:
        export(tmp / "models", n_genes=765)
    n: dict[str, Any] = {"loads": []}
    rows: list[tuple[str, str, str]] = []
    errors: list[str] = []
    session = ort_session(folder)
    x = profiles(BATCH)
    one = profiles(clients, seed=2)
    binary, binary_headers = v2_binary(x)
    v2_url = f"/v2/models/{name_of(N_GENES)}/infer"
    single_bodies = [v2_binary(one[i : i + 1])[0] for i in range(clients)]
    single_headers = {
        "inference-header-content-length": v2_binary(one[:1])[1]["inference-header-content-length"]
    }
    db = f"sqlite:///{tmp / 'bench.db'}"

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    with genexfer(tmp / "models", db, batching=True) as base:
        pid = server.PIDS[-1]
        if "ab" in sections:
            n["loads"].append(f"(a)/(b) {load()}")
            # (a) and (b) alternate in short rounds: only measurements side by side compare
            a, b = [], []
            for _ in range(ROUNDS):
                a.append(raw_ort(session, seconds / 2))
                b.append(throughput(base + v2_url, binary, binary_headers, BATCH, 2, seconds / 2))
                print(
                    f"(a) raw ONNX Runtime {a[-1]:.0f}, (b) HTTP v2 binary {b[-1]:.0f} samples/s",
                    flush=True,
                )
            n["a"], n["b"] = float(np.median(a)), float(np.median(b))
            n["ratio"] = float(np.median(np.array(b) / np.array(a)))
            per_round = ", ".join(f"{y / x_:.0%}" for x_, y in zip(a, b, strict=True))
            rows.append(
                (
                    "(a) raw in-process ONNX Runtime, batches of 256",
                    f"{n['a']:.0f} samples/s (median of {ROUNDS} rounds alternating with (b))",
                    "the limit",
                )
            )
            rows.append(("(b) service, HTTP, v2 binary tensors, batches of 256 (2 clients)", f"{n['b']:.0f} samples/s; (b)/(a) per round {per_round}, median {n['ratio']:.0%}", f"≥ 80 % of (a): {verdict(n['ratio'] >= 0.8)}"))  # fmt: skip
        if "c" in sections:
            n["c"] = {}
            for samples, n_genes in SHAPES:
                n["loads"].append(f"(c) {samples}×{n_genes} {load()}")
                for fmt, (body, headers, path, parse) in text_formats(samples, n_genes).items():
                    limit, service, cpu, parse_cpu = [], [], [], []
                    for _ in range(ROUNDS):
                        rate, parse_s = parse_rate(parse, samples, seconds / 4)
                        limit.append(rate)
                        parse_cpu.append(parse_s)
                        before, t0 = server.cpu_seconds(pid), time.perf_counter()
                        service.append(
                            throughput(base + path, body, headers, samples, 2, seconds / 4)
                        )
                        requests = service[-1] * (time.perf_counter() - t0) / samples
                        cpu.append((server.cpu_seconds(pid) - before) / requests)
                    ratio = float(np.median(np.array(service) / np.array(limit)))
                    n["c"][(fmt, samples, n_genes)] = (
                        float(np.median(limit)),
                        float(np.median(service)),
                        ratio,
                    )
                    per_round = ", ".join(
                        f"{s / lim:.0%}" for lim, s in zip(limit, service, strict=True)
                    )
                    print(
                        f"(c) {fmt} {samples}×{n_genes}: limit {np.median(limit):.0f}, service {np.median(service):.0f} samples/s, {per_round}",
                        flush=True,
                    )
                    parse_ms = 1000 * float(np.median(parse_cpu))
                    server_ms = 1000 * float(np.median(cpu))
                    n["c"][(fmt, samples, n_genes)] += (parse_ms, server_ms)
                    rows.append((
                        f"(c) {fmt}, {samples} × {n_genes:,} ({len(body) / 1e6:.0f} MB), 2 clients",
                        f"service {np.median(service):.0f} samples/s vs its parse limit {np.median(limit):.0f}; per round {per_round}, median {ratio:.0%}; "
                        f"CPU per request: the parse alone {parse_ms:.0f} ms, the server {server_ms:.0f} ms ({parse_ms / server_ms:.0%})",
                        f"≥ 80 % of its limit: {verdict(ratio >= 0.8)} (in CPU time: {verdict(parse_ms >= 0.8 * server_ms)})",
                    ))  # fmt: skip
        if "d" in sections:
            n["loads"].append(f"(d) {load()}")
            # (d) alternates batching on and off against two servers side by side (the one not
            # measured is idle), for the same reason as (a) and (b)
            with genexfer(tmp / "models", db, batching=False) as unbatched:
                on, off = [], []
                before = batches(base)
                for _ in range(ROUNDS):
                    on.append(singles(base + v2_url, single_bodies, single_headers, seconds / 2))
                    off.append(
                        singles(unbatched + v2_url, single_bodies, single_headers, seconds / 2)
                    )
                    print(
                        f"(d) {clients} clients, batching on {on[-1][0]:.0f}/s, off {off[-1][0]:.0f}/s",
                        flush=True,
                    )
                after = batches(base)
            n["d_batch"] = (after[0] - before[0]) / max(after[1] - before[1], 1)
            n["d_on"], n["d_on_p50"], n["d_on_p99"] = np.median(np.array(on), axis=0).tolist()
            n["d_off"], n["d_off_p50"], n["d_off_p99"] = np.median(np.array(off), axis=0).tolist()
            n["d_ratio"] = float(np.median([p[0] / q[0] for p, q in zip(on, off, strict=True)]))
            d_rounds = ", ".join(f"{p[0] / q[0]:.1f}×" for p, q in zip(on, off, strict=True))
            rows.append((f"(d) {clients} clients × 1 profile, v2 binary, batching on", f"{n['d_on']:.0f} profiles/s; p50 {n['d_on_p50']:.1f} ms, p99 {n['d_on_p99']:.1f} ms; {n['d_batch']:.1f} profiles per ONNX Runtime call (medians of {ROUNDS} rounds alternating with off)", f"≥ 3× off: per round {d_rounds}, median {n['d_ratio']:.1f}× {verdict(n['d_ratio'] >= 3)}"))  # fmt: skip
            rows.append((f"(d) {clients} clients × 1 profile, v2 binary, batching off", f"{n['d_off']:.0f} profiles/s; p50 {n['d_off_p50']:.1f} ms, p99 {n['d_off_p99']:.1f} ms", ""))  # fmt: skip
        if "g" in sections:
            peers(n, rows, errors, base, folder, session, binary, binary_headers, single_bodies, single_headers, seconds)  # fmt: skip
    if "e" in sections:
        n["loads"].append(f"(e) {load()}")
        with textbook() as base:
            body = orjson.dumps({"values": x}, option=orjson.OPT_SERIALIZE_NUMPY)
            json_headers = {"content-type": "application/json"}
            n["e"] = throughput(base + "/predict", body, json_headers, BATCH, 2, seconds)
            one_bodies = [orjson.dumps({"values": one[i : i + 1]}, option=orjson.OPT_SERIALIZE_NUMPY) for i in range(clients)]  # fmt: skip
            n["e_1"], n["e_1_p50"], n["e_1_p99"] = singles(
                base + "/predict", one_bodies, json_headers, seconds
            )
            print(
                f"(e) textbook: {n['e']:.0f} samples/s batched, {n['e_1']:.0f}/s singles",
                flush=True,
            )
        rows.append(("(e) textbook FastAPI + PyTorch eager + pydantic, JSON batches of 256 (2 clients)", f"{n['e']:.0f} samples/s", f"(b) is {n.get('b', float('nan')) / n['e']:.1f}× this: {verdict(n.get('b', 0) >= 3 * n['e'])}"))  # fmt: skip
        rows.append((f"(e) textbook, {clients} clients × 1 profile (JSON)", f"{n['e_1']:.0f} profiles/s; p50 {n['e_1_p50']:.1f} ms, p99 {n['e_1_p99']:.1f} ms", f"(d, on) is {n.get('d_on', float('nan')) / n['e_1']:.1f}× this: {verdict(n.get('d_on', 0) >= 3 * n['e_1'])}"))  # fmt: skip
    n["errors"] = errors
    return rows, n


def peers(
    n: dict[str, Any],
    rows: list[tuple[str, str, str]],
    errors: list[str],
    base: str,
    folder: Path,
    session: ort.InferenceSession,
    binary: bytes,
    binary_headers: dict[str, str],
    single_bodies: list[bytes],
    single_headers: dict[str, str],
    seconds: float,
) -> None:
    """(g) GeneXfer, Triton (PyTriton) and KServe on the same model, clients and bodies, in rounds
    (each round: raw ONNX Runtime, then each server in turn), batches of 256 and 64 singles."""
    from tests.perf.peers import run as peer

    name = name_of(N_GENES)
    path = f"/v2/models/{name}/infer"
    servers = {"GeneXfer": contextlib.nullcontext(base)}
    stack = contextlib.ExitStack()
    with stack:
        with maybe("Triton (PyTriton)", errors):
            servers["Triton (PyTriton)"] = contextlib.nullcontext(stack.enter_context(peer.triton(folder / "model.onnx", name, N_GENES, N_CLASSES)))  # fmt: skip
        with maybe("KServe ModelServer", errors):
            servers["KServe ModelServer"] = contextlib.nullcontext(stack.enter_context(peer.kserve(folder / "model.onnx", name)))  # fmt: skip
        urls = {k: v.__enter__() for k, v in servers.items()}
        n["loads"].append(f"(g) {load()}")
        raw: list[float] = []
        big: dict[str, list[float]] = {k: [] for k in urls}
        small: dict[str, list[tuple[float, float, float]]] = {k: [] for k in urls}
        for _ in range(ROUNDS):
            raw.append(raw_ort(session, seconds / 4))
            for label, url in urls.items():
                with maybe(f"{label} batches", errors):
                    big[label].append(
                        throughput(url + path, binary, binary_headers, BATCH, 2, seconds / 4)
                    )
                with maybe(f"{label} singles", errors):
                    small[label].append(
                        singles(url + path, single_bodies, single_headers, seconds / 2)
                    )
                print(
                    f"(g) {label}: batches {big[label][-1:]} samples/s, singles {small[label][-1:]}",
                    flush=True,
                )
    n["g"] = {"raw": raw, "big": big, "small": small}
    for label in urls:
        if big[label]:
            share = [b / r for b, r in zip(big[label], raw, strict=False)]
            rows.append((f"(g) {label}, v2 binary, batches of 256 (2 clients)", f"{np.median(big[label]):.0f} samples/s = {np.median(share):.0%} of raw ONNX Runtime (per round {', '.join(f'{s:.0%}' for s in share)})", "GeneXfer ahead of both" if label == "GeneXfer" else ""))  # fmt: skip
    for label in urls:
        if small[label]:
            rate, p50, p99 = np.median(np.array(small[label]), axis=0).tolist()
            rows.append((f"(g) {label}, {len(single_bodies)} clients × 1 profile, v2 binary", f"{rate:.0f} profiles/s; p50 {p50:.1f} ms, p99 {p99:.1f} ms (medians of {len(small[label])} rounds)", "GeneXfer ahead; its p99 ≤ Triton's" if label == "GeneXfer" else ""))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measurement")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated, of {SECTIONS}"
    )
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    started = time.monotonic()
    rows, n = run(args.seconds, args.clients, sections)
    table = "| measurement | result | target |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )
    header = (
        f"- command: `make bench` (= `python -m tests.perf.bench --seconds {args.seconds:g} "
        f"--clients {args.clients} --sections {','.join(sections)}`), {time.monotonic() - started:.0f} s\n"
        f"- machine: {machine()}; providers {server.PROVIDERS}\n"
        f"- load averages (1/5/15 min) at the start of each part: {'; '.join(n['loads'])}\n"
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; onnxruntime {ort.__version__}, "
        f"Python {platform.python_version()}\n"
        + "".join(f"- not measured: {e}\n" for e in n["errors"])
    )
    generated = "<!-- generated by tests/perf/bench.py -->\n" + header + "\n" + table + "\n"
    print("\n" + generated)
    text = args.out.read_text() if args.out.exists() else ""
    marker = "<!-- generated by tests/perf/bench.py -->"
    notes = text.split(marker, 1)[0] if marker in text else "# Benchmark results\n\n"
    args.out.write_text(notes + generated)


if __name__ == "__main__":
    main()
