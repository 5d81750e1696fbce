"""Benchmark: read a 20,000-gene × 10,000-sample CSV into an ExpressionMatrix.

Not collected by pytest. Run: .venv/bin/python tests/perf/bench_read_csv.py [--genes N]
[--samples N] [--dir DIR]. Writes the file once (integer counts, genes as rows, as a count
matrix from a pipeline looks), then times `read_csv` with orientation detection, the explicit
orientation, and the gzipped file; prints one line per case and the file sizes.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from contract.io.readers import read_csv


def write_table(path: Path, genes: int, samples: int, seed: int = 0) -> None:
    """Genes as rows (Ensembl-like ids), samples as columns, negative-binomial-ish counts."""
    rng = np.random.default_rng(seed)
    means = rng.gamma(0.6, 40.0, genes).astype(np.float32)
    columns = {"gene": pa.array([f"ENSG{j:011d}" for j in range(genes)])}
    for i in range(samples):
        columns[f"S{i:05d}"] = pa.array(rng.poisson(means).astype(np.int32))
    pacsv.write_csv(pa.table(columns), path)


def main() -> None:
    """Write the file if needed, then time the reads."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "genexfer-bench")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"counts_{args.genes}x{args.samples}.csv"
    if not path.exists():
        start = time.perf_counter()
        write_table(path, args.genes, args.samples)
        print(f"wrote {path} in {time.perf_counter() - start:.1f} s")
    gz = path.with_suffix(".csv.gz")
    if not gz.exists():
        with path.open("rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
            shutil.copyfileobj(src, dst, 1 << 24)
    print(f"sizes: csv {path.stat().st_size / 1e9:.2f} GB, gz {gz.stat().st_size / 1e9:.2f} GB")
    for label, file, orientation in (
        ("csv, orientation auto", path, "auto"),
        ("csv, genes_as_rows", path, "genes_as_rows"),
        ("csv.gz, orientation auto", gz, "auto"),
    ):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            m = read_csv(file, orientation=orientation)  # type: ignore[arg-type]
            times.append(time.perf_counter() - start)
            assert m.shape == (args.samples, args.genes), m.shape
            del m
        print(f"{label:28s} best {min(times):6.2f} s  median {np.median(times):6.2f} s")


if __name__ == "__main__":
    main()
