"""Self-supervised pretraining of an autoencoder, streaming minibatches chunk by chunk.

The same loop serves an in-memory matrix and a source larger than memory (`training.data.stream`):
it holds one chunk being trained on and one being prefetched, early-stops on validation chunks,
uses CUDA with mixed precision when asked and present, and is bit-reproducible on CPU.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.data.stream import ArraySource, Block, RowSource
from training.nn.config import TrainConfig
from training.nn.device import resolve_device
from training.nn.variants import (
    AnyAutoencoderConfig,
    Autoencoder,
    autoencoder_loss,
    build_autoencoder,
)
from training.train.apply import check_panel
from training.train.loop import EarlyStopping, History, seeded

__all__ = ["TrainConfig", "pretrain", "pretrain_stream", "reconstruction_mse"]
Chunks = Sequence[tuple[int, int]]


def pretrain(
    matrix: ExpressionMatrix,
    pipeline: PreprocessPipeline,
    model_cfg: AnyAutoencoderConfig,
    train_cfg: TrainConfig,
    *,
    progress: bool | None = None,
    device: str = "cpu",
) -> tuple[Autoencoder, History]:
    """Train an autoencoder on an in-memory matrix; a random ``val_fraction`` early-stops it.

    Parameters
    ----------
    matrix:
        Source samples on the pipeline's input scale, genes in the pipeline's panel order.
    pipeline:
        Fitted preprocessing (fit it on these samples or a superset of the training split only).
    model_cfg:
        Autoencoder, denoising autoencoder or VAE config; ``n_genes`` must equal the width the
        pipeline gives (the panel size, or the genes its selection step keeps).
    train_cfg:
        Optimisation settings; a random ``val_fraction`` of the samples drives early stopping.
    progress:
        Progress bar: ``True``/``False``, or ``None`` for "only on a terminal".
    device:
        ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA with mixed precision when present).

    Returns
    -------
    The autoencoder in eval mode with its best-validation weights, and the training history.
    Same inputs and seed give identical weights on the same machine (CPU).
    """
    check_panel(matrix, pipeline)
    n = matrix.shape[0]
    n_val = max(1, round(train_cfg.val_fraction * n))
    if n - n_val < 1:
        raise ValueError(f"{n} samples are too few to hold out a validation set")
    order = np.random.default_rng(train_cfg.seed).permutation(n)
    # validation rows first, then the training rows in one chunk: the in-memory case is the
    # streaming loop with a single chunk
    source = ArraySource(matrix.X[order], matrix.gene_ids, chunk_rows=n)
    return pretrain_stream(
        source,
        pipeline,
        model_cfg,
        train_cfg,
        train_chunks=[(n_val, n)],
        val_chunks=[(0, n_val)],
        progress=progress,
        device=device,
    )


def pretrain_stream(
    source: RowSource,
    pipeline: PreprocessPipeline,
    model_cfg: AnyAutoencoderConfig,
    train_cfg: TrainConfig,
    *,
    train_chunks: Chunks,
    val_chunks: Chunks,
    max_steps: int | None = None,
    progress: bool | None = None,
    device: str = "cpu",
) -> tuple[Autoencoder, History]:
    """Train an autoencoder on chunks read from `source`, early-stopped on `val_chunks`.

    Parameters
    ----------
    source:
        Rows on the pipeline's input scale, genes in panel order (see `training.data.stream`).
    pipeline:
        Fitted preprocessing, applied to each chunk as it is read.
    model_cfg:
        Autoencoder config; ``n_genes`` must equal the pipeline's output width.
    train_cfg:
        Epochs (passes over `train_chunks`), batch size, optimiser, patience and seed.
    train_chunks, val_chunks:
        Disjoint ``(start, stop)`` row ranges of `source` (e.g. ``source.chunks`` split).
    max_steps:
        Stop after this many optimiser steps (a time budget; validation still runs at the end).
    progress:
        Progress bar (samples): ``True``/``False``, or ``None`` for "only on a terminal".
    device:
        ``"cpu"``, ``"cuda"`` or ``"auto"``; on CUDA the forward pass runs in float16 autocast
        with a gradient scaler.
    """
    width = len(pipeline.output_names())  # the panel, or the genes a selection step keeps
    if model_cfg.n_genes != width:
        raise ValueError(
            f"model_cfg.n_genes={model_cfg.n_genes} but the preprocessing gives {width} "
            f"features (panel of {pipeline.n_genes} genes)"
        )
    if list(source.gene_ids) != pipeline.gene_ids:
        raise ValueError("the source's genes differ from the pipeline's panel; align them first")
    if not train_chunks or not val_chunks:
        raise ValueError("need at least one training chunk and one validation chunk")
    if set(train_chunks) & set(val_chunks):
        raise ValueError("training and validation chunks overlap")
    dev = resolve_device(device)
    amp = dev.type == "cuda"
    with seeded(train_cfg.seed):
        model = build_autoencoder(model_cfg).to(dev)
        optimiser = torch.optim.AdamW(
            model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay
        )
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        chunk_rng = np.random.default_rng(train_cfg.seed)
        row_gen = torch.Generator().manual_seed(train_cfg.seed)
        history = History()
        stopping = EarlyStopping(model, history, train_cfg.patience)
        steps = 0
        start = time.perf_counter()
        total_rows = sum(b - a for a, b in train_chunks) * train_cfg.epochs
        bar = tqdm(
            total=total_rows,
            desc="pretrain",
            unit="samples",
            disable=None if progress is None else not progress,
        )
        with ThreadPoolExecutor(max_workers=1) as reader:
            for epoch in range(train_cfg.epochs):
                model.train()
                total, seen = 0.0, 0
                order = [train_chunks[i] for i in chunk_rng.permutation(len(train_chunks))]
                for block in _prefetched(reader, source, pipeline, order):
                    x_all = torch.from_numpy(block)
                    perm = torch.randperm(len(x_all), generator=row_gen)
                    for first in range(0, len(perm), train_cfg.batch_size):
                        x = x_all[perm[first : first + train_cfg.batch_size]].to(dev)
                        with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                            loss = autoencoder_loss(model, x)
                        optimiser.zero_grad(set_to_none=True)
                        torch.autograd.backward(scaler.scale(loss))
                        scaler.step(optimiser)
                        scaler.update()
                        total += float(loss.detach()) * len(x)
                        seen += len(x)
                        steps += 1
                        bar.update(len(x))
                        if max_steps is not None and steps >= max_steps:
                            break
                    if max_steps is not None and steps >= max_steps:
                        break
                val_loss = _validate(model, reader, source, pipeline, val_chunks, train_cfg, dev)
                history.samples_seen += seen
                bar.set_postfix(train=f"{total / max(seen, 1):.4f}", val=f"{val_loss:.4f}")
                if stopping.end_epoch(epoch, total / max(seen, 1), val_loss):
                    break
                if max_steps is not None and steps >= max_steps:
                    break
        bar.close()
    stopping.restore("pretrain")
    history.seconds = time.perf_counter() - start
    return model.cpu().eval(), history


@torch.no_grad()
def reconstruction_mse(
    model: Autoencoder, pipeline: PreprocessPipeline, matrix: ExpressionMatrix
) -> float:
    """Mean squared reconstruction error on preprocessed `matrix` (e.g. held-out samples)."""
    check_panel(matrix, pipeline)
    X = torch.from_numpy(pipeline.transform(matrix.X))
    model.eval()
    return float(nn.functional.mse_loss(model(X), X))


def _load(source: RowSource, pipeline: PreprocessPipeline, chunk: tuple[int, int]) -> Block:
    return pipeline.transform(source.read(*chunk))


def _prefetched(
    reader: ThreadPoolExecutor,
    source: RowSource,
    pipeline: PreprocessPipeline,
    chunks: Chunks,
) -> Iterator[Block]:
    """Preprocessed chunks in order, the next one read in the background meanwhile."""
    pending: Future[Block] | None = None
    if chunks:
        pending = reader.submit(_load, source, pipeline, chunks[0])
    for i in range(len(chunks)):
        assert pending is not None
        block = pending.result()
        pending = (
            reader.submit(_load, source, pipeline, chunks[i + 1]) if i + 1 < len(chunks) else None
        )
        yield block


@torch.no_grad()
def _validate(
    model: Autoencoder,
    reader: ThreadPoolExecutor,
    source: RowSource,
    pipeline: PreprocessPipeline,
    chunks: Chunks,
    cfg: TrainConfig,
    dev: torch.device,
) -> float:
    model.eval()
    total, seen = 0.0, 0
    for block in _prefetched(reader, source, pipeline, chunks):
        x_all = torch.from_numpy(block)
        for first in range(0, len(x_all), cfg.batch_size):
            x = x_all[first : first + cfg.batch_size].to(dev)
            total += float(autoencoder_loss(model, x)) * len(x)
            seen += len(x)
    model.train()
    return total / max(seen, 1)
