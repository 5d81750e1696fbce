"""The batch-effect simulator: its contract on small data, and that it acts like a batch effect."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from contract.matrix import ExpressionMatrix
from training.data.pbmc68k import load_pbmc68k_reduced
from training.data.shift import BatchEffect, simulate_batches
from training.data.synthetic import make_synthetic

LOCATION_ONLY = BatchEffect(scale_sd=0.0, library_sd=0.0, dropout=0.0)


@pytest.fixture(scope="module")
def logged() -> ExpressionMatrix:
    """Synthetic counts normalised to 10,000 per sample and log1p'd, as the simulator expects."""
    counts = make_synthetic(300, 80, n_classes=3, n_batches=1, seed=3)
    X = np.log1p(counts.X / counts.X.sum(axis=1, keepdims=True) * 1e4)
    return ExpressionMatrix(
        X=X.astype(np.float32),
        sample_ids=counts.sample_ids,
        gene_ids=counts.gene_ids,
        obs=counts.obs.drop(columns="batch"),
    )


@pytest.fixture(scope="module")
def pbmc() -> ExpressionMatrix:
    return load_pbmc68k_reduced()


def test_batches_are_balanced_and_strata_spread(logged: ExpressionMatrix) -> None:
    shifted = simulate_batches(logged, 4, seed=0, stratify="label")
    table = shifted.obs.groupby(["label", "batch"]).size().unstack()
    assert list(table.columns) == [f"batch_{b}" for b in range(4)]
    assert (table.max(axis=1) - table.min(axis=1)).max() <= 1
    sizes = shifted.obs["batch"].value_counts()
    assert sizes.max() - sizes.min() <= 1
    assert shifted.sample_ids == logged.sample_ids
    assert list(shifted.obs["label"]) == list(logged.obs["label"])


def test_same_seed_same_matrix(logged: ExpressionMatrix) -> None:
    first = simulate_batches(logged, 3, seed=5)
    again = simulate_batches(logged, 3, seed=5)
    other = simulate_batches(logged, 3, seed=6)
    assert first.fingerprint() == again.fingerprint()
    assert first.labels("batch") == again.labels("batch")
    assert first.fingerprint() != other.fingerprint()


def test_strength_zero_changes_nothing(logged: ExpressionMatrix) -> None:
    shifted = simulate_batches(logged, 3, seed=1, strength=0.0)
    np.testing.assert_array_equal(shifted.X, logged.X)
    assert set(shifted.labels("batch")) == {"batch_0", "batch_1", "batch_2"}


def test_reference_batch_is_untouched_and_the_others_unchanged(logged: ExpressionMatrix) -> None:
    free = simulate_batches(logged, 3, seed=2)
    anchored = simulate_batches(logged, 3, seed=2, reference=0)
    batch = np.array(anchored.labels("batch"))
    np.testing.assert_array_equal(anchored.X[batch == "batch_0"], logged.X[batch == "batch_0"])
    assert not np.array_equal(free.X[batch == "batch_0"], logged.X[batch == "batch_0"])
    rest = batch != "batch_0"
    np.testing.assert_array_equal(anchored.X[rest], free.X[rest])


def test_detection_is_only_lost(logged: ExpressionMatrix) -> None:
    shifted = simulate_batches(logged, 3, seed=4, strength=2.0)
    assert shifted.X.min() >= 0
    assert not (shifted.X[logged.X == 0]).any()
    assert (shifted.X > 0).sum() < (logged.X > 0).sum()


def test_library_size_multiplies_the_counts_of_a_batch(logged: ExpressionMatrix) -> None:
    library = BatchEffect(location_sd=0.0, scale_sd=0.0, dropout=0.0)
    shifted = simulate_batches(logged, 3, seed=8, effect=library)
    batch = np.array(shifted.labels("batch"))
    factors = []
    for b in np.unique(batch):
        rows = batch == b
        before, after = np.expm1(logged.X[rows].astype(np.float64)), np.expm1(shifted.X[rows])
        ratio = after[before > 1] / before[before > 1]
        np.testing.assert_allclose(ratio, np.median(ratio), rtol=1e-3)
        factors.append(float(np.median(ratio)))
    assert np.ptp(np.log(factors)) > 0.1  # the batches do differ


def _detected_mean_shift(
    before: npt.NDArray[np.float32], after: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    detected = before > 0
    n = detected.sum(axis=0)
    return np.asarray((after * detected).sum(axis=0) / n - (before * detected).sum(axis=0) / n)


@pytest.mark.parametrize(("share", "correlated"), [(1.0, True), (0.0, False)])
def test_programmes_move_genes_together(
    logged: ExpressionMatrix, share: float, correlated: bool
) -> None:
    effect = BatchEffect(
        location_sd=0.2, scale_sd=0.0, library_sd=0.0, dropout=0.0,
        n_programmes=1, programme_share=share,
    )  # fmt: skip
    shifted = simulate_batches(logged, 2, seed=9, effect=effect)
    batch = np.array(shifted.labels("batch"))
    shifts = [
        _detected_mean_shift(logged.X[batch == b], shifted.X[batch == b])
        for b in ("batch_0", "batch_1")
    ]
    r = abs(np.corrcoef(shifts[0], shifts[1])[0, 1])
    assert r > 0.95 if correlated else r < 0.4


def test_refuses_what_is_not_log_expression(logged: ExpressionMatrix) -> None:
    counts = make_synthetic(50, 20, seed=0)
    with pytest.raises(ValueError, match="log1p"):
        simulate_batches(
            ExpressionMatrix(X=counts.X * 1e9, sample_ids=counts.sample_ids,
                             gene_ids=counts.gene_ids),
            seed=0,
        )  # fmt: skip
    with pytest.raises(ValueError, match="log1p"):
        simulate_batches(
            ExpressionMatrix(X=-logged.X, sample_ids=logged.sample_ids, gene_ids=logged.gene_ids),
            seed=0,
        )
    with pytest.raises(ValueError, match="already has"):
        simulate_batches(simulate_batches(logged, seed=0), seed=0)
    with pytest.raises(ValueError, match="reference"):
        simulate_batches(logged, 2, seed=0, reference=2)


def _classifier() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=1000))


def _per_batch(
    X: npt.NDArray[np.float32], batch: npt.NDArray[np.str_], *, scale: bool
) -> npt.NDArray[np.float64]:
    """Centre (and scale) every gene within each batch: ComBat without the shrinkage."""
    out = X.astype(np.float64)
    for b in np.unique(batch):
        rows = batch == b
        out[rows] -= out[rows].mean(axis=0)
        if scale:
            out[rows] /= out[rows].std(axis=0) + 1e-6
    return out


def _cross_batch(
    X: npt.NDArray[np.floating], y: npt.NDArray[np.str_], batch: npt.NDArray[np.str_]
) -> float:
    train, test = batch == "batch_0", batch == "batch_1"
    model = _classifier().fit(X[train], y[train])
    return float(balanced_accuracy_score(y[test], model.predict(X[test])))


def test_shift_costs_cross_batch_accuracy_and_combat_like_scaling_wins_it_back(
    pbmc: ExpressionMatrix,
) -> None:
    shifted = simulate_batches(pbmc, 2, seed=0, strength=1.5, stratify="bulk_labels")
    y, batch = np.array(pbmc.labels("bulk_labels")), np.array(shifted.labels("batch"))
    clean = _cross_batch(pbmc.X, y, batch)
    hurt = _cross_batch(shifted.X, y, batch)
    corrected = _cross_batch(_per_batch(shifted.X, batch, scale=True), y, batch)
    # measured with this seed: 0.64 clean, 0.58 shifted, 0.65 after per-batch standardising;
    # centring alone is not enough in general (seeds 1-3: 0.29-0.57), the scale matters too
    assert hurt < clean - 0.05
    assert corrected > hurt + 0.05
    assert corrected > clean - 0.03


def test_batch_is_told_from_shifted_profiles_until_centred(pbmc: ExpressionMatrix) -> None:
    shifted = simulate_batches(pbmc, 2, seed=0, stratify="bulk_labels")
    batch = np.array(shifted.labels("batch"))

    def batch_accuracy(X: npt.NDArray[np.floating]) -> float:
        return float(cross_val_score(_classifier(), X, batch, cv=3).mean())

    # measured: 0.48 (chance) on the real profiles, 1.0 shifted, 0.14 once centred (below chance:
    # a fold's held-out batch mean leans away from the training folds' mean)
    assert batch_accuracy(pbmc.X) < 0.6
    assert batch_accuracy(shifted.X) > 0.95
    assert batch_accuracy(_per_batch(shifted.X, batch, scale=False)) < 0.6
