"""Metrics, splits, the evaluation protocol (reduced) and its report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract.matrix import ExpressionMatrix
from training.evaluation.metrics import classification_metrics, confusion, per_class_report
from training.evaluation.splits import few_shot_sample, kfold_splits
from training.nn.config import TrainConfig
from training.protocol.config import ProtocolConfig
from training.protocol.run import run_protocol
from training.reporting.report import summarise, write_report

pytestmark = pytest.mark.slow


def test_auroc_binary_and_one_vs_rest() -> None:
    truth = ["a", "a", "b", "b"]
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]], dtype=np.float32)
    assert classification_metrics(truth, ["a", "a", "b", "b"], proba, ["a", "b"])["auroc"] == 1.0
    three = np.array(
        [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.05, 0.9, 0.05]], dtype=np.float32
    )
    scores = classification_metrics(["a", "b", "c", "a"], ["a", "b", "c", "b"], three, "abc")
    assert 0.5 < scores["auroc"] < 1.0
    # one class present: AUROC is undefined and left out rather than made up
    assert "auroc" not in classification_metrics(["a", "a"], ["a", "b"], three[:2], "abc")


def test_per_class_report_and_confusion() -> None:
    truth, pred = ["a", "a", "b", "c"], ["a", "b", "b", "c"]
    report = per_class_report(truth, pred, ["a", "b", "c"])
    assert report["a"]["recall"] == 0.5
    assert report["b"]["precision"] == 0.5
    assert report["c"]["support"] == 1
    assert confusion(truth, pred, ["a", "b", "c"]).tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_kfold_and_few_shot_splits() -> None:
    labels = ["a"] * 12 + ["b"] * 8
    folds = kfold_splits(labels, 4, seed=0)
    tested = np.sort(np.concatenate([test for _, test in folds]))
    assert tested.tolist() == list(range(20))
    assert all(not set(train) & set(test) for train, test in folds)
    with pytest.raises(ValueError, match=r"fewer than 10 samples.*\['b'\]"):
        kfold_splits(labels, 10, seed=0)
    draw = few_shot_sample(labels, 3, np.arange(20), seed=1)
    assert [labels[i] for i in draw].count("a") == 3
    assert len(draw) == 6
    assert np.array_equal(draw, few_shot_sample(labels, 3, np.arange(20), seed=1))
    with pytest.raises(ValueError, match=r"class 'b' has 2 samples in the pool, fewer than k=3"):
        few_shot_sample(labels, 3, np.arange(14), seed=0)


def test_reduced_protocol_and_report(tmp_path: Path, counts: ExpressionMatrix) -> None:
    import numpy as np

    log = ExpressionMatrix(np.log1p(counts.X), counts.sample_ids, counts.gene_ids, counts.obs)
    cfg = ProtocolConfig(
        label_column="label",
        min_cells=30,
        shots=(3, 6),
        repeats=2,
        folds=2,
        hidden=(16,),
        latent=4,
        baselines=("logistic",),
        pretrain=TrainConfig(epochs=5, batch_size=32, patience=2),
        finetune=TrainConfig(epochs=20, batch_size=32, lr=1e-2, patience=5),
    )
    result = run_protocol(log, cfg, progress=False)
    models = {"frozen", "scratch", "logistic"}
    assert {o.model for o in result.outcomes} == models
    # 2 repeats × 2 k + 2 folds, each model once per split
    assert len(result.outcomes) == 3 * (2 * 2 + 2)
    for o in result.outcomes:
        if o.protocol == "few_shot":
            assert len(o.y_true) == round(0.2 * 240)
    summary = summarise(result)
    assert set(summary) == {"k=3", "k=6", "cv"}
    assert summary["k=3"]["frozen"]["balanced_accuracy"][2] == 2
    path = write_report(result, tmp_path, title="test", data_note="synthetic")
    text = path.read_text()
    assert "| frozen |" in text
    assert "so no test row is seen" in text
    assert "## Against the best baseline (paired by split)" in text
    assert "## Why" in text
    for png in ("few_shot.png", "cv.png", "confusion.png", "pretrain_loss.png"):
        assert (tmp_path / png).stat().st_size > 1000, png
    # every model explained over the CV test samples: the networks and the (linear) baseline
    assert set(result.attributions) == models
    assert result.attributions["logistic"].method == "integrated_gradients"  # the clip
    assert sum(result.attributions["frozen"].counts.values()) == result.n_cells
    assert "## What drives each model" in text
    for model in models:
        assert f"### {model}" in text
        assert (tmp_path / f"attribution_{model}.png").stat().st_size > 1000


def test_protocol_refuses_too_few_classes(counts: ExpressionMatrix) -> None:
    with pytest.raises(ValueError, match="fewer than 2 classes have ≥ 500 cells"):
        run_protocol(counts, ProtocolConfig(label_column="label", min_cells=500))


def test_external_validation_aligns_and_scores() -> None:
    from contract.preprocess.pipeline import PreprocessPipeline
    from training.data.synthetic import make_synthetic
    from training.evaluation.baselines import baseline_proba, fit_baseline
    from training.evaluation.external import external_validation

    whole = make_synthetic(300, 50, n_classes=3, separation=2.0, seed=11)
    internal = whole.take(np.arange(200))
    pipe = PreprocessPipeline.fit(internal, "counts")
    model = fit_baseline("logistic", pipe.transform(internal.X), internal.labels("label"))
    labels = [str(c) for c in model.classes_]
    # the second set: other samples, 5 genes absent, genes in another order, one unknown class
    rest = whole.take(np.arange(200, 300))
    keep = rest.gene_ids[5:][::-1]
    obs = rest.obs.copy()
    obs.iloc[:3, obs.columns.get_loc("label")] = "novel"
    external = ExpressionMatrix(
        rest.X[:, [rest.gene_ids.index(g) for g in keep]], rest.sample_ids, keep, obs
    )
    result = external_validation(
        lambda m: baseline_proba(model, pipe.transform(m.X)), pipe, labels, external, "label"
    )
    assert result.panel_overlap == pytest.approx(0.9)
    assert result.missing_genes == rest.gene_ids[:5]
    assert result.unknown_classes == ["novel"]
    assert result.n_scored == 97
    assert result.metrics["balanced_accuracy"] > 0.8
    assert sum(map(sum, result.confusion)) == 97
    few = ExpressionMatrix(rest.X[:, :10], rest.sample_ids, rest.gene_ids[:10], rest.obs)
    with pytest.raises(ValueError, match="10 of the model's 50 genes"):
        external_validation(lambda m: baseline_proba(model, m.X), pipe, labels, few, "label")
