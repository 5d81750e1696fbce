"""The benchmark model: 20,000 genes → 1024 → 256 → 10 classes, random weights, exported with the
project's own verified export path (so the service loads exactly what training publishes)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from contract.card import InputScale, TrainingData
from contract.preprocess.pipeline import PreprocessPipeline

if TYPE_CHECKING:  # torch is imported by build/export only: the parse benchmarks need none
    from training.nn.encoders import DenseAutoencoder
    from training.nn.heads import ClassifierHead

NAME = "bench-classifier"
N_GENES, HIDDEN, LATENT, N_CLASSES = 20_000, 1024, 256, 10
GENES = [f"GENE{i:05d}" for i in range(N_GENES)]
LABELS = [f"class{i}" for i in range(N_CLASSES)]


def build(seed: int = 0, n_genes: int = N_GENES) -> tuple[DenseAutoencoder, ClassifierHead]:
    """The same weights for every caller (the textbook server rebuilds them from the seed)."""
    import torch

    from training.nn.encoders import AutoencoderConfig, DenseAutoencoder
    from training.nn.heads import ClassifierHead, ClassifierHeadConfig

    torch.manual_seed(seed)
    autoencoder = DenseAutoencoder(
        AutoencoderConfig(n_genes=n_genes, hidden=(HIDDEN,), latent=LATENT, dropout=0.0)
    )
    head = ClassifierHead(ClassifierHeadConfig(n_in=LATENT, n_classes=N_CLASSES))
    return autoencoder.eval(), head.eval()


def profiles(n: int, seed: int = 1, n_genes: int = N_GENES) -> np.ndarray:
    """Log-scale-looking random profiles, float32, panel order."""
    rng = np.random.default_rng(seed)
    return np.log1p(rng.gamma(0.3, 4.0, size=(n, n_genes))).astype(np.float32)


def name_of(n_genes: int) -> str:
    """The benchmark model with an `n_genes` panel (the first n of GENES)."""
    return NAME if n_genes == N_GENES else f"{NAME}-{n_genes}"


def export(models_dir: Path, n_genes: int = N_GENES) -> Path:
    """Publish models_dir/<name_of(n_genes)>/1 and return its folder."""
    from training.export.card import CardInfo
    from training.export.heads import export_classifier

    autoencoder, head = build(n_genes=n_genes)
    pipeline = PreprocessPipeline(
        input_scale=InputScale.log,
        gene_ids=GENES[:n_genes],
        steps=[],
        input_mean=np.zeros(n_genes, np.float32),
    )
    info = CardInfo(
        description="benchmark model, random weights (throughput only)",
        training_data=TrainingData(
            name="random", fingerprint="0" * 64, n_samples=0, n_genes=n_genes
        ),
    )
    return export_classifier(
        autoencoder,
        head,
        pipeline,
        LABELS,
        name=name_of(n_genes),
        models_dir=models_dir,
        info=info,
        reference=profiles(8, n_genes=n_genes),
        parent=None,
    )
