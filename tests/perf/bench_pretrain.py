"""Benchmark: streaming pretraining throughput and peak memory on a source larger than we load.

Writes a synthetic 100,000 × 20,000 float32 matrix (8 GB) to a memory-mapped .npy in chunks,
then pretrains a denoising autoencoder on it for a fixed number of optimiser steps, streaming
chunk by chunk, and prints samples/s and the peak resident set size. Not collected by pytest.

    .venv/bin/python tests/perf/bench_pretrain.py --dir data/bench --steps 300
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from contract.preprocess.pipeline import PreprocessPipeline
from training.data.stream import npy_source, sample_rows
from training.nn.config import TrainConfig
from training.nn.variants import DenoisingAutoencoderConfig
from training.train.pretrain import pretrain_stream


def write_source(path: Path, n_rows: int, n_genes: int, chunk: int = 2000) -> None:
    """Synthetic log-scale values (about 30% non-zero), written chunk by chunk to a .npy."""
    rng = np.random.default_rng(0)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_rows, n_genes))
    for start in range(0, n_rows, chunk):
        rows = min(chunk, n_rows - start)
        values = rng.random((rows, n_genes), dtype=np.float32)
        values *= values < 0.3
        out[start : start + rows] = values * 10.0
    out.flush()
    del out
    path.with_name(path.name + ".genes.txt").write_text(
        "\n".join(f"gene{j}" for j in range(n_genes)) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("data/bench"))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk-rows", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"synthetic_{args.rows}x{args.genes}.npy"
    if not path.exists():
        start = time.perf_counter()
        write_source(path, args.rows, args.genes)
        took = time.perf_counter() - start
        print(f"wrote {path} ({path.stat().st_size / 1e9:.1f} GB) in {took:.0f} s")
    source = npy_source(path, chunk_rows=args.chunk_rows)
    chunks = list(range(len(source.chunks)))
    val_chunks, train_chunks = [source.chunks[0]], [source.chunks[i] for i in chunks[1:]]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fit_sample = sample_rows(source, 2048, seed=0, chunks=chunks[1:])
    pipeline = PreprocessPipeline.fit(fit_sample, "log")
    del fit_sample
    cfg = DenoisingAutoencoderConfig(n_genes=args.genes, hidden=(256,), latent=64)
    train_cfg = TrainConfig(
        epochs=1, batch_size=args.batch_size, lr=1e-3, val_fraction=0.1, patience=1, seed=0
    )
    start = time.perf_counter()
    _, history = pretrain_stream(
        source,
        pipeline,
        cfg,
        train_cfg,
        train_chunks=train_chunks,
        val_chunks=val_chunks,
        max_steps=args.steps,
        progress=False,
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "rows": args.rows,
        "genes": args.genes,
        "file_gb": round(path.stat().st_size / 1e9, 2),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "chunk_rows": args.chunk_rows,
        "threads": args.threads,
        "samples_trained": history.samples_seen,
        "seconds_incl_validation": round(seconds, 1),
        "samples_per_s": round(history.samples_seen / seconds, 1),
        "peak_rss_mb": round(peak),
        "rss_before_training_mb": round(rss_before),
        "val_loss": round(history.val_loss[-1], 4),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
