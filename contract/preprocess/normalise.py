"""Normalisation maths in numpy (float64 inside): CPM, TPM, FPKM, DESeq2's size-factor reference
and VST.

The DESeq2 pieces follow Love, Huber & Anders (2014) and agree with pydeseq2 (tests): size
factors (applied per sample by `steps.MedianOfRatios`) are the median over genes of log(count) −
mean log count across the training samples, using only genes expressed in every training sample,
whose reference `size_factor_reference` fits; the VST trend is fitted as pydeseq2 does
(`deseq`: gene-wise Cox–Reid dispersion MLEs, then a gamma GLM), and the VST is the closed form
for a dispersion trend α(μ) = a0 + a1/μ (parametric) or a constant α (mean).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def cpm(counts: npt.NDArray[Any]) -> F64:
    """Counts per million: each sample scaled to a total of 1e6."""
    X = np.asarray(counts, dtype=np.float64)
    out: F64 = X / np.maximum(X.sum(axis=1, keepdims=True), 1e-12) * 1e6
    return out


def tpm(counts: npt.NDArray[Any], gene_lengths: npt.NDArray[Any]) -> F64:
    """Transcripts per million: counts per base, then each sample scaled to 1e6."""
    rate = np.asarray(counts, dtype=np.float64) / _lengths(gene_lengths, counts)
    out: F64 = rate / np.maximum(rate.sum(axis=1, keepdims=True), 1e-12) * 1e6
    return out


def fpkm(counts: npt.NDArray[Any], gene_lengths: npt.NDArray[Any]) -> F64:
    """Fragments per kilobase per million mapped: CPM divided by the gene length in kb."""
    return cpm(counts) / (_lengths(gene_lengths, counts) / 1e3)


def size_factor_reference(counts: npt.NDArray[Any]) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Per-gene mean log count over the samples, and the genes usable as reference (no zeros)."""
    # column-major: each gene's samples summed contiguously (pairwise), as pydeseq2 sums them;
    # an ulp here moves near-Poisson genes' dispersion fits downstream (see deseq)
    with np.errstate(divide="ignore"):
        logmeans = np.log(np.asfortranarray(counts, dtype=np.float64)).mean(axis=0)
    usable = np.isfinite(logmeans)
    if not usable.any():
        raise ValueError(
            "every gene has a zero count in some sample: median-of-ratios size factors need "
            "at least one gene expressed in all samples"
        )
    return logmeans, usable


def fit_vst_trend(
    counts: npt.NDArray[Any], factors: npt.NDArray[Any], fit_type: str = "parametric"
) -> tuple[float, float]:
    """DESeq2's VST trend from raw counts and size factors: (a0, a1), or (mean dispersion, 0).

    Gene-wise Cox–Reid dispersion MLEs (intercept only, as ``vst(use_design=False)``), then the
    parametric trend a0 + a1/μ or, with ``fit_type="mean"``, their trimmed mean (see `deseq`).
    Raises `deseq.TrendFitError` where the parametric fit fails (pydeseq2 would fall back to the
    mean silently): the caller chooses.
    """
    if fit_type not in ("parametric", "mean"):
        raise ValueError(f"fit_type must be 'parametric' or 'mean', not {fit_type!r}")
    from contract.preprocess import deseq  # scipy.optimize only when fitting: the service
    # imports this module for the closed forms

    disp = deseq.genewise_dispersions(counts, factors)
    if fit_type == "mean":
        return deseq.mean_dispersion(disp), 0.0
    normed = np.asfortranarray(counts, dtype=np.float64) / np.asarray(factors)[:, None]
    return fit_dispersion_trend(normed.mean(axis=0), disp)  # summed as the log means above


def fit_dispersion_trend(mean: F64, disp: F64) -> tuple[float, float]:
    """Fit α(μ) = a0 + a1/μ to per-gene dispersions as DESeq2 (see `deseq.fit_parametric_trend`)."""
    from contract.preprocess import deseq

    return deseq.fit_parametric_trend(mean, disp)


def vst_parametric(normed: npt.NDArray[Any], a0: float, a1: float) -> F64:
    """DESeq2's VST for the trend α(μ) = a0 + a1/μ, on size-factor-normalised counts."""
    q = np.asarray(normed, dtype=np.float64)
    inner = 1.0 + a1 + 2.0 * a0 * q + 2.0 * np.sqrt(a0 * q * (1.0 + a1 + a0 * q))
    return np.asarray(np.log2(inner / (4.0 * a0)))


def vst_mean(normed: npt.NDArray[Any], dispersion: float) -> F64:
    """DESeq2's VST for one dispersion shared by every gene."""
    q = np.asarray(normed, dtype=np.float64)
    return np.asarray(
        (2.0 * np.arcsinh(np.sqrt(dispersion * q)) - np.log(dispersion) - np.log(4.0)) / np.log(2.0)
    )


def _lengths(gene_lengths: npt.NDArray[Any], counts: npt.NDArray[Any]) -> F64:
    lengths = np.asarray(gene_lengths, dtype=np.float64)
    if lengths.shape != (np.shape(counts)[1],):
        raise ValueError(f"{lengths.shape[0]} gene lengths for {np.shape(counts)[1]} genes")
    if not (lengths > 0).all():
        bad = np.flatnonzero(~(lengths > 0))
        raise ValueError(f"gene lengths must be positive; columns {bad[:10].tolist()} are not")
    return lengths
