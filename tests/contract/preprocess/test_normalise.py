from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contract.io.readers import read_h5ad
from contract.matrix import ExpressionMatrix
from contract.preprocess import deseq
from contract.preprocess import normalise as nm
from contract.preprocess.pipeline import PreprocessPipeline
from contract.preprocess.steps import MedianOfRatios
from tests.contract.preprocess.oracle_data import pasilla

dds_module = pytest.importorskip("pydeseq2.dds")


def _dds(counts: pd.DataFrame) -> object:
    meta = pd.DataFrame({"group": ["a"] * counts.shape[0]}, index=counts.index)
    # one process: joblib's worker pool costs more than these small fits
    return dds_module.DeseqDataSet(counts=counts, metadata=meta, design="~1", quiet=True, n_cpus=1)


def _matrix(counts: pd.DataFrame) -> ExpressionMatrix:
    return ExpressionMatrix(
        X=counts.to_numpy().astype(np.float32),
        sample_ids=[str(s) for s in counts.index],
        gene_ids=[str(g) for g in counts.columns],
    )


def _fitted(counts: pd.DataFrame, *steps: dict[str, object]) -> PreprocessPipeline:
    """The pipeline's own steps, fitted on `counts` as a recipe (what the service then runs)."""
    return PreprocessPipeline.fit_recipe(_matrix(counts), "counts", list(steps))


def test_cpm_tpm_fpkm_log2() -> None:
    counts = np.array([[10.0, 30.0, 60.0], [0.0, 5.0, 5.0]])
    lengths = np.array([1000.0, 2000.0, 500.0])
    frame = pd.DataFrame(counts, index=["s1", "s2"], columns=["g1", "g2", "g3"])
    cpm = _fitted(frame, {"step": "cpm"}).transform(counts.astype(np.float32))
    np.testing.assert_allclose(cpm.sum(axis=1), [1e6, 1e6])
    np.testing.assert_allclose(cpm[0], [1e5, 3e5, 6e5])
    rate = counts[0] / lengths
    np.testing.assert_allclose(nm.tpm(counts, lengths)[0], rate / rate.sum() * 1e6)
    np.testing.assert_allclose(nm.fpkm(counts, lengths)[0], [1e5, 1.5e5, 1.2e6])
    log2 = _fitted(frame, {"step": "log2p1"}).transform(np.array([[0.0, 1.0, 3.0]], np.float32))
    np.testing.assert_allclose(log2[0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match=r"gene lengths must be positive; columns \[1\]"):
        nm.tpm(counts, np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="2 gene lengths for 3 genes"):
        nm.fpkm(counts, np.array([1.0, 2.0]))


def test_size_factors_match_pydeseq2_on_airway() -> None:
    import inmoose

    path = Path(inmoose.__file__).parent / "data" / "airway" / "airway.h5ad"
    m = read_h5ad(path)
    counts = pd.DataFrame(m.X.astype(np.int64), index=m.sample_ids, columns=m.gene_ids)
    counts = counts.loc[:, counts.sum(axis=0) > 0]
    dds = _dds(counts)
    dds.fit_size_factors()  # type: ignore[attr-defined]
    expected = dds.obs["size_factors"].to_numpy()  # type: ignore[attr-defined]
    pipe = _fitted(counts, {"step": "median_of_ratios"})
    (ratios,) = pipe.steps
    assert isinstance(ratios, MedianOfRatios)
    X = _matrix(counts).X
    np.testing.assert_allclose(ratios.factors(X), expected, rtol=1e-6)
    normed = dds.layers["normed_counts"]  # type: ignore[attr-defined]
    np.testing.assert_allclose(pipe.transform(X), normed, rtol=1e-6)
    # a new sample is normalised against the stored reference alone
    np.testing.assert_allclose(ratios.factors(X[3:4]), expected[3:4], rtol=1e-6)


def _airway(n_genes: int) -> pd.DataFrame:
    """Every k-th airway gene, all-zero genes included (pydeseq2 gives them no dispersion)."""
    import inmoose

    m = read_h5ad(Path(inmoose.__file__).parent / "data" / "airway" / "airway.h5ad")
    counts = pd.DataFrame(m.X.astype(np.float64), index=m.sample_ids, columns=m.gene_ids)
    return counts.iloc[:, :: counts.shape[1] // n_genes].iloc[:, :n_genes]


def _pydeseq2_vst(counts: pd.DataFrame, fit_type: str) -> object:
    # integer counts, as pydeseq2 is used: it then holds them column-major (pandas' layout),
    # which decides how it sums, to the ulp (see test_dispersions_trend_and_vst_match_pydeseq2)
    dds = _dds(counts.astype(np.int64))
    dds.vst(use_design=False, fit_type=fit_type)  # type: ignore[attr-defined]
    return dds


DATASETS = {"pasilla": lambda: pasilla(400)[0], "airway": lambda: _airway(600)}


@pytest.mark.slow  # pydeseq2 fits the oracle
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dispersions_trend_and_vst_match_pydeseq2(name: str) -> None:
    counts = DATASETS[name]()
    dds = _pydeseq2_vst(counts, "parametric")
    # the pipeline's steps, as a recipe fits them: the VST trend on the counts before
    # median_of_ratios, with that step's size factors
    pipe = _fitted(counts, {"step": "median_of_ratios"}, {"step": "vst"})
    ratios, vst = pipe.steps
    assert isinstance(ratios, MedianOfRatios)
    X = _matrix(counts).X
    factors = ratios.factors(X)
    expected_factors = dds.obs["size_factors"].to_numpy()  # type: ignore[attr-defined]
    # the log means are summed in pydeseq2's (column-major) order: on near-Poisson genes (α <
    # 1e-4, a flat likelihood) one ulp in a size factor moves where L-BFGS-B stops, by up to
    # 4 % on the whole of airway (a0 then moves by 1.5e-6); given equal factors, the fits agree
    np.testing.assert_allclose(factors, expected_factors, rtol=1e-15)
    # gene-wise Cox–Reid MLEs (what the VST fit starts from), NaN for the all-zero genes as in
    # pydeseq2
    disp = deseq.genewise_dispersions(X, factors)
    expected_disp = dds.var["vst_genewise_dispersions"].to_numpy()  # type: ignore[attr-defined]
    np.testing.assert_allclose(disp, expected_disp, rtol=1e-6)
    # the gamma-GLM trend with its exclusions, from our own dispersions
    expected_trend = dds.uns["vst_trend_coeffs"].to_numpy()  # type: ignore[attr-defined]
    np.testing.assert_allclose([vst.params()["a0"], vst.params()["a1"]], expected_trend, rtol=1e-6)
    expected = dds.layers["vst_counts"]  # type: ignore[attr-defined]
    np.testing.assert_allclose(pipe.transform(X), expected, rtol=1e-6)


@pytest.mark.slow
def test_mean_vst_matches_pydeseq2() -> None:
    counts = _airway(400)
    dds = _pydeseq2_vst(counts, "mean")
    pipe = _fitted(counts, {"step": "median_of_ratios"}, {"step": "vst", "fit_type": "mean"})
    assert pipe.steps[1].params()["a1"] == 0.0
    expected = dds.layers["vst_counts"]  # type: ignore[attr-defined]
    np.testing.assert_allclose(pipe.transform(_matrix(counts).X), expected, rtol=1e-6)


def test_a_failed_trend_fit_is_an_error_not_a_silent_mean() -> None:
    # dispersions that fall with the mean faster than 1/μ drive a0 to its bound
    mean = np.geomspace(1, 1e4, 200)
    with pytest.raises(deseq.TrendFitError, match="non-positive coefficients"):
        nm.fit_dispersion_trend(mean, 1.0 / mean**2)
    with pytest.raises(deseq.TrendFitError, match="too few genes"):
        nm.fit_dispersion_trend(np.array([0.0, 5.0]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="fit_type must be 'parametric' or 'mean'"):
        nm.fit_vst_trend(np.ones((3, 2)), np.ones(3), "local")


def test_size_factors_need_a_gene_without_zeros() -> None:
    with pytest.raises(ValueError, match="every gene has a zero count"):
        nm.size_factor_reference(np.array([[0.0, 1.0], [1.0, 0.0]]))


def test_vst_mean_is_the_constant_dispersion_closed_form() -> None:
    q = np.array([[0.0, 10.0, 1000.0]])
    alpha = 0.05
    expected = (2 * np.arcsinh(np.sqrt(alpha * q)) - np.log(alpha) - np.log(4)) / np.log(2)
    np.testing.assert_allclose(nm.vst_mean(q, alpha), expected)
    # for large counts the VST approaches log2 of the count
    assert abs(nm.vst_parametric(np.array([1e6]), 0.01, 1.0)[0] - np.log2(1e6)) < 0.01
