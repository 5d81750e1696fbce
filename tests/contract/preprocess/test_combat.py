from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contract.preprocess.combat import fit_combat
from contract.preprocess.steps import Log2p1, NormalizeTotal
from tests.contract.preprocess.oracle_data import pasilla

inmoose_combat = pytest.importorskip("inmoose.pycombat")
# inmoose builds np.matrix objects internally
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
# ... and divides by γ = 0 for a reference batch while checking convergence
oracle_warnings = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")


@pytest.fixture(scope="module")
def logcpm() -> tuple[np.ndarray, list[str], pd.DataFrame]:
    counts, annotation = pasilla(800)
    batch = annotation["type"].tolist()  # single-read vs paired-end: a real batch effect
    # log-CPM as a cpm, log2p1 recipe computes it; float64 from there on, as ComBat works
    logged = Log2p1().transform(NormalizeTotal(1e6).transform(counts.to_numpy(np.float32)))
    return logged.astype(np.float64), batch, annotation.reset_index(drop=True)


@oracle_warnings
@pytest.mark.parametrize("parametric", [True, False])
@pytest.mark.parametrize("reference", [None, "paired-end"])
def test_matches_pycombat_norm_on_pasilla(
    logcpm: tuple[np.ndarray, list[str], pd.DataFrame], parametric: bool, reference: str | None
) -> None:
    Y, batch, obs = logcpm
    _, ours = fit_combat(
        Y, batch, obs=obs, covariates=["condition"], reference=reference, parametric=parametric
    )
    covar = pd.DataFrame({"condition": obs["condition"].to_numpy()})
    oracle = np.asarray(
        inmoose_combat.pycombat_norm(
            Y.T, batch, covar_mod=covar, par_prior=parametric, ref_batch=reference
        )
    ).T
    np.testing.assert_allclose(ours, oracle, rtol=1e-9, atol=1e-9)
    if reference is not None:  # the reference batch is left exactly as it was
        rows = np.array(batch) == reference
        np.testing.assert_array_equal(ours[rows], Y[rows])


def _batches(seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    genes = 200
    base = rng.normal(6, 1, genes)
    shift = {"a": 0.0, "b": 1.0, "new": -1.5}
    scale = {"a": 1.0, "b": 1.5, "new": 0.6}
    rows, labels = [], []
    for name, n in (("a", 12), ("b", 12), ("new", 6)):
        noise = rng.normal(0, 0.5, (n, genes)) * scale[name]
        rows.append(base + shift[name] * rng.uniform(0.5, 1.5, genes) + noise)
        labels += [name] * n
    return np.vstack(rows), labels, base


def test_new_batch_is_brought_to_the_training_reference() -> None:
    Y, labels, _ = _batches(0)
    train = np.array(labels) != "new"
    model, corrected = fit_combat(Y[train], [b for b in labels if b != "new"], reference="a")
    np.testing.assert_allclose(model.transform(Y[train], labels[:24], None), corrected)
    new = Y[~train]
    adjusted, note = model.adjust_new_batch(new)
    assert "new batch of 6 samples" in note
    ref_mean = Y[np.array(labels) == "a"].mean(axis=0)
    before = np.abs(new.mean(axis=0) - ref_mean).mean()
    after = np.abs(adjusted.mean(axis=0) - ref_mean).mean()
    assert after < 0.2 * before
    ratio = adjusted.std(axis=0).mean() / Y[np.array(labels) == "a"].std(axis=0).mean()
    assert 0.8 < ratio < 1.25  # the 0.6× spread is restored to the reference's


def test_small_new_batches_and_a_single_sample() -> None:
    Y, labels, _ = _batches(1)
    train = np.array(labels) != "new"
    model, _ = fit_combat(Y[train], [b for b in labels if b != "new"])
    new = Y[~train]
    two, note = model.adjust_new_batch(new[:2])
    assert np.isfinite(two).all()
    assert "2 samples" in note
    one, note = model.adjust_new_batch(new[:1])
    assert note.startswith("single sample")
    # location only: the sample's deviations from its own mean keep their spread
    np.testing.assert_allclose(np.std(one - new[:1]), 0.0, atol=0.35)
    assert np.abs(one.mean() - Y[train].mean()) < np.abs(new[:1].mean() - Y[train].mean())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch": ["a"] * 4}, "≥ 2 batches"),
        ({"batch": ["a", "a", "a", "b"]}, r"batch sizes \{'a': 3, 'b': 1\}"),
        ({"reference": "zzz"}, "reference batch 'zzz'"),
        ({"covariates": ["cond"]}, "confounded"),
        ({"covariates": ["nope"]}, r"covariate columns \['nope'\]"),
    ],
)
def test_errors(kwargs: dict[str, object], message: str) -> None:
    Y = np.random.default_rng(0).normal(size=(4, 5))
    args: dict[str, object] = {
        "batch": ["a", "a", "b", "b"],
        "obs": pd.DataFrame({"cond": ["x", "x", "y", "y"]}),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        fit_combat(Y, **args)  # type: ignore[arg-type]


def test_unknown_batches_and_levels_are_refused() -> None:
    Y = np.random.default_rng(0).normal(size=(4, 5))
    obs = pd.DataFrame({"cond": ["x", "y", "x", "y"]})
    model, _ = fit_combat(Y, ["a", "a", "b", "b"], obs=obs, covariates=["cond"])
    with pytest.raises(ValueError, match=r"batches \['c'\] were not in training"):
        model.transform(Y, ["a", "a", "b", "c"], obs)
    with pytest.raises(ValueError, match=r"levels \['z'\] unseen"):
        model.adjust_new_batch(Y[:2], pd.DataFrame({"cond": ["x", "z"]}))
    with pytest.raises(ValueError, match="need per-sample metadata"):
        model.adjust_new_batch(Y[:2])
    Y[0, 0] = np.nan
    with pytest.raises(ValueError, match="complete data"):
        fit_combat(Y, ["a", "a", "b", "b"])
