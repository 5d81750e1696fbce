"""Gene selection fitted with the preprocessing, and the one scale check and conversion of the
training commands."""

from __future__ import annotations

import numpy as np
import pytest

from contract.errors import InputScaleError
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from contract.preprocess.select import top_variance
from training.data.synthetic import make_synthetic
from training.preprocess.convert import SCALE_REMEDY, Conversion, check_scale, prepared
from training.preprocess.select import GeneSelection, fit_pipeline, output_width


def test_selection_keeps_the_most_variable_log_genes(counts: ExpressionMatrix) -> None:
    plain = PreprocessPipeline.fit(counts, "counts")
    chosen = fit_pipeline(counts, "counts", select=GeneSelection(12))
    assert output_width(plain) == 60
    assert output_width(chosen) == 12
    assert chosen.n_genes == 60  # the panel, the graph's input, stays whole
    logged = plain.steps[1].transform(plain.steps[0].transform(counts.X))
    kept = [counts.gene_ids[i] for i in top_variance(logged, 12)]
    assert chosen.output_names() == kept
    X = chosen.transform(counts.X)
    assert X.shape == (counts.shape[0], 12)
    np.testing.assert_allclose(X.mean(0), 0.0, atol=1e-4)  # z-scored after the selection
    by_dispersion = fit_pipeline(counts, "counts", select=GeneSelection(12, "dispersion"))
    assert output_width(by_dispersion) == 12
    assert fit_pipeline(counts, "counts", select=None).output_names() == counts.gene_ids


def test_selection_refuses_bad_sizes(counts: ExpressionMatrix) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GeneSelection(0)
    with pytest.raises(ValueError, match="by one of"):
        GeneSelection(5, "entropy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keeps every gene of a 60-gene panel"):
        fit_pipeline(counts, "counts", select=GeneSelection(60))
    negative = ExpressionMatrix(-counts.X, counts.sample_ids, counts.gene_ids, counts.obs)
    with pytest.raises(ValueError, match="must be non-negative"):
        fit_pipeline(negative, "counts", select=GeneSelection(5))


def test_counts_to_a_log_model_are_refused_or_converted(counts: ExpressionMatrix) -> None:
    with pytest.raises(InputScaleError) as refused:
        check_scale(counts, "log")
    message = str(refused.value)
    assert message.startswith("the values look like counts (non-negative integers up to")
    assert message.endswith(f"but this model expects log; {SCALE_REMEDY}")
    converted = prepared(counts, "log", Conversion(1e4))
    totals = np.expm1(converted.X.astype(np.float64)).sum(axis=1)
    np.testing.assert_allclose(totals, 1e4, rtol=1e-3)
    assert Conversion().record() == {
        "from": "counts",
        "steps": [{"name": "normalize_total", "params": {"target_sum": 1e4}},
                  {"name": "log1p", "params": {}}],
    }  # fmt: skip
    with pytest.raises(InputScaleError, match="--counts-to-log: the values look like log"):
        Conversion().apply(converted)
    with pytest.raises(ValueError, match="must be positive"):
        Conversion(0.0)
    check_scale(make_synthetic(20, 30, seed=1), "counts")  # counts for a counts model: fine
