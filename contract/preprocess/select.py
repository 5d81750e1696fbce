"""Fitting the per-sample steps a recipe names: normalisers, gene selection, PCA (numpy only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.preprocess import normalise
from contract.preprocess.steps import (
    PCA,
    VST,
    Array,
    Log1p,
    Log2p1,
    MedianOfRatios,
    NormalizeTotal,
    PerLength,
    SelectGenes,
    Standardize,
    Step,
)
from contract.vocab import RECIPE_STEPS


def top_variance(X: Array, n: int) -> npt.NDArray[np.int64]:
    """Indices (in column order) of the `n` genes with the largest variance."""
    var = X.var(axis=0, dtype=np.float64)
    order = np.argsort(-var, kind="stable")[: min(n, X.shape[1])]
    return np.sort(order).astype(np.int64)


def highly_variable(X: Array, n: int, n_bins: int = 20) -> npt.NDArray[np.int64]:
    """Seurat-style HVGs: log dispersion (var/mean) z-scored within bins of mean expression."""
    mean = X.mean(axis=0, dtype=np.float64)
    var = X.var(axis=0, ddof=1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        dispersion = np.log(np.where(mean > 0, var / np.where(mean > 0, mean, 1), np.nan))
    edges = np.quantile(mean, np.linspace(0, 1, n_bins + 1)[1:-1])
    bins = np.searchsorted(edges, mean, side="right")
    z = np.full_like(mean, -np.inf)
    for b in np.unique(bins):
        members = (bins == b) & np.isfinite(dispersion)
        if members.sum() == 0:
            continue
        d = dispersion[members]
        sd = d.std(ddof=1) if members.sum() > 1 else 0.0
        # a bin with one gene (or no spread) has no scale: its genes rank by 0
        z[members] = (d - d.mean()) / sd if sd > 0 else 0.0
    order = np.argsort(-z, kind="stable")[: min(n, X.shape[1])]
    return np.sort(order).astype(np.int64)


def fit_pca(X: Array, n_components: int) -> PCA:
    """Principal axes of X by SVD in float64, each sign fixed so its largest loading is > 0."""
    k = min(n_components, *X.shape)
    mean = X.mean(axis=0, dtype=np.float64)
    _, _, vt = np.linalg.svd(np.asarray(X, dtype=np.float64) - mean, full_matrices=False)
    comps = vt[:k]
    # SVD signs are arbitrary; fixing them makes refits (and their files) identical
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    return PCA(mean.astype(np.float32), (comps * signs[:, None]).astype(np.float32))


def fit_step(
    spec: Mapping[str, Any],
    X: Array,
    gene_ids: Sequence[str],
    gene_lengths: Mapping[str, float] | None,
    raw: tuple[Array, npt.NDArray[np.float64]] | None = None,
) -> Step:
    """Fit the per-sample step `spec["step"]` on the current values X (columns = gene_ids).

    `raw` holds the counts and size factors behind X when X is median-of-ratios output: the VST
    fits its dispersions to those counts.
    """
    name = spec.get("step")
    if name == "cpm":
        return NormalizeTotal(1e6)
    if name == "normalize_total":
        target = spec.get("target_sum") or float(np.median(X.sum(axis=1, dtype=np.float64)))
        return NormalizeTotal(float(target))
    if name in ("tpm", "fpkm"):
        return PerLength(_lengths(gene_ids, gene_lengths), name)
    if name == "median_of_ratios":
        logmeans, usable = normalise.size_factor_reference(X)
        return MedianOfRatios(logmeans[usable], np.flatnonzero(usable).astype(np.int64))
    if name == "vst":
        return _fit_vst(spec, X, raw)
    if name in ("log1p", "log2p1"):
        return Log1p() if name == "log1p" else Log2p1()
    if name == "standardize":
        return Standardize.fit(
            X, std_floor=float(spec.get("std_floor", 1e-6)), clip=spec.get("clip")
        )
    if name == "select_variance":
        return SelectGenes(top_variance(X, _positive(spec, "n")), "variance")
    if name == "select_hvg":
        return SelectGenes(highly_variable(X, _positive(spec, "n")), "highly_variable")
    if name == "select_genes":
        return SelectGenes(_named(gene_ids, _need(spec, "genes")), "gene_list")
    if name == "pca":
        return fit_pca(X, _positive(spec, "n_components"))
    raise ValueError(f"unknown preprocessing step {name!r}; known: {list(RECIPE_STEPS)}")


def _need(spec: Mapping[str, Any], key: str) -> Any:
    if key not in spec:
        raise ValueError(f"step {spec.get('step')!r} needs the option {key!r}")
    return spec[key]


def _positive(spec: Mapping[str, Any], key: str) -> int:
    value = _need(spec, key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"step {spec.get('step')!r}: {key} must be a positive integer")
    return value


def _fit_vst(
    spec: Mapping[str, Any], normed: Array, raw: tuple[Array, npt.NDArray[np.float64]] | None
) -> VST:
    if "a0" in spec:  # a trend fitted elsewhere (DESeq2 in R, pydeseq2): applied as given
        return VST(float(spec["a0"]), float(spec.get("a1", 0.0)))
    from contract.preprocess.deseq import TrendFitError  # scipy.optimize: fitting only

    # NB dispersions are fitted to counts: those before median_of_ratios where it came just
    # before, else the values themselves, taken as counts with size factors of 1
    counts, factors = raw if raw is not None else (normed, np.ones(normed.shape[0]))
    try:
        a0, a1 = normalise.fit_vst_trend(counts, factors, spec.get("fit_type", "parametric"))
    except TrendFitError as exc:  # pydeseq2 falls back silently here; we make the caller choose
        raise ValueError(f"vst: {exc}; use fit_type='mean' or give the trend as a0/a1") from exc
    return VST(a0, a1)


def _lengths(gene_ids: Sequence[str], lengths: Mapping[str, float] | None) -> Array:
    if lengths is None:
        raise ValueError("tpm and fpkm need gene lengths (gene id → length in bases)")
    absent = [g for g in gene_ids if g not in lengths]
    if absent:
        raise ValueError(f"no gene length for {len(absent)} genes, e.g. {absent[:10]}")
    return np.array([lengths[g] for g in gene_ids], dtype=np.float32)


def _named(gene_ids: Sequence[str], wanted: Sequence[str]) -> npt.NDArray[np.int64]:
    column = {g: j for j, g in enumerate(gene_ids)}
    absent = [g for g in wanted if g not in column]
    if absent:
        raise ValueError(f"select_genes: {len(absent)} genes are not in the data: {absent[:10]}")
    return np.array([column[g] for g in wanted], dtype=np.int64)
