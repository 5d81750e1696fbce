"""Fine-tuning strategies, regression heads, baselines and their served ONNX export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from app.inference.onnx import OnnxBackend
from contract.card import ModelCard, ModelKind, TrainingData
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.evaluation.baselines import baseline_names, baseline_proba, fit_baseline
from training.evaluation.metrics import (
    classification_metrics,
    predict_labels_from,
    regression_metrics,
)
from training.export.baseline import export_baseline
from training.export.graphs import CardInfo
from training.methods.options import FinetuneOptions
from training.nn.config import TrainConfig
from training.nn.heads import ClassifierHeadConfig, RegressorHeadConfig
from training.nn.variants import DenoisingAutoencoderConfig, build_autoencoder
from training.train.apply import predict_proba, predict_values
from training.train.finetune import finetune_classifier, finetune_regressor

pytestmark = pytest.mark.slow

FINE = TrainConfig(epochs=15, batch_size=32, lr=1e-2, val_fraction=0.2, patience=8)


@pytest.fixture(scope="module")
def setup(counts: ExpressionMatrix) -> tuple[PreprocessPipeline, torch.nn.Module]:
    pipe = PreprocessPipeline.fit(counts, "counts")
    torch.manual_seed(0)
    ae = build_autoencoder(DenoisingAutoencoderConfig(n_genes=60, hidden=(16, 8), latent=4))
    return pipe, ae.eval()


@pytest.mark.parametrize(
    ("options", "trained_layers"),
    [
        (FinetuneOptions("frozen"), 0),
        (FinetuneOptions("partial", unfreeze_top=1), 1),
        (FinetuneOptions("gradual"), 3),
        (FinetuneOptions("full", encoder_lr_scale=0.5), 3),
    ],
    ids=lambda v: getattr(v, "strategy", str(v)),
)
def test_strategies_train_what_they_say(
    counts: ExpressionMatrix,
    setup: tuple[PreprocessPipeline, torch.nn.Module],
    options: FinetuneOptions,
    trained_layers: int,
) -> None:
    pipe, ae = setup
    before = [p.detach().clone() for p in ae.encoder.parameters()]
    head = ClassifierHeadConfig(n_in=4, n_classes=3)
    result = finetune_classifier(ae.encoder, pipe, counts, "label", head, FINE, strategy=options)
    # the encoder passed in never changes
    assert all(torch.equal(p, q) for p, q in zip(before, ae.encoder.parameters(), strict=True))
    linears = [m for m in result.encoder.modules() if isinstance(m, torch.nn.Linear)]
    changed = [
        not torch.equal(m.weight, o)
        for m, o in zip(linears, before[::2], strict=True)  # weights, not biases
    ]
    assert sum(changed) == trained_layers
    if trained_layers == 1:
        assert changed[-1]  # the top layer, next to the embedding
    proba = predict_proba(result.encoder, result.head, pipe, counts)
    scores = classification_metrics(
        counts.labels("label"), predict_labels_from(proba, result.labels), proba, result.labels
    )
    assert scores["balanced_accuracy"] > 0.6, scores
    assert 0.5 < scores["auroc"] <= 1.0
    if options.strategy == "gradual":
        assert len(result.history.val_loss) >= 4  # one stage per layer plus the head-only stage


def test_options_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="strategy must be one of"):
        FinetuneOptions("all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unfreeze_top"):
        FinetuneOptions("partial", unfreeze_top=0)


def test_regressor_predicts_on_the_target_scale(
    counts: ExpressionMatrix, setup: tuple[PreprocessPipeline, torch.nn.Module]
) -> None:
    pipe, ae = setup
    # a target the expression determines: 100 + 10 × the first gene's standardised value
    signal = pipe.transform(counts.X)[:, 0]
    obs = counts.obs.assign(score=100 + 10 * signal)
    matrix = ExpressionMatrix(counts.X, counts.sample_ids, counts.gene_ids, obs)
    cfg = TrainConfig(epochs=80, batch_size=32, lr=1e-2, val_fraction=0.2, patience=15)
    result = finetune_regressor(
        ae.encoder, pipe, matrix, "score", RegressorHeadConfig(n_in=4), cfg, strategy="full"
    )
    pred = predict_values(result.encoder, result.head, pipe, matrix)
    scores = regression_metrics(obs["score"].to_numpy(), pred)
    assert abs(float(pred.mean()) - 100) < 3  # de-standardised into the head
    assert scores["spearman"] > 0.5, scores
    bad = ExpressionMatrix(
        counts.X, counts.sample_ids, counts.gene_ids, counts.obs.assign(score="high")
    )
    with pytest.raises(ValueError, match="not numeric"):
        finetune_regressor(ae.encoder, pipe, bad, "score", RegressorHeadConfig(n_in=4), cfg)


def test_regression_metrics() -> None:
    scores = regression_metrics([1, 2, 3, 4], [1.1, 1.9, 3.2, 3.9])
    assert scores["r2"] > 0.95
    assert scores["mae"] == pytest.approx(0.125)
    assert scores["spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="paired"):
        regression_metrics([1], [1])


def test_every_baseline_fits_and_predicts(counts: ExpressionMatrix) -> None:
    pipe = PreprocessPipeline.fit(counts, "counts")
    X, y = pipe.transform(counts.X), counts.labels("label")
    for name in baseline_names("classification"):
        model = fit_baseline(name, X[:180], y[:180], seed=0)
        proba = baseline_proba(model, X[180:])
        pred = predict_labels_from(proba, [str(c) for c in model.classes_])
        score = classification_metrics(y[180:], pred)["balanced_accuracy"]
        assert score > 0.6, (name, score)
    values = pd.Series(X[:, 0] * 2).to_numpy()
    for name in baseline_names("regression"):
        reg = fit_baseline(name, X, values, task="regression")
        assert regression_metrics(values, reg.predict(X))["spearman"] > 0.5, name
    with pytest.raises(ValueError, match="unknown classification baseline"):
        fit_baseline("svm", X, y)
    with pytest.raises(ValueError, match="240 samples but 3 targets"):
        fit_baseline("logistic", X, y[:3])


def _publish(
    models_dir: Path,
    counts: ExpressionMatrix,
    model: object,
    pipe: PreprocessPipeline,
    *,
    baseline: str,
    name: str,
    label_column: str,
) -> tuple[Path, ModelCard]:
    data = TrainingData(
        name="synthetic",
        fingerprint=counts.fingerprint(),
        n_samples=240,
        n_genes=60,
        label_column=label_column,
    )
    folder = export_baseline(
        model,
        pipe,
        baseline=baseline,
        name=name,
        models_dir=models_dir,
        info=CardInfo("test", data),
        reference=counts.X,
    )
    return folder, ModelCard.read(folder)


def _served(folder: Path, card: ModelCard, X: np.ndarray, output: str) -> np.ndarray:
    backend = OnnxBackend(folder, card, providers=["CPUExecutionProvider"], allow_cpu_fallback=True)
    try:
        return backend.run(X)[output]
    finally:
        backend.close()


@pytest.mark.parametrize("name", ["logistic", "random_forest"])
def test_baseline_is_served_like_a_neural_head(
    tmp_path: Path, counts: ExpressionMatrix, name: str
) -> None:
    pipe = PreprocessPipeline.fit(counts, "counts")
    model = fit_baseline(name, pipe.transform(counts.X), counts.labels("label"), seed=0)
    model_name = f"b-{name.replace('_', '-')}"
    folder, card = _publish(
        tmp_path, counts, model, pipe, baseline=name, name=model_name, label_column="label"
    )
    assert card.verify_files(folder) == []
    assert card.labels == ["type_0", "type_1", "type_2"]
    assert "baseline.json" in card.files
    served = _served(folder, card, counts.X[:50], "probabilities")
    want = model.predict_proba(pipe.transform(counts.X[:50]))
    np.testing.assert_allclose(served, want, atol=1e-4)
    # a logistic regression explains itself (integrated gradients); a forest cannot
    if name == "logistic":
        assert card.explain is not None
        assert {"explain.onnx", "baseline.npy"} <= set(card.files)
    else:
        assert card.explain is None
        assert "explain.onnx" not in card.files


@pytest.mark.parametrize("name", baseline_names("regression"))
def test_regression_baseline_is_served(tmp_path: Path, counts: ExpressionMatrix, name: str) -> None:
    pipe = PreprocessPipeline.fit(counts, "counts")
    X = pipe.transform(counts.X)
    target = 50 + 20 * X[:, 0] - 5 * X[:, 3]  # on its own scale, far from 0 ± 1
    model = fit_baseline(name, X, target, task="regression", seed=0)
    folder, card = _publish(
        tmp_path, counts, model, pipe, baseline=name, name="reg", label_column="score"
    )
    assert card.kind is ModelKind.regressor
    assert card.labels == ["score"]
    assert [(o.name, o.shape) for o in card.outputs] == [("prediction", ["batch", 1])]
    served = _served(folder, card, counts.X[:50], "prediction")
    want = model.predict(X[:50])
    np.testing.assert_allclose(served[:, 0], want, rtol=1e-5, atol=1e-3)
