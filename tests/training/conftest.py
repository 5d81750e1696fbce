"""Shared fixtures: small seeded synthetic data and short training settings."""

from __future__ import annotations

import pytest

from contract.matrix import ExpressionMatrix
from training.data.synthetic import make_synthetic
from training.nn.config import TrainConfig


@pytest.fixture(scope="session")
def counts() -> ExpressionMatrix:
    """240 samples × 60 genes of NB counts, 3 well-separated labels, 2 batches."""
    return make_synthetic(240, 60, n_classes=3, separation=2.0, seed=7)


@pytest.fixture
def quick() -> TrainConfig:
    """A few epochs: enough to exercise the loop, fast on 2 cores."""
    return TrainConfig(epochs=8, batch_size=32, lr=3e-3, val_fraction=0.2, patience=3, seed=0)
