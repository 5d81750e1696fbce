"""Sample quality control: drop samples with too many missing values, flag outliers, say why.

Nothing is dropped or changed silently: every dropped or flagged sample is listed with its
reasons, every filled value and dropped gene is counted. Outliers are judged robustly (median
and MAD, scaled to a normal sd) on three per-sample metrics: library size (log10 of the total,
on linear scales), detected genes (values > 0) and the median Pearson correlation to the other
samples (on log1p values for linear scales); correlation is flagged on the low side only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from contract.matrix import ExpressionMatrix

LINEAR = frozenset({"counts", "normalized"})


@dataclass(frozen=True)
class SampleIssue:
    """A dropped or flagged sample and the reasons, in words."""

    sample: str
    reasons: list[str]


@dataclass(frozen=True)
class QCReport:
    """What QC kept, dropped, flagged and filled."""

    kept: ExpressionMatrix
    metrics: pd.DataFrame  # one row per input sample
    dropped: list[SampleIssue] = field(default_factory=list)
    flagged: list[SampleIssue] = field(default_factory=list)
    dropped_genes: list[str] = field(default_factory=list)
    filled_values: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (metrics rounded, one record per sample)."""
        metrics = self.metrics.reset_index(names="sample").round(6)
        return {
            "n_samples_in": int(self.metrics.shape[0]),
            "n_samples_kept": self.kept.shape[0],
            "dropped": [{"sample": i.sample, "reasons": i.reasons} for i in self.dropped],
            "flagged": [{"sample": i.sample, "reasons": i.reasons} for i in self.flagged],
            "dropped_genes": self.dropped_genes,
            "filled_values": self.filled_values,
            "notes": self.notes,
            "metrics": metrics.to_dict(orient="records"),
        }


def run_qc(
    matrix: ExpressionMatrix,
    scale: str,
    *,
    max_missing: float = 0.2,
    n_mads: float = 3.0,
    min_samples: int = 5,
) -> QCReport:
    """Drop, flag and fill, and report each decision.

    Parameters
    ----------
    matrix:
        Samples × genes; NaN marks a missing value (readers keep them with allow_missing).
    scale:
        The values' scale (``counts``, ``normalized``, ``log``, ``standardized``).
    max_missing:
        Samples with a larger share of missing genes are dropped.
    n_mads:
        A metric further than this many robust sds from the median flags the sample.
    min_samples:
        With fewer samples, outliers are not judged (a median of 3 says little).
    """
    if not 0 <= max_missing <= 1:
        raise ValueError(f"max_missing must be within [0, 1], not {max_missing}")
    X = matrix.X
    missing = np.isnan(X).mean(axis=1)
    drop = missing > max_missing
    dropped = [
        SampleIssue(s, [f"{m:.1%} of genes missing (more than {max_missing:.0%})"])
        for s, m, d in zip(matrix.sample_ids, missing, drop, strict=True)
        if d
    ]
    if drop.all():
        raise ValueError(
            f"every sample has more than {max_missing:.0%} missing values; "
            f"e.g. {matrix.sample_ids[:10]}"
        )
    kept = matrix.take(~drop)
    values = kept.X.copy()
    gene_missing: npt.NDArray[np.bool_] = np.asarray(np.isnan(values).all(axis=0))
    dropped_genes = [g for g, m in zip(kept.gene_ids, gene_missing, strict=True) if m]
    values = values[:, ~gene_missing]
    holes = np.isnan(values)
    # a missing value becomes the gene's median over the kept samples: neutral for the gene
    values[holes] = np.take(np.nanmedian(values, axis=0), np.nonzero(holes)[1])
    # kept samples are judged on their filled values, dropped ones shown with NaN read as 0
    metrics = _metrics(X, scale)
    metrics.index = pd.Index(matrix.sample_ids)
    metrics.loc[kept.sample_ids] = _metrics(values, scale).to_numpy()
    metrics.insert(0, "missing_fraction", missing)
    notes: list[str] = []
    flagged: list[SampleIssue] = []
    if kept.shape[0] >= min_samples:
        flagged = _outliers(metrics.loc[kept.sample_ids], n_mads)
    else:
        notes.append(f"outliers not judged: {kept.shape[0]} samples (need {min_samples})")
    genes = [g for g, m in zip(kept.gene_ids, gene_missing, strict=True) if not m]
    out = ExpressionMatrix(X=values, sample_ids=kept.sample_ids, gene_ids=genes, obs=kept.obs)
    return QCReport(out, metrics, dropped, flagged, dropped_genes, int(holes.sum()), notes)


def _metrics(X: npt.NDArray[np.float32], scale: str) -> pd.DataFrame:
    filled = np.nan_to_num(X.astype(np.float64), nan=0.0)
    total = filled.sum(axis=1)
    detected = (filled > 0).sum(axis=1)
    logged = np.log1p(np.maximum(filled, 0)) if scale in LINEAR else filled
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(logged) if X.shape[0] > 1 else np.ones((1, 1))
    np.fill_diagonal(corr, np.nan)
    median_corr = np.nanmedian(corr, axis=1) if X.shape[0] > 1 else np.array([1.0])
    return pd.DataFrame(
        {
            "library_size": total,
            "detected_genes": detected,
            "median_correlation": np.nan_to_num(median_corr, nan=0.0),
        }
    )


def _outliers(metrics: pd.DataFrame, n_mads: float) -> list[SampleIssue]:
    checks = {
        "library_size": (np.log10(np.maximum(metrics["library_size"], 1e-12)), "both"),
        "detected_genes": (metrics["detected_genes"].astype(np.float64), "both"),
        "median_correlation": (metrics["median_correlation"], "low"),
    }
    reasons: dict[str, list[str]] = {}
    for name, (values, side) in checks.items():
        v = np.asarray(values, dtype=np.float64)
        centre = float(np.median(v))
        # a floor of 1% of the median: when most samples agree exactly (every gene detected),
        # the MAD is 0 and any difference at all would otherwise count as an outlier
        spread = max(1.4826 * float(np.median(np.abs(v - centre))), 0.01 * abs(centre))
        if spread == 0:
            continue
        z = (v - centre) / spread
        bad = z < -n_mads if side == "low" else np.abs(z) > n_mads
        raw = metrics[name].to_numpy()
        for sample, score, value in zip(metrics.index[bad], z[bad], raw[bad], strict=True):
            reasons.setdefault(str(sample), []).append(
                f"{name} {value:.4g} is {abs(score):.1f} robust sds "
                f"{'below' if score < 0 else 'above'} the median"
            )
    return [SampleIssue(s, r) for s, r in reasons.items()]
