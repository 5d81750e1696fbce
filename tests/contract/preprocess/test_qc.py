from __future__ import annotations

import numpy as np
import pytest

from contract.matrix import ExpressionMatrix
from contract.preprocess.qc import run_qc


def _counts(seed: int = 0) -> ExpressionMatrix:
    rng = np.random.default_rng(seed)
    X = rng.poisson(rng.gamma(2.0, 50.0, 200), size=(12, 200)).astype(np.float32)
    return ExpressionMatrix(X=X, sample_ids=[f"s{i}" for i in range(12)],
                            gene_ids=[f"g{j}" for j in range(200)])  # fmt: skip


def test_missing_samples_dropped_and_outliers_flagged_with_reasons() -> None:
    m = _counts()
    X = m.X.copy()
    X[0, :100] = np.nan  # 50% missing: dropped
    X[1, :3] = np.nan  # 1.5%: kept, filled
    X[2] *= 40  # library size outlier
    X[3, 50:] = 0  # few detected genes, low library size too
    X[4] = np.random.default_rng(9).permutation(X[4])  # uncorrelated with the others
    m = ExpressionMatrix(X=X, sample_ids=m.sample_ids, gene_ids=m.gene_ids)
    report = run_qc(m, "counts", max_missing=0.2)
    assert [d.sample for d in report.dropped] == ["s0"]
    assert "50.0% of genes missing" in report.dropped[0].reasons[0]
    flagged = {f.sample: f.reasons for f in report.flagged}
    assert set(flagged) == {"s2", "s3", "s4"}
    assert any(r.startswith("library_size") and "above" in r for r in flagged["s2"])
    assert any(r.startswith("detected_genes") and "below" in r for r in flagged["s3"])
    assert any(r.startswith("median_correlation") for r in flagged["s4"])
    assert report.kept.sample_ids == [f"s{i}" for i in range(1, 12)]  # flagged are kept
    assert report.filled_values == 3
    assert not np.isnan(report.kept.X).any()
    np.testing.assert_allclose(report.kept.X[0, 0], np.median(X[2:, 0]))
    summary = report.to_dict()
    assert summary["n_samples_in"] == 12
    assert summary["n_samples_kept"] == 11
    assert len(summary["metrics"]) == 12


def test_all_missing_gene_is_dropped_and_listed() -> None:
    m = _counts(1)
    X = m.X.copy()
    X[:, 5] = np.nan
    report = run_qc(ExpressionMatrix(X=X, sample_ids=m.sample_ids, gene_ids=m.gene_ids), "log")
    assert report.dropped_genes == ["g5"]
    assert report.kept.shape == (12, 199)


def test_few_samples_are_not_judged_and_all_missing_is_refused() -> None:
    m = _counts().take([0, 1, 2])
    report = run_qc(m, "counts")
    assert report.flagged == []
    assert report.notes == ["outliers not judged: 3 samples (need 5)"]
    X = np.full((2, 3), np.nan, dtype=np.float32)
    with pytest.raises(ValueError, match=r"every sample has more than 20% missing.*\['a', 'b'\]"):
        run_qc(ExpressionMatrix(X=X, sample_ids=["a", "b"], gene_ids=["x", "y", "z"]), "log")
    with pytest.raises(ValueError, match="max_missing must be within"):
        run_qc(m, "counts", max_missing=2)
