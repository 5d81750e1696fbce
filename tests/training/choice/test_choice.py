"""The automatic choice: inner folds, every candidate scored, the best one published and served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from contract.card import CandidateScore, ModelCard
from contract.matrix import ExpressionMatrix
from contract.vocab import BASELINES, REGRESSION_BASELINES
from tests.training.choice.conftest import QUICK, problem_on, publish_chosen
from training.choice import candidates as cands
from training.choice.auto import (
    BASELINES_SIMPLEST_FIRST,
    choose,
    one_se_rule,
    paired_se,
    reason,
    simplest_first,
    warnings,
)
from training.choice.inner import inner_folds
from training.data.synthetic import make_synthetic
from training.evaluation.splits import Dataset, hold_out
from training.methods.options import FinetuneOptions


def _target(n: int, seed: int, separation: float = 2.0) -> ExpressionMatrix:
    return make_synthetic(n, 40, n_classes=3, separation=separation, seed=seed)


def test_the_published_model_is_the_simplest_within_one_standard_error_of_the_best(
    encoder: Path, tmp_path: Path
) -> None:
    data = hold_out("target", _target(90, 11), test_fraction=0.2, seed=0, stratify_by="label")
    candidates = ["frozen", "full", "logistic", "random_forest"]
    run = publish_chosen(encoder, data, tmp_path, "chosen", QUICK, candidates=candidates)
    card = ModelCard.read(run.folder)
    assert card.selection is not None
    assert card.selection == run.selection
    by = {c.name: c for c in card.selection.candidates}
    assert set(by) == {"frozen", "full", "logistic", "random_forest"}
    # the rule the choice exists for: no simpler candidate scored above what was published, and
    # the best scored above it by no more than the noise (one standard error, paired)
    published, best = by[card.selection.winner], max(by.values(), key=lambda c: c.mean)
    order = ["logistic", "random_forest", "frozen", "full"]
    simpler = order[: order.index(published.name)]
    assert all(by[name].mean <= published.mean for name in simpler)
    assert best.mean - published.mean <= paired_se(best, published)
    if published.mean < best.mean:
        assert "one-standard-error rule" in card.selection.reason
    assert not card.selection.forced
    assert card.selection.warnings == []
    assert all(len(c.folds) == 30 for c in card.selection.candidates)  # 72 samples: 5 folds × 6
    assert card.selection.winner in card.selection.reason
    inner = [m for m in card.metrics if m.split == "inner_cv"]
    assert [m.name for m in inner] == ["balanced_accuracy"]
    assert inner[0].value == published.mean
    assert {m.name for m in card.metrics if m.split == "test"} >= {"balanced_accuracy"}


def test_a_baseline_that_wins_is_published_and_served_through_onnx(
    encoder: Path, tmp_path: Path
) -> None:
    # a class is one gene's level: the 4-wide encoder trained on other data loses it, a linear
    # model on the preprocessed genes does not
    rng = np.random.default_rng(3)
    X = rng.poisson(20.0, size=(60, 40)).astype(np.float32)
    labels = np.array(["a", "b"] * 30)
    X[labels == "b", 7] += 200.0
    m = ExpressionMatrix(
        X=X,
        sample_ids=[f"s{i}" for i in range(60)],
        gene_ids=[f"gene{j}" for j in range(40)],
        obs=pd.DataFrame({"label": labels}, index=[f"s{i}" for i in range(60)]),
    )
    enc_genes = ModelCard.read(encoder).panel.ids
    m = ExpressionMatrix(X=m.X, sample_ids=m.sample_ids, gene_ids=enc_genes, obs=m.obs)
    data = hold_out("target", m, test_fraction=0.2, seed=0, stratify_by="label")
    run = publish_chosen(
        encoder, data, tmp_path, "baseline-wins", QUICK, candidates=["frozen", "logistic"]
    )
    assert run.kind == "baseline"
    assert run.selection.winner == "logistic"
    assert "no transfer strategy did better" in run.selection.reason
    card = ModelCard.read(run.folder)
    assert card.parent is not None
    assert card.parent.name == "enc"
    assert card.labels == ["a", "b"]
    session = ort.InferenceSession(str(run.folder / "model.onnx"))
    (proba,) = session.run(["probabilities"], {"expression": data.test.X})
    predicted = np.array(card.labels)[proba.argmax(axis=1)]
    assert (predicted == np.array(data.test.labels("label"))).mean() == 1.0
    assert run.scores["balanced_accuracy"] == 1.0


def test_a_named_strategy_is_published_and_warned_about_when_a_baseline_beats_it(
    encoder: Path,
) -> None:
    problem = problem_on(encoder, _target(60, 12))
    pool = [cands.transfer(FinetuneOptions("frozen")), cands.baseline("logistic")]
    choice = choose(problem, pool, forced="frozen")
    assert choice.winner.name == "frozen"
    assert choice.selection.forced
    by = {c.name: c for c in choice.selection.candidates}
    if by["logistic"].mean > by["frozen"].mean:
        assert len(choice.selection.warnings) == 1
        assert "logistic" in choice.selection.warnings[0]
    else:
        assert choice.selection.warnings == []


def test_warnings_and_reason_follow_the_numbers() -> None:
    low = CandidateScore(name="frozen", kind="transfer", mean=0.6, sd=0.01, folds=[0.6, 0.61, 0.59])
    high = CandidateScore(
        name="logistic", kind="baseline", mean=0.9, sd=0.01, folds=[0.9, 0.91, 0.89]
    )
    (warning,) = warnings(low, [low, high], "balanced_accuracy")
    assert "logistic" in warning
    assert "0.900" in warning
    assert "'auto'" in warning
    assert warnings(high, [low, high], "balanced_accuracy") == []
    clear = reason(high, [low, high], "balanced_accuracy", forced=False)
    assert "clear margin" in clear
    assert "higher in 3 of 3 folds" in clear
    close = CandidateScore(
        name="frozen", kind="transfer", mean=0.899, sd=0.05, folds=[0.95, 0.85, 0.897]
    )
    noisy = reason(high, [close, high], "balanced_accuracy", forced=False)
    assert "noise" in noisy
    assert noisy != clear


def _score(name: str, folds: list[float], kind: str = "baseline") -> CandidateScore:
    return CandidateScore(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        mean=float(np.mean(folds)),
        sd=float(np.std(folds, ddof=1)),
        folds=folds,
    )


def test_the_one_standard_error_rule_takes_the_simplest_candidate_within_the_noise() -> None:
    ridge = _score("ridge", [0.70, 0.80, 0.75, 0.65])
    forest = _score("random_forest", [0.72, 0.78, 0.80, 0.66])  # +0.015, paired SE 0.013
    clear = _score("random_forest", [0.80, 0.90, 0.85, 0.75])  # +0.1 in every fold
    assert one_se_rule([ridge, forest]).name == "random_forest"
    wider = _score("random_forest", [0.74, 0.76, 0.81, 0.64])  # +0.0125, paired SE 0.019
    assert one_se_rule([ridge, wider]).name == "ridge"
    assert one_se_rule([ridge, clear]).name == "random_forest"
    # equal fold scores: the simpler one
    assert one_se_rule([ridge, _score("logistic", ridge.folds)]).name == "ridge"
    # a complex candidate inside the band never beats a simpler one with a higher mean
    full = _score("full", [0.90, 0.85, 0.95, 0.80], "transfer")  # the best
    frozen = _score("frozen", [1.0, 0.1, 1.0, 0.7], "transfer")  # noisy: within its band...
    steady = _score("ridge", [0.72, 0.70, 0.74, 0.70])  # ...but below ridge, outside the band
    assert paired_se(full, frozen) >= full.mean - frozen.mean
    assert full.mean - steady.mean > paired_se(full, steady)
    assert one_se_rule([steady, frozen, full]).name == "full"


def test_simplest_first_orders_baselines_by_regularisation_then_transfer_then_tuned() -> None:
    assert set(BASELINES_SIMPLEST_FIRST) == set(BASELINES) | set(REGRESSION_BASELINES)
    pool = [
        cands.transfer(FinetuneOptions("full", adaptation="mmd")),
        cands.transfer(FinetuneOptions("full")),
        cands.Candidate(cands.TUNED, "transfer", options=FinetuneOptions("frozen")),
        cands.transfer(FinetuneOptions("frozen")),
        cands.baseline("random_forest"),
        cands.baseline("logistic"),
        cands.baseline("ridge"),
    ]
    assert simplest_first(pool) == [
        "ridge", "logistic", "random_forest", "frozen", "full", "full+mmd", "tuned",
    ]  # fmt: skip


def test_two_samples_per_class_get_repeated_two_fold_cv(encoder: Path) -> None:
    small = _target(60, 13)
    lab = np.array(small.labels("label"))
    m = small.take(np.sort(np.concatenate([np.flatnonzero(lab == c)[:2] for c in set(lab)])))
    cv = inner_folds(problem_on(encoder, m), seed=0)
    assert len(cv.folds) == 30  # 6 samples: INNER_SCORES asks for 30 fold scores
    assert "2-fold" in cv.protocol
    assert "repeated 15 times" in cv.protocol
    for train_idx, _ in cv.folds:
        assert len(set(np.array(m.labels("label"))[train_idx])) == 3  # every class trains
    choice = choose(
        problem_on(encoder, m), [cands.transfer(FinetuneOptions()), cands.baseline("logistic")]
    )
    assert len(choice.selection.candidates[0].folds) == 30


def test_inner_cv_refuses_a_class_with_one_sample(encoder: Path) -> None:
    m = _target(30, 14)
    lab = np.array(m.labels("label"))
    first = np.flatnonzero(lab == lab[0])[:1]
    rest = np.flatnonzero(lab != lab[0])
    with pytest.raises(ValueError, match="≥ 2 samples each"):
        inner_folds(problem_on(encoder, m.take(np.sort(np.concatenate([first, rest])))), seed=0)


def test_candidate_names_parse_or_say_what_exists() -> None:
    base = FinetuneOptions()
    assert cands.parse("full+dann", "classification", base).options == FinetuneOptions(
        "full", adaptation="dann"
    )
    assert cands.parse("logistic", "classification", base).kind == "baseline"
    with pytest.raises(ValueError, match="unknown candidate 'best'"):
        cands.parse("best", "classification", base)
    with pytest.raises(ValueError, match="not one adaptation"):
        cands.parse("full+dann+mmd", "classification", base)
    with pytest.raises(ValueError, match="must train"):
        cands.parse("frozen+dann", "classification", base)
    names = [
        c.name
        for c in cands.default_candidates("classification", base, unlabelled=True, domains=False)
    ]
    assert names == [
        "frozen", "full", "full+dann", "full+mmd", "frozen+pseudo_label",
        "logistic", "ridge", "random_forest",
    ]  # fmt: skip
    plain = cands.default_candidates("regression", base, unlabelled=False, domains=False)
    assert [c.name for c in plain] == ["frozen", "full", "ridge", "elastic_net", "random_forest"]


def test_regression_chooses_by_r2(encoder: Path, tmp_path: Path) -> None:
    m = _target(60, 15)
    target = m.X[:, 3] / (m.X.sum(axis=1) + 1) * 100
    obs = m.obs.assign(label=[f"{v:.5f}" for v in target])
    m = ExpressionMatrix(X=m.X, sample_ids=m.sample_ids, gene_ids=m.gene_ids, obs=obs)
    data = hold_out("target", m, test_fraction=0.2, seed=0, stratify_by=None)
    run = publish_chosen(
        encoder, data, tmp_path, "reg", QUICK, candidates=["frozen", "ridge"], task="regression"
    )
    assert run.selection.metric == "r2"
    by = {c.name: c for c in run.selection.candidates}
    # the same rule by R²: ridge (simpler) unless frozen beats it by over one standard error
    expected = one_se_rule([by["ridge"], by["frozen"]])
    assert run.selection.winner == expected.name
    assert "r²" in run.selection.reason.lower()


def test_a_head_published_before_the_choice_gets_its_comparison_recorded(
    encoder: Path, tmp_path: Path
) -> None:
    """tools/add_selection.py: the version's strategy against logistic regression on inner
    folds of exactly its training samples, written into its card; its files are untouched."""
    from tools.add_selection import add_selection

    target = _target(60, 16)
    data = hold_out("target", target, test_fraction=0.2, seed=0, stratify_by="label")
    run = _head(encoder, data)
    assert ModelCard.read(run.folder).selection is None
    card = add_selection(run.folder, target, "label")
    assert card.selection is not None
    assert [c.name for c in card.selection.candidates] == ["frozen", "logistic"]
    assert card.selection.forced
    assert len(card.selection.candidates[0].folds) == 30  # 48 training samples: 5 folds × 6
    assert ModelCard.read(run.folder) == card
    assert card.verify_files(run.folder) == []
    with pytest.raises(ValueError, match="already records a selection"):
        add_selection(run.folder, target, "label")
    other = hold_out("x", _target(60, 17), test_fraction=0.2, seed=0, stratify_by="label")
    run2 = _head(encoder, other)
    with pytest.raises(ValueError, match="not the data its card names"):
        add_selection(run2.folder, target, "label")


def _head(encoder: Path, data: Dataset) -> Any:
    """A frozen head published the way versions were before the automatic choice."""
    from training.publish.head import finetune_and_export

    return finetune_and_export(
        data,
        encoder_folder=encoder,
        label_column="label",
        head_hidden=(),
        head_dropout=0.0,
        train_cfg=QUICK,
        name="old",
        models_dir=encoder.parent.parent,
        description="published before the choice",
        progress=False,
    )
