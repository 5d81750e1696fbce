"""DESeq2's dispersion fits for the VST, computed as pydeseq2 0.5.4 does (numpy and scipy only).

`vst(use_design=False)` fits an intercept-only model: the gene-wise dispersion is the Cox–Reid
adjusted NB maximum likelihood estimate given μ = s·mean(normalised counts), found by L-BFGS-B on
log α from the smaller of the rough and moments estimates (a grid search where L-BFGS-B fails);
the trend a0 + a1/μ is a gamma-family GLM refitted after dropping genes whose dispersion is under
1e-4× or at least 15× the trend. The same optimiser, start and bounds as pydeseq2 are used on
purpose: L-BFGS-B stops within its own tolerance of the optimum, so only the same path gives
the same numbers. On near-Poisson genes (α ≲ 1e-5, a flat likelihood) a 1-ulp change in μ
moves that stop by up to 1e-3 relative, so the arithmetic also follows pydeseq2's: least-squares
means, and the Cox–Reid term as log det(XᵀWX) of the intercept design. Given the same counts
the dispersions then agree bit for bit or nearly (tests: 1e-6). Where pydeseq2 falls back
silently to the mean dispersion when the trend fit fails, `fit_parametric_trend` raises and the
caller chooses (`fit_type="mean"`, or a trend given as a0/a1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.linalg import lstsq
from scipy.optimize import minimize
from scipy.special import digamma, gammaln

F64 = npt.NDArray[np.float64]
MIN_DISP = 1e-8  # pydeseq2's min_disp; its max_disp is max(10, number of samples)
MIN_MU = 0.5  # lower bound on fitted means (pydeseq2's min_mu)


class TrendFitError(ValueError):
    """The parametric dispersion trend could not be fitted (DESeq2 would use the mean)."""


def start_dispersions(normed: F64, factors: F64, fitted: F64) -> F64:
    """pydeseq2's initial estimate: the smaller of the rough and the moments dispersions."""
    n = normed.shape[0]
    mean = normed.mean(axis=0)
    fitted = np.maximum(fitted, 1.0)
    rough = (((normed - fitted) ** 2 - fitted) / ((n - 1) * fitted**2)).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        moments = (normed.var(axis=0, ddof=1) - np.mean(1.0 / factors) * mean) / mean**2
    return np.asarray(np.minimum(np.maximum(rough, 0.0), np.nan_to_num(moments)))


def genewise_dispersions(
    counts: npt.NDArray[Any], factors: npt.NDArray[Any], *, min_disp: float = MIN_DISP
) -> F64:
    """Cox–Reid adjusted NB dispersion MLE of each gene (intercept only); NaN for all-zero genes.

    Parameters
    ----------
    counts:
        Raw counts, samples × genes.
    factors:
        Each sample's size factor.
    min_disp:
        Lower bound on the dispersion; the upper bound is max(10, number of samples).
    """
    Y = np.asarray(counts, dtype=np.float64)
    s = np.asarray(factors, dtype=np.float64)
    n = Y.shape[0]
    if n < 2:
        raise ValueError("dispersions need at least two samples")
    max_disp = max(10.0, float(n))
    nonzero = ~(Y == 0).all(axis=0)
    normed = Y[:, nonzero] / s[:, None]
    # the intercept-only design, kept as a matrix: the least-squares fit and the Cox–Reid term
    # are computed in their general form, which is also how pydeseq2 rounds them
    design = np.ones((n, 1))
    fitted = design @ lstsq(design, normed)[0]  # the per-gene mean
    start = np.clip(start_dispersions(normed, s, fitted), min_disp, max_disp)
    fits = []
    for j, g in enumerate(np.flatnonzero(nonzero)):
        # μ from a one-gene solve, as pydeseq2: the batched solve above differs by an ulp on
        # some genes, and near-Poisson genes' L-BFGS-B stop is that sensitive (module doc)
        mu = np.maximum(s * (design @ lstsq(design, normed[:, j])[0]), MIN_MU)
        fits.append(_dispersion_mle(Y[:, g], mu, design, start[j], (min_disp, max_disp)))
    out = np.full(Y.shape[1], np.nan)
    out[nonzero] = np.clip(fits, min_disp, max_disp)
    return out


def fit_parametric_trend(mean: F64, disp: F64) -> tuple[float, float]:
    """Fit α(μ) = a0 + a1/μ as pydeseq2: gamma GLM, refitted without genes far from the curve.

    Parameters
    ----------
    mean:
        Per-gene mean of the normalised counts.
    disp:
        Per-gene dispersion estimates (NaN, or a zero mean, leaves a gene out).

    Raises
    ------
    TrendFitError
        When the GLM does not converge or a coefficient falls to 1e-10 or below.
    """
    with np.errstate(divide="ignore"):
        covariate = 1.0 / np.asarray(mean, dtype=np.float64)
    target = np.asarray(disp, dtype=np.float64)
    use = np.isfinite(covariate) & np.isfinite(target)
    covariate, target = covariate[use], target[use]
    old, coeffs = np.array([0.1, 0.1]), np.array([1.0, 1.0])
    while (coeffs > 1e-10).all() and (np.log(np.abs(coeffs / old)) ** 2).sum() >= 1e-6:
        if covariate.size < 2:  # none to begin with, or all dropped as too far from the curve
            raise TrendFitError("too few genes with a dispersion estimate to fit a trend")
        old = coeffs
        coeffs, converged = _gamma_glm(covariate, target)
        if not converged or (coeffs <= 1e-10).any():
            raise TrendFitError(
                f"the dispersion trend fit did not converge or gave non-positive "
                f"coefficients {coeffs}"
            )
        ratio = target / (coeffs[0] + coeffs[1] * covariate)
        keep = (ratio >= 1e-4) & (ratio < 15)
        covariate, target = covariate[keep], target[keep]
    return float(coeffs[0]), float(coeffs[1])


def mean_dispersion(disp: F64, *, min_disp: float = MIN_DISP) -> float:
    """pydeseq2's "mean" VST fit: the 0.1 %-trimmed mean of the dispersions over 10·min_disp."""
    usable = np.asarray(disp, dtype=np.float64)
    usable = usable[usable > 10 * min_disp]
    if usable.size == 0:
        raise ValueError("no gene has a dispersion estimate above 10·min_disp")
    cut = int(0.001 * usable.size)  # scipy.stats.trim_mean's cut, without importing scipy.stats
    return float(np.sort(usable)[cut : usable.size - cut].mean())


def _nb_nll(y: F64, mu: F64, alpha: float) -> float:
    inv = 1.0 / alpha
    logbinom = gammaln(y + inv) - gammaln(y + 1) - gammaln(inv)
    terms = -logbinom + (y + inv) * np.log(inv + mu) - y * np.log(mu)
    return float(y.size * inv * np.log(alpha) + terms.sum())


def _nb_nll_grad(y: F64, mu: F64, alpha: float) -> float:  # d/dα of _nb_nll
    inv = 1.0 / alpha
    parts = digamma(inv) - digamma(y + inv) + np.log(1 + mu * alpha) + (y - mu) / (mu + inv)
    return float(-(inv**2) * parts.sum())


def _cr_nll(y: F64, mu: F64, design: F64, log_alpha: float) -> float:
    # Cox–Reid adjusted: + ½ log det(XᵀWX), W = diag(μ / (1 + μα))
    alpha = np.exp(log_alpha)
    w = mu / (1 + mu * alpha)
    return _nb_nll(y, mu, alpha) + 0.5 * float(np.linalg.slogdet((design.T * w) @ design)[1])


def _cr_nll_grad(y: F64, mu: F64, design: F64, log_alpha: float) -> float:  # d/d(log α)
    # d/dα ½ log det(XᵀWX) = ½ tr((XᵀWX)⁻¹ XᵀW'X), W' = −W²; × α for the log scale
    alpha = np.exp(log_alpha)
    w = mu / (1 + mu * alpha)
    info = np.linalg.inv((design.T * w) @ design)
    reg = 0.5 * float((info * ((design.T * -(w**2)) @ design)).sum()) * alpha
    return float(alpha * _nb_nll_grad(y, mu, alpha) + reg)


def _dispersion_mle(
    y: F64, mu: F64, design: F64, start: float, disp_range: tuple[float, float]
) -> float:
    bounds = (float(np.log(disp_range[0])), float(np.log(disp_range[1])))
    res = minimize(
        lambda x: _cr_nll(y, mu, design, x[0]),
        x0=np.asarray([np.log(start)]),
        jac=lambda x: np.asarray([_cr_nll_grad(y, mu, design, x[0])]),
        method="L-BFGS-B",
        bounds=[bounds],
    )
    if res.success:
        return float(np.exp(res.x[0]))
    # pydeseq2's fallback: a 100-point grid on log α, then a finer one around the best point
    grid = np.linspace(*bounds, 100)
    best = grid[np.argmin([_cr_nll(y, mu, design, a) for a in grid])]
    delta = grid[1] - grid[0]
    fine = np.linspace(best - delta, best + delta, 100)
    return float(np.exp(fine[np.argmin([_cr_nll(y, mu, design, a) for a in fine])]))


def _gamma_glm(covariate: F64, target: F64) -> tuple[F64, bool]:
    # gamma deviance (up to constants) of the identity-link model a0 + a1·x, from (1, 1)
    design = np.column_stack([np.ones_like(covariate), covariate])

    def loss(coeffs: F64) -> float:
        mu = design @ coeffs
        return float(np.mean(target / mu + np.log(mu)))

    def grad(coeffs: F64) -> F64:
        mu = design @ coeffs
        return np.asarray(-np.mean(((target / mu - 1)[:, None] * design) / mu[:, None], axis=0))

    with np.errstate(divide="raise", invalid="raise", over="raise"):
        try:
            res = minimize(
                loss, x0=np.array([1.0, 1.0]), jac=grad, method="L-BFGS-B",
                bounds=[(1e-12, np.inf)] * 2,
            )  # fmt: skip
        except FloatingPointError:  # the coefficients fell to zero
            return np.array([np.nan, np.nan]), False
    return np.asarray(res.x, dtype=np.float64), bool(res.success)
