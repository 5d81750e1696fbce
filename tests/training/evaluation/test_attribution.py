"""Gene attributions of the evaluation's models (training.evaluation.attribution)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.evaluation.attribution import (
    ALL_CLASSES,
    baseline_attribution,
    network_attribution,
)
from training.evaluation.baselines import fit_baseline
from training.nn.encoders import AutoencoderConfig, DenseAutoencoder
from training.nn.heads import ClassifierHead, ClassifierHeadConfig
from training.reporting.plots import plot_attribution
from training.reporting.tables import attribution_lines


@pytest.fixture(scope="module")
def log(counts: ExpressionMatrix) -> ExpressionMatrix:
    return ExpressionMatrix(np.log1p(counts.X), counts.sample_ids, counts.gene_ids, counts.obs)


def test_a_linear_baseline_is_attributed_exactly(log: ExpressionMatrix) -> None:
    pipe = PreprocessPipeline.fit(log, "log", clip=None)
    features = pipe.transform(log.X)
    model = fit_baseline("logistic", features[:200], log.labels("label")[:200])
    x, xt, truth = log.X[200:], features[200:], log.labels("label")[200:]
    a = baseline_attribution(model, pipe, x, xt, truth)
    assert a is not None
    assert a.method == "exact"
    assert a.genes == log.gene_ids
    # by hand: |(x − x0) ⊙ coef[predicted] / scale|, averaged over each predicted class
    predicted = model.predict(xt)
    coef, scale = np.asarray(model.coef_), pipe.steps[-1].scale
    for label, mean in a.means().items():
        k = list(model.classes_).index(label)
        rows = predicted == label
        want = np.abs((x[rows] - pipe.input_mean) * (coef[k] / scale)).mean(axis=0)
        np.testing.assert_allclose(mean, want, rtol=1e-4, atol=1e-6)
        assert a.counts[label] == rows.sum()
    top = a.top(a.means().__iter__().__next__(), 3)
    assert len(top) == 3
    assert top[0][1] >= top[1][1] >= top[2][1]


def test_a_forest_gets_permutation_importance(log: ExpressionMatrix) -> None:
    # the label is gene 5 alone: shuffling it, and only it, costs accuracy
    X = np.random.default_rng(0).gamma(2.0, size=(240, 12)).astype(np.float32)
    labels = np.where(X[:, 5] > np.median(X[:, 5]), "high", "low")
    obs = log.obs.assign(label=labels)
    matrix = ExpressionMatrix(X, log.sample_ids, log.gene_ids[:12], obs)
    pipe = PreprocessPipeline.fit(matrix, "log")
    features = pipe.transform(X)
    model = fit_baseline("random_forest", features[:160], list(labels[:160]))
    args = (model, pipe, X[160:], features[160:], list(labels[160:]))
    assert baseline_attribution(*args, permutation=False) is None
    a = baseline_attribution(*args)
    assert a is not None
    assert a.method == "permutation_importance"
    assert list(a.means()) == [ALL_CLASSES]
    importance = a.means()[ALL_CLASSES]
    assert importance.shape == (12,)
    assert int(np.argmax(importance)) == 5
    assert importance[5] > 0.2
    assert a.top(ALL_CLASSES, 1)[0][0] == log.gene_ids[5]


def test_network_attribution_and_its_report(log: ExpressionMatrix, tmp_path: Path) -> None:
    pipe = PreprocessPipeline.fit(log, "log")
    torch.manual_seed(0)
    encoder = DenseAutoencoder(AutoencoderConfig(n_genes=60, hidden=(8,), latent=4)).encoder
    head = ClassifierHead(ClassifierHeadConfig(n_in=4, n_classes=3))
    labels = ["type_0", "type_1", "type_2"]
    first = network_attribution(encoder, head, labels, pipe, log.X[:20])
    second = network_attribution(encoder, head, labels, pipe, log.X[20:40])
    assert first.method == "integrated_gradients"
    pooled_counts = {c: first.counts.get(c, 0) + second.counts.get(c, 0) for c in labels}
    first.merge(second)
    assert {c: first.counts.get(c, 0) for c in labels} == pooled_counts
    assert sum(first.counts.values()) == 40
    assert all(np.all(m >= 0) for m in first.means().values())

    class Result:  # what attribution_lines reads of a ProtocolResult
        def __init__(self) -> None:
            self.attributions = {"transfer": first}

    lines = attribution_lines(Result(), ["transfer", "other"])  # type: ignore[arg-type]
    assert lines[0] == "### transfer"
    assert "integrated gradients" in lines[2]
    assert sum(line.startswith("| type_") for line in lines) == len(first.sums)
    png = plot_attribution("transfer", first, tmp_path)
    assert png.name == "attribution_transfer.png"
    assert png.stat().st_size > 1000
