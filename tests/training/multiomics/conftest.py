"""A small synthetic multi-omics dataset and a published expression encoder pretrained on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.align import align_matrix
from contract.card import ModelCard, TrainingData
from contract.preprocess.pipeline import PreprocessPipeline
from training.export.graphs import CardInfo, export_encoder
from training.multiomics.data import MultiOmics, make_multiomics
from training.multiomics.finetune import MultiOmicsResult, finetune_multiomics
from training.nn.config import TrainConfig
from training.nn.encoders import AutoencoderConfig
from training.publish.parent import load_autoencoder
from training.train.pretrain import pretrain


@pytest.fixture(scope="session")
def omics() -> MultiOmics:
    """160 samples: 40 genes, 24 CpGs, 10 proteins, 3 classes; 20 % / 30 % lack a modality."""
    return make_multiomics(160, n_genes=40, n_cpgs=24, n_proteins=10, separation=1.5, seed=3)


@pytest.fixture(scope="session")
def omics_encoder(omics: MultiOmics, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/ holding 'omics-enc' version 1, pretrained on the expression for a few epochs."""
    models = tmp_path_factory.mktemp("omics-models")
    expr = omics.expression
    pipe = PreprocessPipeline.fit(expr, "counts")
    cfg = AutoencoderConfig(n_genes=expr.shape[1], hidden=(16,), latent=6)
    quick = TrainConfig(epochs=4, batch_size=64, val_fraction=0.2, patience=2)
    ae, _ = pretrain(expr, pipe, cfg, quick, progress=False)
    data = TrainingData(
        name="synthetic-omics", fingerprint=expr.fingerprint(), n_samples=expr.shape[0],
        n_genes=expr.shape[1],
    )  # fmt: skip
    info = CardInfo(description="test encoder", training_data=data)
    export_encoder(ae, pipe, name="omics-enc", models_dir=models, info=info, reference=expr.X)
    return models


@pytest.fixture(scope="session")
def omics_trained(
    omics: MultiOmics, omics_encoder: Path
) -> tuple[MultiOmicsResult, MultiOmics, PreprocessPipeline]:
    """A frozen-encoder multi-omics classifier trained for a few epochs on `omics`."""
    folder = omics_encoder / "omics-enc" / "1"
    card = ModelCard.read(folder)
    expr, _ = align_matrix(omics.expression, card.panel, card.input_scale)
    data, pipe = MultiOmics(expr, omics.modalities), PreprocessPipeline.load(folder)
    encoder = load_autoencoder(folder).encoder
    cfg = TrainConfig(epochs=6, batch_size=32, lr=3e-3, val_fraction=0.2, patience=3, seed=0)
    return finetune_multiomics(encoder, pipe, data, "label", cfg), data, pipe
