from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.data.synthetic import make_synthetic
from training.evaluation.metrics import classification_metrics
from training.evaluation.splits import stratified_split
from training.nn.config import TrainConfig
from training.nn.encoders import AutoencoderConfig
from training.nn.heads import ClassifierHeadConfig
from training.train.apply import predict_labels, predict_proba
from training.train.finetune import finetune_classifier
from training.train.pretrain import pretrain, reconstruction_mse

pytestmark = pytest.mark.slow


def _setup(matrix: ExpressionMatrix) -> tuple[PreprocessPipeline, AutoencoderConfig]:
    pipe = PreprocessPipeline.fit(matrix, "counts")
    return pipe, AutoencoderConfig(n_genes=matrix.shape[1], hidden=(32,), latent=8, dropout=0.1)


def test_same_seed_same_weights(counts: ExpressionMatrix, quick: TrainConfig) -> None:
    pipe, cfg = _setup(counts)
    rng_before = torch.random.get_rng_state()
    a, hist_a = pretrain(counts, pipe, cfg, quick, progress=False)
    b, hist_b = pretrain(counts, pipe, cfg, quick, progress=False)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # caller's RNG untouched
    assert hist_a.val_loss == hist_b.val_loss
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    c, _ = pretrain(counts, pipe, cfg, dataclasses.replace(quick, seed=1), progress=False)
    assert not torch.equal(a.encoder[0].weight, c.encoder[0].weight)


def test_pretrain_learns_and_keeps_best(counts: ExpressionMatrix) -> None:
    pipe, cfg = _setup(counts)
    train_cfg = TrainConfig(epochs=40, batch_size=32, lr=3e-3, val_fraction=0.2, patience=5)
    model, history = pretrain(counts, pipe, cfg, train_cfg, progress=False)
    assert history.val_loss[history.best_epoch] == min(history.val_loss)
    assert history.best_val_loss < history.val_loss[0]
    assert len(history.train_loss) <= 40
    assert not model.training
    # the kept weights are the best epoch's: re-measuring the val set is not possible from
    # outside, but the whole-matrix error must sit well below the untrained variance (~1)
    assert reconstruction_mse(model, pipe, counts) < 0.9


def test_pretrain_checks_shapes(counts: ExpressionMatrix, quick: TrainConfig) -> None:
    pipe, cfg = _setup(counts)
    with pytest.raises(ValueError, match="n_genes"):
        pretrain(counts, pipe, dataclasses.replace(cfg, n_genes=5), quick)
    other = make_synthetic(20, 61, seed=1)
    with pytest.raises(ValueError, match="align them first"):
        pretrain(other, pipe, cfg, quick)


def test_finetune_learns_separable_labels(counts: ExpressionMatrix) -> None:
    train_idx, test_idx = stratified_split(counts.labels("label"), 0.25, seed=0)
    train, test = counts.take(train_idx), counts.take(test_idx)
    pipe, cfg = _setup(train)
    quick_pre = TrainConfig(epochs=15, batch_size=32, lr=3e-3, val_fraction=0.2, patience=5)
    ae, _ = pretrain(train, pipe, cfg, quick_pre, progress=False)
    before = [p.detach().clone() for p in ae.parameters()]
    head_cfg = ClassifierHeadConfig(n_in=8, n_classes=3)
    fine = TrainConfig(epochs=60, batch_size=32, lr=1e-2, val_fraction=0.2, patience=10)
    result = finetune_classifier(ae.encoder, pipe, train, "label", head_cfg, fine, progress=False)
    assert result.labels == ["type_0", "type_1", "type_2"]
    assert result.strategy == "frozen"
    assert all(torch.equal(p, q) for p, q in zip(before, ae.parameters(), strict=True))
    assert not set(result.val_sample_ids) & set(test.sample_ids)
    proba = predict_proba(ae.encoder, result.head, pipe, test)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    scores = classification_metrics(
        test.labels("label"), predict_labels(proba, result.labels), proba, result.labels
    )
    assert scores["balanced_accuracy"] > 0.9, scores


def test_finetune_rejects_bad_arguments(counts: ExpressionMatrix, quick: TrainConfig) -> None:
    pipe, cfg = _setup(counts)
    ae, _ = pretrain(counts, pipe, cfg, quick, progress=False)
    with pytest.raises(ValueError, match="n_classes=4 but there are 3"):
        finetune_classifier(ae.encoder, pipe, counts, "label", ClassifierHeadConfig(8, 4), quick)
    with pytest.raises(ValueError, match="strategy"):
        finetune_classifier(
            ae.encoder,
            pipe,
            counts,
            "label",
            ClassifierHeadConfig(8, 3),
            quick,
            strategy="everything",  # type: ignore[arg-type]
        )
    with pytest.raises(KeyError, match="no obs column"):
        finetune_classifier(ae.encoder, pipe, counts, "nope", ClassifierHeadConfig(8, 3), quick)


def test_stratified_split() -> None:
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    train, test = stratified_split(labels, 0.2, seed=0)
    assert len(test) == 20
    assert not set(train) & set(test)
    assert len(train) + len(test) == 100
    assert sorted(labels[i] for i in test).count("c") == 4
    again, _ = stratified_split(labels, 0.2, seed=0)
    assert np.array_equal(train, again)
    with pytest.raises(ValueError, match=r"fewer than 2 samples.*\['z'\]"):
        stratified_split([*labels, "z"], 0.2, seed=0)


def test_classification_metrics() -> None:
    truth = ["a", "a", "a", "b"]
    scores = classification_metrics(truth, ["a", "a", "b", "b"])
    assert scores["accuracy"] == 0.75
    assert scores["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert set(scores) == {"accuracy", "balanced_accuracy", "macro_f1"}
    proba = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.4, 0.6, 0.0], [0.1, 0.8, 0.1]])
    with_proba = classification_metrics(truth, ["a", "a", "b", "c"], proba, ["a", "b", "c"])
    assert with_proba["log_loss"] > 0
