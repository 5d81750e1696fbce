from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contract.card import InputScale
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PARAMS_JSON, PARAMS_NPZ, PreprocessPipeline
from training.preprocess.fused import pipeline_module


def _matrix(X: np.ndarray) -> ExpressionMatrix:
    return ExpressionMatrix(
        X=X.astype(np.float32),
        sample_ids=[f"s{i}" for i in range(X.shape[0])],
        gene_ids=[f"g{j}" for j in range(X.shape[1])],
    )


def test_log_input_standardises_only() -> None:
    X = np.array([[0.0, 1.0, 5.0], [2.0, 1.0, 1.0], [4.0, 1.0, 0.0]])
    pipe = PreprocessPipeline.fit(_matrix(X), "log", clip=None)
    assert [s.name for s in pipe.steps] == ["standardize"]
    expected = (X - X.mean(0)) / np.where(X.std(0) > 1e-6, X.std(0), 1.0)
    np.testing.assert_allclose(pipe.transform(X.astype(np.float32)), expected, rtol=1e-6)
    assert pipe.transform(X.astype(np.float32))[:, 1].tolist() == [0.0, 0.0, 0.0]  # constant gene
    np.testing.assert_allclose(pipe.fill_values, X.mean(0), rtol=1e-6)


def test_counts_normalise_log_and_clip() -> None:
    X = np.array([[10.0, 0.0, 90.0], [5.0, 5.0, 0.0], [1.0, 1.0, 8.0], [0.0, 4.0, 6.0]])
    pipe = PreprocessPipeline.fit(_matrix(X), InputScale.counts, clip=0.5)
    assert [s.name for s in pipe.steps] == ["normalize_total", "log1p", "standardize"]
    target = float(np.median(X.sum(1)))
    logged = np.log1p(X / X.sum(1, keepdims=True) * target)
    z = (logged - logged.mean(0)) / logged.std(0)
    np.testing.assert_allclose(
        pipe.transform(X.astype(np.float32)), np.clip(z, -0.5, 0.5), atol=1e-5
    )
    # a missing gene filled with its training mean standardises to about 0 (before log effects)
    assert pipe.fill_values == pytest.approx(X.mean(0).tolist())


def test_normalized_input_gets_log1p_and_rejects_negatives() -> None:
    pipe = PreprocessPipeline.fit(_matrix(np.array([[1.0, 2.0], [3.0, 0.0]])), "normalized")
    assert [s.name for s in pipe.steps] == ["log1p", "standardize"]
    with pytest.raises(ValueError, match="non-negative"):
        PreprocessPipeline.fit(_matrix(np.array([[-1.0, 2.0], [3.0, 0.0]])), "counts")
    with pytest.raises(ValueError, match=r"expected \(n, 2\)"):
        pipe.transform(np.zeros((1, 3), dtype=np.float32))


def test_save_load_is_bit_exact_and_pickle_free(counts: ExpressionMatrix, tmp_path: Path) -> None:
    pipe = PreprocessPipeline.fit(counts, "counts")
    pipe.save(tmp_path / "a")
    loaded = PreprocessPipeline.load(tmp_path / "a")
    assert loaded.gene_ids == pipe.gene_ids
    assert loaded.input_scale is InputScale.counts
    assert loaded.to_card() == pipe.to_card()
    assert np.array_equal(loaded.input_mean, pipe.input_mean)
    assert np.array_equal(loaded.transform(counts.X), pipe.transform(counts.X))
    with np.load(tmp_path / "a" / PARAMS_NPZ, allow_pickle=False) as npz:
        assert set(npz.files) == {"input_mean", "standardize.mean", "standardize.scale"}
        assert all(npz[k].dtype == np.float32 for k in npz.files)
    loaded.save(tmp_path / "b")  # equal arrays give equal bytes (fixed zip timestamps)
    for name in (PARAMS_JSON, PARAMS_NPZ):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_card_description() -> None:
    pipe = PreprocessPipeline.fit(_matrix(np.array([[1.0, 2.0], [3.0, 0.0]])), "counts", clip=4.0)
    card = pipe.to_card()
    assert card.params_file == PARAMS_NPZ
    assert card.fused_in_graph
    assert card.steps[2].name == "standardize"
    assert card.steps[2].params == {"clip": 4.0}
    assert card.steps[0].params == {"target_sum": 3.0}


@pytest.mark.parametrize("scale", ["counts", "normalized", "log"])
def test_torch_module_matches_numpy(counts: ExpressionMatrix, scale: str) -> None:
    pipe = PreprocessPipeline.fit(counts, scale)
    module = pipeline_module(pipe).eval()
    with torch.no_grad():
        got = module(torch.from_numpy(counts.X)).numpy()
    np.testing.assert_allclose(got, pipe.transform(counts.X), atol=1e-5)
