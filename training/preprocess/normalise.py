"""Normalisation maths in numpy (float64 inside): CPM, TPM, FPKM, DESeq2 size factors and VST.

The DESeq2 pieces follow Love, Huber & Anders (2014) and agree with pydeseq2 (tests): size
factors are the median over genes of log(count) − mean log count across the training samples,
using only genes expressed in every training sample; the VST is the closed form for a dispersion
trend α(μ) = a0 + a1/μ (parametric) or a constant α (mean).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
MIN_DISP = 1e-8


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


def log2p1(values: npt.NDArray[Any]) -> F64:
    """log2(1 + x)."""
    return np.log2(1.0 + np.asarray(values, dtype=np.float64))


def size_factor_reference(counts: npt.NDArray[Any]) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Per-gene mean log count over the samples, and the genes usable as reference (no zeros)."""
    with np.errstate(divide="ignore"):
        logmeans = np.log(np.asarray(counts, dtype=np.float64)).mean(axis=0)
    usable = np.isfinite(logmeans)
    if not usable.any():
        raise ValueError(
            "every gene has a zero count in some sample: median-of-ratios size factors need "
            "at least one gene expressed in all samples"
        )
    return logmeans, usable


def size_factors(counts: npt.NDArray[Any], logmeans: F64, usable: npt.NDArray[np.bool_]) -> F64:
    """Median-of-ratios size factor of each sample against a stored reference (per sample)."""
    with np.errstate(divide="ignore"):
        log_counts = np.log(np.asarray(counts, dtype=np.float64)[:, usable])
    return np.asarray(np.exp(np.median(log_counts - logmeans[usable], axis=1)), dtype=np.float64)


def moments_dispersions(normed: F64, factors: F64) -> F64:
    """Per-gene method-of-moments dispersion (var − μ·mean(1/s)) / μ², clipped to [1e-8, 10]."""
    mean = normed.mean(axis=0)
    var = normed.var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        disp = (var - mean * np.mean(1.0 / factors)) / mean**2
    return np.asarray(np.clip(np.nan_to_num(disp, nan=MIN_DISP), MIN_DISP, 10.0))


def fit_dispersion_trend(mean: F64, disp: F64, *, max_iter: int = 20) -> tuple[float, float]:
    """Fit α(μ) = a0 + a1/μ by a gamma GLM with identity link, dropping outlying genes as DESeq2.

    Parameters
    ----------
    mean:
        Per-gene mean of the normalised counts.
    disp:
        Per-gene dispersion estimates.
    max_iter:
        Refits after removing genes whose dispersion is over 15× or under 1e-4× the trend.
    """
    use = (disp >= 100 * MIN_DISP) & (mean > 0)
    if use.sum() < 3:
        raise ValueError("too few genes with a dispersion estimate to fit a dispersion trend")
    coeffs = np.array([0.1, 1.0])
    for _ in range(max_iter):
        design = np.column_stack([np.ones(use.sum()), 1.0 / mean[use]])
        y = disp[use]
        for _ in range(50):  # IRLS: gamma variance ∝ fitted², identity link
            fitted = np.maximum(design @ coeffs, 1e-8)
            root_w = 1.0 / fitted  # √ of the gamma IRLS weight 1/fitted²
            new = np.linalg.lstsq(design * root_w[:, None], y * root_w, rcond=None)[0]
            converged = np.allclose(new, coeffs, rtol=1e-10, atol=1e-14)
            coeffs = new
            if converged:
                break
        if (coeffs <= 0).any():
            raise ValueError(f"the dispersion trend fit gave non-positive coefficients {coeffs}")
        ratio = disp / (coeffs[0] + coeffs[1] / np.maximum(mean, 1e-12))
        keep = (disp >= 100 * MIN_DISP) & (mean > 0) & (ratio > 1e-4) & (ratio < 15)
        if np.array_equal(keep, use):
            break
        use = keep
    return float(coeffs[0]), float(coeffs[1])


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
