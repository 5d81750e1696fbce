"""Denoising and variational autoencoders, their checkpoints, and streaming pretraining."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import anndata
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.data.stream import ArraySource, H5adSource, RowSource, open_source, sample_rows
from training.nn.checkpoint import load_checkpoint, save_checkpoint
from training.nn.config import TrainConfig
from training.nn.encoders import AutoencoderConfig
from training.nn.variants import (
    DenoisingAutoencoder,
    DenoisingAutoencoderConfig,
    VariationalAutoencoder,
    VariationalAutoencoderConfig,
    build_autoencoder,
    encoder_layers,
)
from training.train.pretrain import pretrain, pretrain_stream

pytestmark = pytest.mark.slow

CONFIGS = [
    AutoencoderConfig(n_genes=60, hidden=(16,), latent=4, input_dropout=0.2),
    DenoisingAutoencoderConfig(n_genes=60, hidden=(16, 8), latent=4, mask_rate=0.3),
    VariationalAutoencoderConfig(n_genes=60, hidden=(16,), latent=4, beta=0.5),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: type(c).__name__)
def test_checkpoint_rebuilds_exactly(tmp_path: Path, cfg: object) -> None:
    model = build_autoencoder(cfg)  # type: ignore[arg-type]
    save_checkpoint(tmp_path, {"autoencoder": model})
    back = load_checkpoint(tmp_path).parts["autoencoder"]
    assert type(back) is type(model)
    assert back.config == cfg  # type: ignore[union-attr]
    x = torch.randn(5, 60)
    model.eval()
    assert torch.equal(model.encoder(x), back.encoder(x))  # type: ignore[operator]


def test_masking_only_in_training() -> None:
    dae = DenoisingAutoencoder(DenoisingAutoencoderConfig(n_genes=40, hidden=(8,), latent=3))
    x = torch.randn(4, 40)
    dae.eval()
    assert torch.equal(dae(x), dae(x))
    dae.train()
    torch.manual_seed(0)
    a = dae(x)
    assert not torch.equal(a, dae(x))


def test_vae_embedding_is_the_deterministic_mean() -> None:
    vae = VariationalAutoencoder(VariationalAutoencoderConfig(n_genes=30, hidden=(8,), latent=3))
    x = torch.randn(6, 30)
    vae.eval()  # no dropout
    mu, logvar = vae.encoder.stats(x)
    assert torch.equal(vae.encoder(x), mu)
    assert logvar.shape == (6, 3)
    vae.train()
    assert float(vae.loss(x).detach()) > 0
    assert [layer.out_features for layer in encoder_layers(vae.encoder)] == [8, 3]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DenoisingAutoencoderConfig(n_genes=5, mask_rate=0.0), "mask_rate"),
        (lambda: VariationalAutoencoderConfig(n_genes=5, hidden=()), "at least one hidden"),
        (lambda: VariationalAutoencoderConfig(n_genes=5, beta=-1), "beta"),
        (lambda: DenoisingAutoencoderConfig(n_genes=5, activation="tanh"), "activation"),
    ],
)
def test_configs_refuse_bad_values(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


@pytest.mark.parametrize("cfg", CONFIGS[1:], ids=lambda c: type(c).__name__)
def test_same_seed_same_weights(counts: ExpressionMatrix, quick: TrainConfig, cfg: object) -> None:
    pipe = PreprocessPipeline.fit(counts, "counts")
    a, hist_a = pretrain(counts, pipe, cfg, quick, progress=False)  # type: ignore[arg-type]
    b, hist_b = pretrain(counts, pipe, cfg, quick, progress=False)  # type: ignore[arg-type]
    assert hist_a.val_loss == hist_b.val_loss
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    c, _ = pretrain(counts, pipe, cfg, dataclasses.replace(quick, seed=3), progress=False)  # type: ignore[arg-type]
    assert not torch.equal(next(iter(a.parameters())), next(iter(c.parameters())))


def _files(tmp_path: Path, matrix: ExpressionMatrix) -> list[Path]:
    npy = tmp_path / "x.npy"
    np.save(npy, matrix.X)
    (tmp_path / "x.npy.genes.txt").write_text("\n".join(matrix.gene_ids))
    parquet = tmp_path / "x.parquet"
    table = pa.table({g: matrix.X[:, j] for j, g in enumerate(matrix.gene_ids)})
    pq.write_table(table, parquet, row_group_size=50)
    h5ad = tmp_path / "x.h5ad"
    anndata.AnnData(
        X=matrix.X,
        obs=pd.DataFrame(index=matrix.sample_ids),
        var=pd.DataFrame(index=matrix.gene_ids),
    ).write_h5ad(h5ad)
    return [npy, parquet, h5ad]


def test_sources_read_the_same_rows(tmp_path: Path, counts: ExpressionMatrix) -> None:
    for path in _files(tmp_path, counts):
        source = open_source(path, chunk_rows=50)
        assert source.gene_ids == counts.gene_ids, path
        assert source.n_rows == 240
        assert [b - a for a, b in source.chunks] == [50, 50, 50, 50, 40]
        whole = np.concatenate([source.read(a, b) for a, b in source.chunks])
        np.testing.assert_array_equal(whole, counts.X)
    sample = sample_rows(open_source(tmp_path / "x.npy", 50), 70, seed=0, chunks=[0, 1, 2])
    assert sample.shape == (70, 60)


def _first_chunk_validates(source: RowSource) -> dict[str, Any]:
    return {"train_chunks": source.chunks[1:], "val_chunks": source.chunks[:1]}


def test_streaming_pretraining_is_reproducible_across_formats(
    tmp_path: Path, counts: ExpressionMatrix
) -> None:
    pipe = PreprocessPipeline.fit(counts, "counts")
    cfg = DenoisingAutoencoderConfig(n_genes=60, hidden=(16,), latent=4)
    train_cfg = TrainConfig(epochs=3, batch_size=16, lr=3e-3, patience=2, seed=1)
    weights = []
    for path in _files(tmp_path, counts):
        source = open_source(path, chunk_rows=50)
        model, history = pretrain_stream(
            source, pipe, cfg, train_cfg, **_first_chunk_validates(source), progress=False
        )
        assert history.samples_seen == 190 * len(history.val_loss)
        weights.append(model.encoder[0].weight.detach())  # type: ignore[index]
    assert torch.equal(weights[0], weights[1])
    assert torch.equal(weights[0], weights[2])


def test_streaming_stops_at_max_steps(counts: ExpressionMatrix) -> None:
    pipe = PreprocessPipeline.fit(counts, "counts")
    source = ArraySource(counts.X, counts.gene_ids, chunk_rows=40)
    cfg = AutoencoderConfig(n_genes=60, hidden=(8,), latent=2)
    run = TrainConfig(epochs=50, batch_size=10)
    split = _first_chunk_validates(source)
    _, history = pretrain_stream(source, pipe, cfg, run, **split, max_steps=7, progress=False)
    assert history.samples_seen == 70
    assert len(history.val_loss) == 1


def test_streaming_refuses_bad_input(tmp_path: Path, counts: ExpressionMatrix) -> None:
    pipe = PreprocessPipeline.fit(counts, "counts")
    source = ArraySource(counts.X, counts.gene_ids, chunk_rows=40)
    cfg = AutoencoderConfig(n_genes=60, hidden=(8,), latent=2)
    run = TrainConfig(epochs=1)
    with pytest.raises(ValueError, match="overlap"):
        pretrain_stream(
            source, pipe, cfg, run, train_chunks=source.chunks, val_chunks=source.chunks[:1]
        )
    absent = "cuda" if not torch.cuda.is_available() else "tpu"
    with pytest.raises(ValueError, match="cuda"):
        pretrain_stream(source, pipe, cfg, run, **_first_chunk_validates(source), device=absent)
    other = ArraySource(counts.X, [f"x{g}" for g in counts.gene_ids])
    with pytest.raises(ValueError, match="align them first"):
        pretrain_stream(other, pipe, cfg, run, train_chunks=[(40, 240)], val_chunks=[(0, 40)])
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros(5))
    with pytest.raises(ValueError, match=r"2-D numeric"):
        open_source(bad)
    np.save(tmp_path / "nogenes.npy", np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="gene ids missing"):
        open_source(tmp_path / "nogenes.npy")
    with pytest.raises(ValueError, match="cannot stream"):
        open_source(tmp_path / "x.csv")
    (tmp_path / "junk.h5ad").write_text("not hdf5")
    with pytest.raises(ValueError, match=r"not a readable \.h5ad"):
        H5adSource(tmp_path / "junk.h5ad")


def test_vae_encoder_exports_with_parity(tmp_path: Path, counts: ExpressionMatrix) -> None:
    from contract.card import ModelCard, TrainingData
    from training.export.graphs import CardInfo, export_encoder

    pipe = PreprocessPipeline.fit(counts, "counts")
    vae = build_autoencoder(VariationalAutoencoderConfig(n_genes=60, hidden=(16,), latent=4))
    data = TrainingData(name="s", fingerprint=counts.fingerprint(), n_samples=240, n_genes=60)
    folder = export_encoder(
        vae.eval(),
        pipe,
        name="vae",
        models_dir=tmp_path,
        info=CardInfo("vae", data),
        reference=counts.X,
    )
    card = ModelCard.read(folder)
    assert [o.name for o in card.outputs] == ["embedding"]
    assert card.verify_files(folder) == []
