"""Seeded synthetic counts: negative binomial from latent programs, with labels and batches."""

from __future__ import annotations

import numpy as np
import pandas as pd

from contract.matrix import ExpressionMatrix


def make_synthetic(
    n_samples: int = 300,
    n_genes: int = 200,
    *,
    n_classes: int = 3,
    n_programs: int = 6,
    n_batches: int = 2,
    separation: float = 1.5,
    batch_effect: float = 0.3,
    mean_library_size: float = 5_000.0,
    dispersion: float = 5.0,
    seed: int = 0,
) -> ExpressionMatrix:
    """Generate a counts matrix whose classes differ through shared gene programs.

    Each gene program is a sparse positive loading over genes; each class has its own mean
    activation of the programs, each sample draws activations around its class mean, and each
    batch shifts every gene's log mean a little. Counts are negative binomial (gamma-Poisson)
    around ``library_size * softmax(log means)``.

    Parameters
    ----------
    n_samples, n_genes:
        Matrix shape.
    n_classes:
        Number of labels, written to ``obs["label"]`` as ``"type_0"``, ``"type_1"``, ...
    n_programs:
        Number of latent gene programs.
    n_batches:
        Number of batches, written to ``obs["batch"]`` as ``"batch_0"``, ...
    separation:
        Spread of the class means in program space; larger is easier to classify.
    batch_effect:
        Standard deviation of the per-batch, per-gene shift of the log mean.
    mean_library_size:
        Mean total count per sample (log-normal around it).
    dispersion:
        Negative-binomial shape; smaller is noisier (variance = mu + mu**2 / dispersion).
    seed:
        Seeds every draw; the same arguments give the same matrix.
    """
    if min(n_samples, n_genes, n_classes, n_programs, n_batches) < 1:
        raise ValueError("sizes and counts must be at least 1")
    rng = np.random.default_rng(seed)
    # bounded loadings keep any one gene from swallowing the library
    loadings = rng.uniform(0.5, 1.5, size=(n_programs, n_genes)) * (
        rng.random((n_programs, n_genes)) < 0.2
    )
    class_means = rng.normal(0.0, separation, size=(n_classes, n_programs))
    batch_shift = rng.normal(0.0, batch_effect, size=(n_batches, n_genes))
    baseline = rng.normal(0.0, 1.0, size=n_genes)

    labels = rng.integers(0, n_classes, size=n_samples)
    batches = rng.integers(0, n_batches, size=n_samples)
    activations = class_means[labels] + rng.normal(0.0, 0.5, size=(n_samples, n_programs))
    log_mean = baseline + activations @ loadings + batch_shift[batches]
    proportions = np.exp(log_mean - log_mean.max(axis=1, keepdims=True))
    proportions /= proportions.sum(axis=1, keepdims=True)
    library = mean_library_size * rng.lognormal(0.0, 0.3, size=(n_samples, 1))
    mu = library * proportions
    counts = rng.poisson(rng.gamma(dispersion, mu / dispersion))

    sample_ids = [f"cell_{i:05d}" for i in range(n_samples)]
    obs = pd.DataFrame(
        {
            "label": [f"type_{k}" for k in labels],
            "batch": [f"batch_{b}" for b in batches],
        },
        index=pd.Index(sample_ids),
    )
    return ExpressionMatrix(
        X=counts.astype(np.float32),
        sample_ids=sample_ids,
        gene_ids=[f"gene_{j:05d}" for j in range(n_genes)],
        obs=obs,
    )
