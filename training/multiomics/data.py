"""Multi-omics datasets: expression plus added modalities keyed by sample id.

Read from an ``.h5mu`` (mudata: the ``rna`` modality is expression, every other one an added
modality) or from one table per modality (samples as rows, the first column the sample id); a
sample absent from a modality's table or AnnData has that modality missing. `make_multiomics`
generates seeded synthetic data: shared latent factors drive counts-like expression, methylation
β-values and protein abundance, each with its own noise, and a share of the samples lacks each
added modality.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from contract.io.readers import read_matrix
from contract.matrix import ExpressionMatrix
from contract.modality import EXPRESSION, MODALITY_NAME

RNA = "rna"


@dataclass(frozen=True)
class MultiOmics:
    """Expression of every sample (labels in its obs) and each added modality's measured rows.

    Parameters
    ----------
    expression:
        Every sample; its obs holds the labels.
    modalities:
        Name → the samples that have that modality (a subset of expression's, any order).
    """

    expression: ExpressionMatrix
    modalities: Mapping[str, ExpressionMatrix]

    def __post_init__(self) -> None:
        known = set(self.expression.sample_ids)
        for name, m in self.modalities.items():
            if not re.match(MODALITY_NAME, name) or name == EXPRESSION:
                raise ValueError(
                    f"modality name {name!r}: lower-case letters, digits and _, not {EXPRESSION!r}"
                )
            unknown = [s for s in m.sample_ids if s not in known]
            if unknown:
                raise ValueError(
                    f"modality {name!r} has {len(unknown)} samples without expression "
                    f"(e.g. {unknown[:5]})"
                )
            if not np.all(np.isfinite(m.X)):
                raise ValueError(f"modality {name!r} has non-finite values")
        if not self.modalities:
            raise ValueError("a multi-omics dataset needs at least one modality besides rna")

    @property
    def names(self) -> list[str]:
        return list(self.modalities)

    def dense(self, name: str, sample_ids: list[str] | None = None) -> npt.NDArray[np.float32]:
        """The modality's values for `sample_ids` (default: all), NaN rows where it is missing."""
        ids = self.expression.sample_ids if sample_ids is None else sample_ids
        m = self.modalities[name]
        where = {s: i for i, s in enumerate(m.sample_ids)}
        out = np.full((len(ids), m.shape[1]), np.nan, dtype=np.float32)
        for row, s in enumerate(ids):
            if s in where:
                out[row] = m.X[where[s]]
        return out

    def take(self, rows: npt.ArrayLike) -> MultiOmics:
        """The given expression rows (indices or mask) and their modality rows."""
        expression = self.expression.take(rows)
        keep = set(expression.sample_ids)
        mods = {}
        for name, m in self.modalities.items():
            mods[name] = m.take([s in keep for s in m.sample_ids])
        return MultiOmics(expression, mods)

    def without(self, *names: str) -> MultiOmics:
        """The same samples with only the other modalities (at least one must stay)."""
        return MultiOmics(
            self.expression, {k: v for k, v in self.modalities.items() if k not in names}
        )

    def presence(self) -> dict[str, float]:
        """Share of the samples that have each modality."""
        n = self.expression.shape[0]
        return {name: m.shape[0] / n for name, m in self.modalities.items()}


def make_multiomics(
    n_samples: int = 300,
    *,
    n_genes: int = 120,
    n_cpgs: int = 80,
    n_proteins: int = 30,
    n_classes: int = 3,
    n_factors: int = 6,
    separation: float = 1.0,
    expression_noise: float = 1.0,
    missing: Mapping[str, float] | None = None,
    seed: int = 0,
) -> MultiOmics:
    """Synthetic expression, methylation and protein driven by shared latent factors.

    Each class has a mean over `n_factors` latent factors; each sample draws its factors around
    it. Expression (negative binomial counts, ``obs["label"]``) sees the factors through sparse
    loadings plus `expression_noise` on the log mean, so labels are only partly recoverable from
    it; methylation β-values are ``sigmoid(loadings · factors + noise)`` (beta-distributed around
    it) and protein abundances ``log-normal`` of their own loadings, each with its own noise. A
    share of the samples (`missing`, default 0.2 methylation, 0.3 protein) lacks each added
    modality, drawn independently.

    Parameters
    ----------
    n_samples, n_genes, n_cpgs, n_proteins:
        Sizes.
    n_classes, n_factors:
        Labels (``type_0``, …) and latent factors.
    separation:
        Spread of the class means over the factors (larger: easier).
    expression_noise:
        Standard deviation of the per-sample, per-gene noise on the log mean (larger: the added
        modalities carry more of the signal than expression).
    missing:
        Modality → share of samples without it.
    seed:
        Seeds every draw.
    """
    if min(n_samples, n_genes, n_cpgs, n_proteins, n_classes, n_factors) < 1:
        raise ValueError("sizes must be at least 1")
    shares = {"methylation": 0.2, "protein": 0.3} if missing is None else dict(missing)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n_samples)
    means = rng.normal(0.0, separation, size=(n_classes, n_factors))
    factors = means[labels] + rng.normal(0.0, 1.0, size=(n_samples, n_factors))

    def loadings(n: int, density: float) -> npt.NDArray[np.float64]:
        w = rng.normal(0.0, 1.0, size=(n_factors, n)) * (rng.random((n_factors, n)) < density)
        return np.asarray(w, dtype=np.float64)

    # expression: NB counts around library * softmax(log mean)
    log_mean = (
        rng.normal(0.0, 1.0, size=n_genes)
        + 0.6 * factors @ loadings(n_genes, 0.2)
        + rng.normal(0.0, expression_noise, size=(n_samples, n_genes))
    )
    prop = np.exp(log_mean - log_mean.max(axis=1, keepdims=True))
    prop /= prop.sum(axis=1, keepdims=True)
    mu = 5_000.0 * rng.lognormal(0.0, 0.3, size=(n_samples, 1)) * prop
    counts = rng.poisson(rng.gamma(5.0, mu / 5.0)).astype(np.float32)
    # methylation: β around sigmoid of a linear predictor, beta noise (precision 30)
    eta = rng.normal(0.0, 1.5, size=n_cpgs) + factors @ loadings(n_cpgs, 0.3)
    p = 1.0 / (1.0 + np.exp(-(eta + rng.normal(0.0, 0.5, size=eta.shape))))
    beta = rng.beta(np.maximum(p * 30, 1e-3), np.maximum((1 - p) * 30, 1e-3))
    beta = np.clip(beta, 1e-4, 1 - 1e-4).astype(np.float32)
    # protein: log-normal abundance
    log_p = 5.0 + factors @ loadings(n_proteins, 0.4) * 0.5
    protein = np.exp(log_p + rng.normal(0.0, 0.4, size=log_p.shape)).astype(np.float32)

    ids = [f"s{i:05d}" for i in range(n_samples)]
    obs = pd.DataFrame({"label": [f"type_{k}" for k in labels]}, index=pd.Index(ids))
    expression = ExpressionMatrix(
        X=counts, sample_ids=ids, gene_ids=[f"gene_{j:05d}" for j in range(n_genes)], obs=obs
    )
    blocks: dict[str, tuple[npt.NDArray[np.floating[Any]], list[str]]] = {
        "methylation": (beta, [f"cg{j:07d}" for j in range(n_cpgs)]),
        "protein": (protein, [f"prot_{j:03d}" for j in range(n_proteins)]),
    }
    mods = {}
    for name, (values, features) in blocks.items():
        keep = rng.random(n_samples) >= shares.get(name, 0.0)
        rows = np.flatnonzero(keep)
        mods[name] = ExpressionMatrix(
            X=values[rows], sample_ids=[ids[i] for i in rows], gene_ids=features
        )
    return MultiOmics(expression, mods)


def read_h5mu(path: str | Path, expression: str = RNA) -> MultiOmics:
    """A MuData file: modality `expression` (default ``rna``) as expression, the rest added.

    Labels come from the global obs (columns ``rna:label`` are renamed ``label``), else from
    the expression modality's obs.
    """
    import mudata

    with mudata.set_options(pull_on_update=False):
        mdata = mudata.read_h5mu(str(path))
    if expression not in mdata.mod:
        raise ValueError(f"{path}: no {expression!r} modality (have {sorted(mdata.mod)})")
    rna = mdata.mod[expression]
    obs = rna.obs.copy()
    prefix = f"{expression}:"
    glob = mdata.obs.loc[rna.obs_names]
    for col in glob.columns:
        name = col[len(prefix) :] if col.startswith(prefix) else col
        if ":" not in name and name not in obs.columns:
            obs[name] = glob[col].to_numpy()
    obs.index = pd.Index([str(s) for s in rna.obs_names])
    mods = {
        name: _matrix(mod.X, mod.obs_names, mod.var_names)
        for name, mod in mdata.mod.items()
        if name != expression
    }
    return MultiOmics(_matrix(rna.X, rna.obs_names, rna.var_names, obs), mods)


def write_h5mu(data: MultiOmics, path: str | Path) -> Path:
    """Write `data` as a MuData file (expression as ``rna``), for tests and examples."""
    import anndata
    import mudata

    def adata(m: ExpressionMatrix) -> anndata.AnnData:
        obs = m.obs.copy()
        obs.index = pd.Index(m.sample_ids)
        return anndata.AnnData(X=m.X, obs=obs, var=pd.DataFrame(index=pd.Index(m.gene_ids)))

    mods = {RNA: adata(data.expression)} | {k: adata(v) for k, v in data.modalities.items()}
    path = Path(path)
    with mudata.set_options(pull_on_update=False):
        mudata.MuData(mods).write(str(path))
    return path


def read_tables(
    expression: str | Path | ExpressionMatrix,
    modalities: Mapping[str, str | Path],
    obs_columns: Sequence[str] = ("label",),
) -> MultiOmics:
    """Expression (a file, samples as rows, `obs_columns` moved to obs, or a matrix already
    read); each modality a CSV/TSV/Parquet table with samples as rows, the first column their
    ids (samples absent from a table lack that modality)."""
    mods = {}
    for name, path in modalities.items():
        m = read_matrix(path, orientation="samples_as_rows")
        mods[name] = ExpressionMatrix(X=m.X, sample_ids=m.sample_ids, gene_ids=m.gene_ids)
    if not isinstance(expression, ExpressionMatrix):
        expression = read_matrix(
            expression, orientation="samples_as_rows", obs_columns=tuple(obs_columns)
        )
    return MultiOmics(expression, mods)


def _matrix(
    x: object, rows: pd.Index, cols: pd.Index, obs: pd.DataFrame | None = None
) -> ExpressionMatrix:
    dense = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    ids = [str(s) for s in rows]
    return ExpressionMatrix(
        X=np.asarray(dense, dtype=np.float32),
        sample_ids=ids,
        gene_ids=[str(g) for g in cols],
        obs=obs if obs is not None else pd.DataFrame(index=pd.Index(ids)),
    )
