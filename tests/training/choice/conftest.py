"""A small published encoder for the choice and tuning tests, and a head chosen on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from tests.factories import published_encoder
from training.choice import candidates as cands
from training.evaluation.splits import Dataset
from training.nn.config import TrainConfig
from training.publish.chosen import ChosenRun, choose_and_export
from training.publish.parent import load_autoencoder

QUICK = TrainConfig(epochs=8, batch_size=32, lr=3e-3, val_fraction=0.2, patience=3, seed=0)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small encoder pretrained on synthetic counts (40 genes), in a models folder of its own
    (heads published on it go beside it)."""
    return published_encoder(
        models_dir=tmp_path_factory.mktemp("models"), description="choice test encoder"
    )


def publish_chosen(
    encoder: Path, data: Dataset, models: Path, name: str, train_cfg: TrainConfig, **kw: Any
) -> ChosenRun:
    """A head chosen on `encoder` for `data` (linear, no dropout) and published as `name` into
    `models`; `kw` goes to `choose_and_export` (the candidates, a strategy, a search)."""
    return choose_and_export(
        data,
        encoder_folder=encoder,
        label_column="label",
        head_hidden=(),
        head_dropout=0.0,
        train_cfg=train_cfg,
        name=name,
        models_dir=models,
        description="test",
        **kw,
    )


def problem_on(
    encoder: Path,
    matrix: ExpressionMatrix,
    task: str = "classification",
    train_cfg: TrainConfig = QUICK,
) -> cands.Problem:
    """The choice's problem for `matrix` on `encoder`: a linear head trained by `train_cfg`."""
    auto = load_autoencoder(encoder)
    return cands.Problem(
        matrix=matrix,
        label_column="label",
        task=task,  # type: ignore[arg-type]
        encoder=auto.encoder,
        latent=auto.config.latent,
        pipeline=PreprocessPipeline.load(encoder),
        head_hidden=(),
        head_dropout=0.0,
        train_cfg=train_cfg,
    )
