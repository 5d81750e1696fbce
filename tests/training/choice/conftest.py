"""A small published encoder for the choice and tuning tests, and a head chosen on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contract.card import InputScale
from training.data.synthetic import make_synthetic
from training.evaluation.splits import Dataset, hold_out
from training.nn.config import TrainConfig
from training.nn.encoders import AutoencoderConfig
from training.publish.chosen import ChosenRun, choose_and_export
from training.publish.encoder import pretrain_and_export


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small encoder pretrained on synthetic counts (40 genes), in a models folder of its own
    (heads published on it go beside it)."""
    m = make_synthetic(120, 40, n_classes=3, seed=5)
    run = pretrain_and_export(
        hold_out("source", m, test_fraction=0.0, seed=0, stratify_by=None),
        input_scale=InputScale.counts,
        model_cfg=AutoencoderConfig(n_genes=40, hidden=(16,), latent=4),
        train_cfg=TrainConfig(epochs=3, batch_size=32, seed=0),
        name="enc",
        models_dir=tmp_path_factory.mktemp("models"),
        description="choice test encoder",
        progress=False,
    )
    return run.folder


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
