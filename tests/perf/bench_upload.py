"""A 1,000-sample × 20,000-gene CSV dataset upload through a real server (issue 15): stored in
< 10 s, ids kept as text. Integer counts (like tests/perf/bench_read_csv.py) plus a `cell_type`
label column left for the server to recognise (no label_columns given: the slower path), ids
with leading zeros. Each round also times the same body in-process through the functions the
route calls (`app.services.datasets.parse_upload`, then the npz write of `store`), so the HTTP
time can be read against the parse's. Run: `python tests/perf/bench_upload.py [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.codecs.datasets import save_npz
from app.services.datasets import parse_upload
from tests.perf.server import genexfer_command, genexfer_env, load, machine, serve, write_block

N_SAMPLES, N_GENES, BUDGET_S = 1_000, 20_000, 10.0
MAX_BYTES = 512 << 20


def in_process(body: bytes, folder: Path) -> tuple[float, float, list[str]]:
    """(parse s, npz write s, first ids) of the route's own functions on `body`."""
    start = time.perf_counter()
    parsed, _ = parse_upload(
        data=body,
        filename="counts.csv",
        fmt=None,
        label_columns=None,
        labels=None,
        labels_filename=None,
        max_values=MAX_BYTES,
    )
    parsed_s = time.perf_counter() - start
    assert parsed.X.shape == (N_SAMPLES, N_GENES)
    assert list(parsed.labels) == ["cell_type"]
    save_npz(parsed, folder / "in-process.npz")
    return parsed_s, time.perf_counter() - start - parsed_s, parsed.sample_ids[:3]


def make_csv(n: int = N_SAMPLES, g: int = N_GENES) -> bytes:
    rng = np.random.default_rng(0)
    counts = rng.negative_binomial(2, 0.6, size=(n, g))
    header = "sample_id," + ",".join(f"ENSG{j:011d}" for j in range(g)) + ",cell_type"
    lines = [header] + [
        f"{i:05d}," + ",".join(map(str, row)) + f",type_{i % 4}"
        for i, row in enumerate(counts.tolist())
    ]
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--results",
        type=Path,
        default=Path(__file__).resolve().parent / "RESULTS.md",
        help="results file whose upload block is replaced ('-': none)",
    )
    args = parser.parse_args()
    body = make_csv()
    tmp = Path(tempfile.mkdtemp(prefix="genexfer-upload-"))
    env = genexfer_env(
        tmp / "models",
        f"sqlite:///{tmp / 'bench.db'}",
        GENEXFER_DATA_DIR=str(tmp / "data"),
        GENEXFER_MAX_DATASET_BYTES=str(MAX_BYTES),
    )
    (tmp / "models").mkdir()
    times, loads, parses, writes = [], [], [], []
    with serve(genexfer_command(), env, "/healthz") as base:
        http = httpx.Client(base_url=base, timeout=600)
        for i in range(args.repeats):
            loads.append(load())
            start = time.perf_counter()
            r = http.post(
                "/v1/datasets", files={"file": ("counts.csv", body)}, data={"name": f"u{i}"}
            )
            times.append(time.perf_counter() - start)
            r.raise_for_status()
            got = r.json()
            assert (got["n_samples"], got["n_genes"]) == (N_SAMPLES, N_GENES), got
            parse_s, write_s, first = in_process(body, tmp)
            parses.append(parse_s)
            writes.append(write_s)
            assert first == ["00000", "00001", "00002"], first
            print(
                f"upload {i + 1}: {times[-1]:.2f} s (load {loads[-1]}); in-process parse "
                f"{parse_s:.2f} s + npz {write_s:.2f} s",
                flush=True,
            )
        stored = next((tmp / "data" / "datasets").glob("*.npz"))
        with np.load(stored, allow_pickle=False) as npz:
            ids = [str(s) for s in npz["sample_ids"][:3]]
    median = statistics.median(times)
    text = (
        f"- command: `python tests/perf/bench_upload.py --repeats {args.repeats}`\n"
        f"- machine: {machine()}; load averages before each upload: {'; '.join(loads)}\n"
        f"- file: {len(body) / 1e6:.0f} MB CSV, {N_SAMPLES:,} samples × {N_GENES:,} genes (counts) "
        f"+ a label column; stored ids start {ids}\n"
        f"- upload → 201 (multipart, parse, checks, npz, row): per run "
        f"{', '.join(f'{t:.2f}' for t in times)} s, median **{median:.2f} s** "
        f"(< {BUDGET_S:.0f} s: {'met' if median < BUDGET_S else '**missed**'})\n"
        f"- in-process, same body, alternating with the uploads: `parse_upload` "
        f"{', '.join(f'{t:.2f}' for t in parses)} s (median {statistics.median(parses):.2f} s), "
        f"then the npz write {statistics.median(writes):.2f} s\n"
    )
    print("\n" + text)
    if str(args.results) != "-":
        write_block(args.results, "bench_upload", text)


if __name__ == "__main__":
    main()
