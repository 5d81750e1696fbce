"""Simulated batch effects on real profiles: per-batch location, scale, library size and dropout.

The input is log1p-normalised expression L (samples × genes, L = log1p(normalised counts), e.g.
pbmc68k_reduced's ``.raw.X``). Samples are dealt into n batches, at random or within each level
of an obs column (so every batch holds every class in about the same proportion). Each batch b
then gets, in this order:

1. Location and scale per gene, on the log scale, for detected entries only (L > 0)::

       L' = max(0, m_bg + γ_bg + exp(τ_bg) · (L − m_bg))

   m_bg is gene g's mean over its detected entries in batch b. γ_bg = location_sd · strength · z
   and τ_bg = scale_sd · strength · z', where z = √w · (a_b · u_g) + √(1 − w) · ε_bg: u_g is the
   gene's unit-length loading on a few latent programmes, a_b ~ N(0, I) the batch's activation of
   them, ε_bg ~ N(0, 1) gene-specific noise and w = programme_share. Genes that share a
   programme move together, as under a protocol or chemistry that favours some transcripts;
   marginally z ~ N(0, 1). Entries pushed to 0 drop out of detection; undetected entries stay 0,
   since a count never measured has nothing to shift.
2. Library size: L'' = log1p(s_b · expm1(L')) with s_b = exp(library_sd · strength · N(0, 1)),
   one factor for the whole batch, as if it were sequenced deeper or normalised to another
   total. Per-sample renormalisation removes it; a model fed the log1p values as they are does not.
3. Dropout: every detected entry is zeroed with probability p_b · exp(−L''), where
   p_b ~ U(0, dropout · strength) (at most 0.9): a batch-level loss of detection that hits low
   counts hardest, a simpler form of ZIFA's exp(−λμ²) decay.

``strength`` scales every spread at once (the three standard deviations and the dropout bound):
0 returns the input unchanged, 2 doubles them all. A ``reference`` batch is dealt but left
untouched, so the others shift relative to it, as ComBat's reference batch. Limits: detection is
only ever lost, never gained, and the effect is the same for every cell type of a batch (no
batch × cell-type interaction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from contract.matrix import ExpressionMatrix

F64 = npt.NDArray[np.float64]

# log1p of a billion is ~20.7; a larger value cannot be log-normalised expression
MAX_LOG1P = 20.0


@dataclass(frozen=True)
class BatchEffect:
    """Spreads of the simulated batch effects at strength 1 (see the module docstring)."""

    location_sd: float = 0.7  # ~1 log2 unit: a typical gene differs ~2-fold between batches
    scale_sd: float = 0.2
    library_sd: float = 0.4
    dropout: float = 0.2
    n_programmes: int = 5
    programme_share: float = 0.7

    def __post_init__(self) -> None:
        spreads = (self.location_sd, self.scale_sd, self.library_sd, self.dropout)
        if min(spreads) < 0:
            raise ValueError(f"spreads must be non-negative, got {self}")
        if self.n_programmes < 1 or not 0.0 <= self.programme_share <= 1.0:
            raise ValueError("n_programmes must be ≥ 1 and programme_share within [0, 1]")


def simulate_batches(
    matrix: ExpressionMatrix,
    n_batches: int = 3,
    *,
    seed: int,
    strength: float = 1.0,
    stratify: str | None = None,
    reference: int | None = None,
    effect: BatchEffect | None = None,
    column: str = "batch",
) -> ExpressionMatrix:
    """Split samples into batches and give each its own simulated batch effect.

    Parameters
    ----------
    matrix:
        log1p-normalised expression (every value ≥ 0), samples × genes.
    n_batches:
        Number of batches, written to ``obs[column]`` as ``"batch_0"``, ``"batch_1"``, ...
    seed:
        Seeds the split and every draw; the same arguments give the same matrix.
    strength:
        Multiplies every spread of `effect`; 0 leaves the values as they are.
    stratify:
        An obs column (e.g. the cell type) whose levels are dealt evenly over the batches;
        ``None`` deals all samples at random.
    reference:
        Index of a batch left untouched, or ``None`` to shift every batch.
    effect:
        The spreads at strength 1; ``BatchEffect()`` when not given.
    column:
        The obs column to write the batch labels to; it must not exist yet.
    """
    effect = effect or BatchEffect()
    X = np.asarray(matrix.X, dtype=np.float64)
    if n_batches < 1 or n_batches > X.shape[0]:
        raise ValueError(f"n_batches must be within [1, {X.shape[0]}], got {n_batches}")
    if strength < 0:
        raise ValueError(f"strength must be ≥ 0, got {strength}")
    if reference is not None and not 0 <= reference < n_batches:
        raise ValueError(f"reference must be a batch index below {n_batches}, got {reference}")
    if column in matrix.obs.columns:
        raise ValueError(f"obs already has a {column!r} column; pass another column=")
    if not np.isfinite(X).all() or X.min(initial=0.0) < 0 or X.max(initial=0.0) > MAX_LOG1P:
        raise ValueError("expects finite log1p-normalised values in [0, 20]; log1p counts first")

    rng = np.random.default_rng(seed)
    groups = None if stratify is None else matrix.labels(stratify)
    batch = deal(X.shape[0], n_batches, groups, rng)
    loadings = rng.normal(size=(effect.n_programmes, X.shape[1]))
    loadings /= np.linalg.norm(loadings, axis=0, keepdims=True)
    out = X.copy()
    for b in range(n_batches):
        # every batch draws even when skipped, so a reference does not change the others' effects
        gamma, tau, library, dropout = _draw(effect, strength, loadings, rng)
        mask_rng = np.random.default_rng(rng.integers(2**63))
        rows = batch == b
        if b != reference and strength > 0:
            out[rows] = _apply(X[rows], gamma, tau, library, dropout, mask_rng)
    obs = matrix.obs.copy()
    obs[column] = [f"batch_{b}" for b in batch]
    return ExpressionMatrix(
        X=out.astype(np.float32), sample_ids=matrix.sample_ids, gene_ids=matrix.gene_ids, obs=obs
    )


def deal(
    n: int, n_batches: int, groups: list[str] | None, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Batch index per sample: a shuffled round-robin, within each group when groups are given."""
    batch = np.empty(n, dtype=np.int64)
    levels = np.zeros(n, dtype=np.int64) if groups is None else pd.factorize(np.asarray(groups))[0]
    start = 0
    for level in range(int(levels.max()) + 1):
        members = rng.permutation(np.flatnonzero(levels == level))
        # continuing the round-robin across groups keeps the batch sizes within one of each other
        batch[members] = (start + np.arange(members.size)) % n_batches
        start += members.size
    return batch


def _draw(
    effect: BatchEffect, strength: float, loadings: F64, rng: np.random.Generator
) -> tuple[F64, F64, float, float]:
    w = effect.programme_share

    def correlated() -> F64:
        activation = rng.normal(size=(1, loadings.shape[0]))
        noise = rng.normal(size=loadings.shape[1])
        z: F64 = np.sqrt(w) * (activation @ loadings)[0] + np.sqrt(1 - w) * noise
        return z

    gamma = effect.location_sd * strength * correlated()
    tau = effect.scale_sd * strength * correlated()
    library = float(np.exp(effect.library_sd * strength * rng.normal()))
    dropout = float(min(0.9, rng.uniform(0.0, effect.dropout * strength)))
    return gamma, tau, library, dropout


def _apply(
    L: F64, gamma: F64, tau: F64, library: float, dropout: float, rng: np.random.Generator
) -> F64:
    detected = L > 0
    counts = detected.sum(axis=0)
    mean = np.divide(L.sum(axis=0), counts, out=np.zeros(L.shape[1]), where=counts > 0)
    moved = np.maximum(0.0, mean + gamma + np.exp(tau) * (L - mean))
    shifted = np.log1p(library * np.expm1(np.where(detected, moved, 0.0)))
    lost = rng.random(L.shape) < dropout * np.exp(-shifted)
    return np.where(lost, 0.0, shifted)
