"""ComBat batch correction (Johnson, Li & Rabinovic 2007), written from the paper, numpy only.

Model per gene g, sample j of batch i: Y_ijg = α_g + X_j β_g + γ_ig + δ_ig ε_ijg. The data are
standardised with the pooled variance, the batch effects (γ, δ²) get normal / inverse-gamma
priors whose hyper-parameters come from all genes of the batch (empirical Bayes), and the
posterior estimates (parametric: iterated conditional means; non-parametric: a likelihood-
weighted average over the other genes) are removed. A reference batch is left unchanged and
everything else is brought to it.

A NEW batch at serving time: the fitted α, β and pooled variance are stored (`ComBatModel`),
with the priors' spreads learnt in training (τ² of γ and the inverse-gamma shape of δ²,
averaged over the training batches). The new batch's γ̂, δ̂² come from its own samples, the
priors are centred on its own gene-averages (as ComBat does per batch) but keep the stored
spreads, so a batch of 2–3 samples is shrunk as strongly as the training batches taught. One
sample carries no variance information: its location alone is adjusted (δ² = 1, and the
shrinkage of γ̂ uses a unit variance) and the returned note says so.
Genes constant within some training batch have no usable variance and pass through unchanged.

Every variance here (δ̂², and the spread of γ̂ and δ̂² behind the priors) is the population
(1/n) variance, as in inmoose's pycombat_norm, against which the tests check this module;
sva's R ComBat uses 1/(n−1) for δ̂², a difference of a factor n/(n−1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

F64 = npt.NDArray[np.float64]
CONVERGENCE = 1e-4


@dataclass(frozen=True, eq=False)
class Priors:
    """Hyper-parameters: γ ~ N(gamma_bar, t2), δ² ~ InvGamma(a, b)."""

    gamma_bar: float
    t2: float
    a: float
    b: float

    @classmethod
    def from_estimates(cls, gamma_hat: F64, delta_hat: F64) -> Priors:
        """Method-of-moments priors from per-gene estimates (any shape)."""
        m, s2 = float(np.mean(delta_hat)), float(np.var(delta_hat))
        return cls(
            gamma_bar=float(np.mean(gamma_hat)),
            t2=float(np.var(gamma_hat)),
            a=(2 * s2 + m**2) / s2,
            b=(m * s2 + m**3) / s2,
        )


@dataclass(frozen=True, eq=False)
class ComBatModel:
    """Everything needed to correct training batches again and to bring a new batch in."""

    batches: list[str]
    reference: str | None
    parametric: bool
    covariates: dict[str, list[str]]  # obs column → its levels (the first is the baseline)
    alpha: F64  # (genes,) grand mean, or the reference batch's mean
    beta: F64  # (n covariate dummies, genes)
    var_pooled: F64  # (genes,)
    gamma_star: F64  # (batches, genes)
    delta_star: F64  # (batches, genes)
    usable: npt.NDArray[np.bool_]  # genes with variance in every batch
    prior_t2: float = 1.0  # spread of γ across genes, averaged over the training batches
    prior_a: float = 3.0  # inverse-gamma shape of δ², likewise

    def stand_mean(self, obs: pd.DataFrame | None, n: int) -> F64:
        """α plus the covariate part of the fit for each sample (samples × genes)."""
        return self.alpha + covariate_design(obs, self.covariates, n) @ self.beta

    def transform(self, Y: npt.NDArray[Any], batch: list[str], obs: pd.DataFrame | None) -> F64:
        """Correct samples of training batches with the stored batch effects."""
        unknown = sorted(set(batch) - set(self.batches))
        if unknown:
            raise ValueError(f"batches {unknown} were not in training; use adjust_new_batch")
        X = np.asarray(Y, dtype=np.float64)
        mean, sd = self.stand_mean(obs, X.shape[0]), np.sqrt(self.var_pooled)
        out = X.copy()
        rows = np.array([self.batches.index(b) for b in batch])
        g = self.usable
        Z = (X[:, g] - mean[:, g]) / sd[g]
        Z = (Z - self.gamma_star[rows][:, g]) / np.sqrt(self.delta_star[rows][:, g])
        out[:, g] = Z * sd[g] + mean[:, g]
        if self.reference is not None:  # exactly as given, not merely up to rounding
            keep = np.array([b == self.reference for b in batch])
            out[keep] = X[keep]
        return out

    def adjust_new_batch(
        self, Y: npt.NDArray[Any], obs: pd.DataFrame | None = None
    ) -> tuple[F64, str]:
        """Bring one batch unseen in training to the training reference; returns a note on how."""
        X = np.asarray(Y, dtype=np.float64)
        n = X.shape[0]
        mean, sd = self.stand_mean(obs, n), np.sqrt(self.var_pooled)
        g = self.usable
        Z = (X[:, g] - mean[:, g]) / sd[g]
        gamma_hat = Z.mean(axis=0)
        gamma_bar = float(gamma_hat.mean())
        if n == 1:
            gamma = (self.prior_t2 * gamma_hat + gamma_bar) / (self.prior_t2 + 1.0)
            delta = np.ones_like(gamma)
            note = "single sample: location adjusted with the stored priors, scale left as is"
        else:
            # unbiased δ̂² here: with 2–3 samples the 1/n variance would halve the scale
            delta_hat = Z.var(axis=0, ddof=1)
            m = float(delta_hat.mean())
            priors = Priors(gamma_bar, self.prior_t2, self.prior_a, m * (self.prior_a - 1))
            gamma, delta = posterior_parametric(Z, gamma_hat, delta_hat, priors)
            note = f"new batch of {n} samples: γ, δ² shrunk with the stored prior spreads"
        out = X.copy()
        out[:, g] = (Z - gamma) / np.sqrt(delta) * sd[g] + mean[:, g]
        return out, note


def fit_combat(
    Y: npt.NDArray[Any],
    batch: list[str],
    *,
    obs: pd.DataFrame | None = None,
    covariates: list[str] | tuple[str, ...] = (),
    reference: str | None = None,
    parametric: bool = True,
) -> tuple[ComBatModel, F64]:
    """Fit ComBat on samples × genes values; returns the model and the corrected values.

    Parameters
    ----------
    Y:
        Samples × genes on a roughly normal scale (log, VST), no missing values.
    batch:
        Batch label of each sample; every batch needs at least 2 samples.
    obs:
        Per-sample metadata holding the `covariates` columns, in the rows' order.
    covariates:
        Categorical obs columns whose signal must be protected (kept in the corrected data).
    reference:
        A batch left unchanged, the others brought to it; ``None``: the grand mean.
    parametric:
        Parametric priors (iterated) or the non-parametric likelihood-weighted estimate.
    """
    X = np.asarray(Y, dtype=np.float64)
    n = X.shape[0]
    levels = list(dict.fromkeys(batch))
    if len(batch) != n:
        raise ValueError(f"{len(batch)} batch labels for {n} samples")
    sizes = {b: batch.count(b) for b in levels}
    small = [b for b, k in sizes.items() if k < 2]
    if len(levels) < 2 or small:
        raise ValueError(f"ComBat needs ≥ 2 batches of ≥ 2 samples; batch sizes {sizes}")
    if reference is not None and reference not in levels:
        raise ValueError(f"reference batch {reference!r} is not among {levels}")
    if not np.isfinite(X).all():
        raise ValueError("ComBat needs complete data: run QC (which fills or drops) first")
    onehot = np.array([[b == level for level in levels] for b in batch], dtype=np.float64)
    cov_levels = covariate_levels(obs, covariates)
    cov = covariate_design(obs, cov_levels, n)
    design = np.hstack([onehot, cov])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise ValueError(f"covariates {list(covariates)} are confounded with the batches")
    coef = np.linalg.lstsq(design, X, rcond=None)[0]
    B = len(levels)
    ref = levels.index(reference) if reference is not None else None
    weights = onehot.sum(axis=0) / n
    alpha = coef[ref] if ref is not None else weights @ coef[:B]
    resid = X - design @ coef
    rows = onehot[:, ref].astype(bool) if ref is not None else np.ones(n, dtype=bool)
    var_pooled = (resid[rows] ** 2).mean(axis=0)
    usable = np.all([X[onehot[:, i] > 0].var(axis=0) > 0 for i in range(B)], axis=0)
    mean = alpha + cov @ coef[B:]
    Z = (X[:, usable] - mean[:, usable]) / np.sqrt(var_pooled[usable])
    gamma_hat = np.array([Z[onehot[:, i] > 0].mean(axis=0) for i in range(B)])
    delta_hat = np.array([Z[onehot[:, i] > 0].var(axis=0) for i in range(B)])
    gamma_star, delta_star = np.zeros((B, X.shape[1])), np.ones((B, X.shape[1]))
    spreads = [Priors.from_estimates(gamma_hat[i], delta_hat[i]) for i in range(B)]
    for i in range(B):
        if i == ref:
            continue
        Zi = Z[onehot[:, i] > 0]
        if parametric:
            g, d = posterior_parametric(Zi, gamma_hat[i], delta_hat[i], spreads[i])
        else:
            g, d = posterior_nonparametric(Zi, gamma_hat[i], delta_hat[i])
        gamma_star[i, usable], delta_star[i, usable] = g, d
    model = ComBatModel(
        batches=levels,
        reference=reference,
        parametric=parametric,
        covariates=cov_levels,
        alpha=alpha,
        beta=np.asarray(coef[B:], dtype=np.float64),
        var_pooled=var_pooled,
        gamma_star=gamma_star,
        delta_star=delta_star,
        usable=usable,
        # the reference batch defines the pooled variance (its δ̂² ≡ 1): it says nothing of spread
        prior_t2=float(np.mean([p.t2 for i, p in enumerate(spreads) if i != ref])),
        prior_a=float(np.mean([p.a for i, p in enumerate(spreads) if i != ref])),
    )
    return model, model.transform(X, batch, obs)


def posterior_parametric(Z: F64, gamma_hat: F64, delta_hat: F64, p: Priors) -> tuple[F64, F64]:
    """Iterate the conditional posterior means of γ and δ² until they change < 1e-4."""
    n = Z.shape[0]
    gamma, delta = gamma_hat, delta_hat
    for _ in range(1000):
        new_gamma = (n * p.t2 * gamma_hat + delta * p.gamma_bar) / (n * p.t2 + delta)
        new_delta = (0.5 * ((Z - new_gamma) ** 2).sum(axis=0) + p.b) / (n / 2 + p.a - 1)
        change = max(
            # relative change over the signed old value (as sva and pycombat_norm measure it)
            float(np.max(np.abs(new_gamma - gamma) / gamma)),
            float(np.max(np.abs(new_delta - delta) / delta)),
        )
        gamma, delta = new_gamma, new_delta
        if change < CONVERGENCE:
            break
    return gamma, delta


def posterior_nonparametric(Z: F64, gamma_hat: F64, delta_hat: F64) -> tuple[F64, F64]:
    """Average the other genes' (γ̂, δ̂²), weighted by the likelihood of this gene's values."""
    n, G = Z.shape
    gamma, delta = np.empty(G), np.empty(G)
    # Σ_k (z_k − γ_j)² for all genes i (rows) against all candidates j (columns), in blocks
    sq = (Z**2).sum(axis=0)
    s = Z.sum(axis=0)
    for start in range(0, G, 512):
        stop = min(start + 512, G)
        sum2 = sq[start:stop, None] - 2 * np.outer(s[start:stop], gamma_hat) + n * gamma_hat**2
        loglik = -0.5 * n * np.log(2 * np.pi * delta_hat) - sum2 / (2 * delta_hat)
        np.fill_diagonal(loglik[:, start:stop], -np.inf)  # a gene is not its own evidence
        w = np.exp(loglik - loglik.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        gamma[start:stop], delta[start:stop] = w @ gamma_hat, w @ delta_hat
    return gamma, delta


def covariate_levels(obs: pd.DataFrame | None, columns: Any) -> dict[str, list[str]]:
    """Sorted levels of each categorical covariate column."""
    if not columns:
        return {}
    if obs is None:
        raise ValueError(f"covariates {list(columns)} need per-sample metadata (obs)")
    missing = [c for c in columns if c not in obs.columns]
    if missing:
        raise ValueError(f"covariate columns {missing} are not in the metadata")
    return {c: sorted(obs[c].astype(str).unique().tolist()) for c in columns}


def covariate_design(obs: pd.DataFrame | None, levels: dict[str, list[str]], n: int) -> F64:
    """Dummy columns (baseline = first level dropped) for the stored covariate levels."""
    if not levels:
        return np.zeros((n, 0))
    if obs is None:
        raise ValueError(f"covariates {list(levels)} need per-sample metadata (obs)")
    blocks = []
    for column, values in levels.items():
        if column not in obs.columns:
            raise ValueError(f"covariate column {column!r} is missing from the metadata")
        seen = obs[column].astype(str).to_numpy()
        unknown = sorted(set(seen) - set(values))
        if unknown:
            raise ValueError(f"covariate {column!r} has levels {unknown} unseen in training")
        blocks.append(np.column_stack([seen == v for v in values[1:]]).astype(np.float64))
    return np.hstack(blocks) if blocks else np.zeros((n, 0))
