from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.training.preprocess.oracle_data import pasilla
from training.data.readers import read_h5ad
from training.preprocess import normalise as nm

dds_module = pytest.importorskip("pydeseq2.dds")


def _dds(counts: pd.DataFrame) -> object:
    meta = pd.DataFrame({"group": ["a"] * counts.shape[0]}, index=counts.index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dds_module.DeseqDataSet(counts=counts, metadata=meta, design="~1", quiet=True)


def test_cpm_tpm_fpkm_log2() -> None:
    counts = np.array([[10.0, 30.0, 60.0], [0.0, 5.0, 5.0]])
    lengths = np.array([1000.0, 2000.0, 500.0])
    np.testing.assert_allclose(nm.cpm(counts).sum(axis=1), [1e6, 1e6])
    np.testing.assert_allclose(nm.cpm(counts)[0], [1e5, 3e5, 6e5])
    rate = counts[0] / lengths
    np.testing.assert_allclose(nm.tpm(counts, lengths)[0], rate / rate.sum() * 1e6)
    np.testing.assert_allclose(nm.fpkm(counts, lengths)[0], [1e5, 1.5e5, 1.2e6])
    np.testing.assert_allclose(nm.log2p1(np.array([0.0, 1.0, 3.0])), [0.0, 1.0, 2.0])
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
    logmeans, usable = nm.size_factor_reference(counts.to_numpy())
    ours = nm.size_factors(counts.to_numpy(), logmeans, usable)
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    # a new sample is normalised against the stored reference alone
    one = nm.size_factors(counts.to_numpy()[3:4], logmeans, usable)
    np.testing.assert_allclose(one, expected[3:4], rtol=1e-6)


def test_vst_matches_pydeseq2_on_pasilla() -> None:
    counts, _ = pasilla(800)
    dds = _dds(counts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dds.vst(fit_type="parametric")  # type: ignore[attr-defined]
    expected = dds.layers["vst_counts"]  # type: ignore[attr-defined]
    a0, a1 = (float(v) for v in dds.uns["vst_trend_coeffs"])  # type: ignore[attr-defined]
    X = counts.to_numpy()
    factors = nm.size_factors(X, *nm.size_factor_reference(X))
    normed = X / factors[:, None]
    # the closed form, given pydeseq2's trend: 1e-6 relative
    np.testing.assert_allclose(nm.vst_parametric(normed, a0, a1), expected, rtol=1e-6)
    # our own trend (moments dispersions + gamma GLM) is not pydeseq2's MLE fit: close, not equal
    ours = nm.vst_parametric(
        normed,
        *nm.fit_dispersion_trend(normed.mean(axis=0), nm.moments_dispersions(normed, factors)),
    )
    assert np.median(np.abs(ours / expected - 1)) < 0.02


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
