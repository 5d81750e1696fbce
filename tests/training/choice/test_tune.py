"""Hyperparameter search: seeded, pruned, on training samples only, recorded in the card."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from contract import defaults
from contract.card import CandidateScore, ModelCard, Spread, Tuning
from contract.matrix import ExpressionMatrix
from tests.training.choice.conftest import problem_on, publish_chosen
from training.choice import candidates as cands
from training.choice import inner
from training.choice.auto import reason
from training.choice.tune import TuneSettings, tune
from training.data.synthetic import make_synthetic
from training.evaluation.splits import Dataset, hold_out
from training.methods.options import FinetuneOptions
from training.nn.checkpoint import load_checkpoint
from training.nn.config import TrainConfig
from training.publish.chosen import ChosenRun

QUICK = TrainConfig(epochs=6, batch_size=32, lr=3e-3, val_fraction=0.2, patience=3, seed=0)
# a trial that learns next to nothing: a linear head on the frozen encoder, the smallest
# learning rate, one epoch, strong decay and half its inputs dropped
BAD = {
    "strategy": "frozen",
    "lr": 1e-4,
    "weight_decay": 0.1,
    "head_width": 0,
    "head_dropout": 0.5,
    "epochs": 1,
    "patience": 1,
}
# and one that learns: the whole network at a high rate (the small encoder, pretrained on other
# data for 3 epochs, leaves a head on its frozen embedding near chance); 0.87 in these folds
GOOD = {
    "strategy": "full",
    "lr": 2e-2,
    "weight_decay": 1e-4,
    "head_width": 64,
    "head_dropout": 0.0,
    "epochs": 6,
    "patience": 3,
    "encoder_lr_scale": 1.0,
}


@pytest.fixture(autouse=True)
def few_folds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three inner folds, not repeated: the search's logic, at a test's cost."""
    monkeypatch.setattr(defaults, "INNER_FOLDS", 3)
    monkeypatch.setattr(defaults, "INNER_SCORES", ((10**6, 3),))


def _problem(encoder: Path, matrix: ExpressionMatrix) -> cands.Problem:
    return problem_on(encoder, matrix, train_cfg=QUICK)


def _target(n: int = 45) -> ExpressionMatrix:
    return make_synthetic(n, 40, n_classes=3, separation=2.0, seed=11)


def test_the_same_seed_gives_the_same_study(encoder: Path) -> None:
    problem = _problem(encoder, _target())
    settings = TuneSettings(trials=3, seed=4)
    first, second = tune(problem, settings), tune(problem, settings)
    assert first.record == second.record


def test_the_best_trial_is_the_candidate_the_search_returns(encoder: Path) -> None:
    tuned = tune(_problem(encoder, _target()), TuneSettings(trials=3, seed=4))
    params = tuned.record.best_params
    assert (tuned.options.strategy, tuned.train_cfg.lr, tuned.train_cfg.epochs) == (
        params["strategy"],
        params["lr"],
        params["epochs"],
    )
    assert tuned.head_hidden == ((params["head_width"],) if params["head_width"] else ())


def test_the_first_trial_is_the_problems_own_settings(encoder: Path) -> None:
    seen: list[tuple[int, str, float | None]] = []
    tuned = tune(
        _problem(encoder, _target()),
        TuneSettings(trials=1, seed=4),
        on_trial=lambda *trial: seen.append(trial),
    )
    assert tuned.record.best_params == {
        "strategy": "frozen",
        "lr": QUICK.lr,
        "weight_decay": QUICK.weight_decay,
        "head_width": 0,
        "head_dropout": 0.0,
        "epochs": QUICK.epochs,
        "patience": QUICK.patience,
    }
    assert [state for _, state, _ in seen] == ["complete"]


def test_a_trial_built_to_be_bad_is_pruned(encoder: Path) -> None:
    seen: list[tuple[int, str, float | None]] = []
    tuned = tune(
        _problem(encoder, _target()),
        TuneSettings(trials=3, seed=0, startup_trials=2),
        first=[GOOD, {**GOOD, "head_width": 32}, BAD],
        on_trial=lambda *trial: seen.append(trial),
    )
    assert [state for _, state, _ in seen] == ["complete", "complete", "pruned"]
    assert (tuned.record.complete, tuned.record.pruned) == (2, 1)


def _failing(monkeypatch: pytest.MonkeyPatch, error: Exception, lr: float | None = None) -> None:
    """Fits with learning rate `lr` (every fit when None) raise `error`."""
    real = inner.fit_predict

    def fit(candidate: cands.Candidate, *args: Any, **kwargs: Any) -> cands.Prediction:
        if lr is None or (candidate.train_cfg is not None and candidate.train_cfg.lr == lr):
            raise error
        return real(candidate, *args, **kwargs)

    monkeypatch.setattr(inner, "fit_predict", fit)


def test_a_trial_that_diverges_fails_and_the_search_goes_on(
    encoder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing(monkeypatch, RuntimeError("the validation loss was never finite"), lr=BAD["lr"])
    seen: list[tuple[int, str, float | None]] = []
    tuned = tune(
        _problem(encoder, _target()),
        TuneSettings(trials=2),
        first=[BAD, GOOD],
        on_trial=lambda *trial: seen.append(trial),
    )
    assert [state for _, state, _ in seen] == ["fail", "complete"]
    assert (tuned.record.failed, tuned.record.complete) == (1, 1)


def test_a_search_where_every_trial_fails_says_why(
    encoder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing(monkeypatch, RuntimeError("the validation loss was never finite"))
    with pytest.raises(ValueError, match="completed no trial: the validation loss was never"):
        tune(_problem(encoder, _target()), TuneSettings(trials=2))


class Cancelled(Exception):
    """What a job's watcher raises to stop training."""


def test_a_cancellation_ends_the_search(encoder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing(monkeypatch, Cancelled("job cancelled"))
    with pytest.raises(Cancelled):
        tune(_problem(encoder, _target()), TuneSettings(trials=3))


def test_the_spread_is_over_the_completed_trials(encoder: Path) -> None:
    seen: list[tuple[int, str, float | None]] = []
    tuned = tune(
        _problem(encoder, _target()),
        TuneSettings(trials=3, seed=2),
        on_trial=lambda *trial: seen.append(trial),
    )
    values = sorted(v for _, state, v in seen if state == "complete" and v is not None)
    spread = tuned.record.spread
    assert (spread.min, spread.median, spread.max) == (values[0], values[1], values[-1])
    assert tuned.record.best_value == values[-1]


def test_a_timeout_stops_the_search(encoder: Path) -> None:
    tuned = tune(_problem(encoder, _target()), TuneSettings(trials=200, timeout_s=0.01))
    assert tuned.record.complete + tuned.record.pruned == 1


def test_adaptation_is_searched_only_with_rows_without_a_label(encoder: Path) -> None:
    problem = _problem(encoder, _target())
    with_rows = cands.Problem(**{**problem.__dict__, "unlabelled": _target(12)})
    first = [{**GOOD, "strategy": "full", "adaptation": "mmd", "adaptation_weight": 0.5}]
    tuned = tune(with_rows, TuneSettings(trials=1), first=first)
    assert (tuned.options.adaptation, tuned.options.adaptation_weight) == ("mmd", 0.5)
    plain = tune(problem, TuneSettings(trials=1), first=first)
    assert plain.options.adaptation == "none"


def test_a_regression_is_tuned_by_r2(encoder: Path) -> None:
    m = _target(45)
    target = m.X[:, 3] / (m.X.sum(axis=1) + 1) * 100
    obs = m.obs.assign(label=[f"{v:.5f}" for v in target])
    m = ExpressionMatrix(X=m.X, sample_ids=m.sample_ids, gene_ids=m.gene_ids, obs=obs)
    problem = cands.Problem(**{**_problem(encoder, m).__dict__, "task": "regression"})
    tuned = tune(problem, TuneSettings(trials=2, seed=0))
    assert "mean r2" in tuned.record.protocol


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"trials": 0}, "trials must be between 1 and 200, got 0"),
        ({"trials": 201}, "trials must be between 1 and 200, got 201"),
        ({"timeout_s": 0.0}, "timeout must be a positive number of seconds, got 0.0"),
        ({"timeout_s": float("nan")}, "timeout must be a positive number of seconds, got nan"),
        ({"startup_trials": -1}, "startup_trials must be >= 0, got -1"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TuneSettings(**settings)


@dataclass
class Published:
    """A choice with a search, and every sample id a fit or a prediction was given."""

    run: ChosenRun
    dataset: Dataset
    fitted: set[str]
    predicted: set[str]


@pytest.fixture(scope="module")
def published(encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Published:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(defaults, "INNER_FOLDS", 3)
        patch.setattr(defaults, "INNER_SCORES", ((10**6, 3),))
        fitted: set[str] = set()
        predicted: set[str] = set()
        real = inner.fit_predict

        def spy(
            candidate: cands.Candidate,
            problem: cands.Problem,
            train_idx: npt.NDArray[np.int64],
            test_idx: npt.NDArray[np.int64],
            **kwargs: Any,
        ) -> cands.Prediction:
            ids = np.asarray(problem.matrix.sample_ids)
            fitted.update(ids[train_idx].tolist())
            predicted.update(ids[test_idx].tolist())
            return real(candidate, problem, train_idx, test_idx, **kwargs)

        patch.setattr(inner, "fit_predict", spy)
        data = hold_out("target", _target(60), test_fraction=0.25, seed=0, stratify_by="label")
        run = publish_chosen(
            encoder,
            data,
            tmp_path_factory.mktemp("published"),
            "tuned",
            QUICK,
            candidates=["frozen", "logistic"],
            tune=TuneSettings(trials=2, seed=1),
        )
    return Published(run, data, fitted, predicted)


def test_the_search_and_the_choice_see_only_training_samples(published: Published) -> None:
    seen = published.fitted | published.predicted
    assert seen == set(published.dataset.train.sample_ids)


def test_no_test_sample_reaches_a_fit(published: Published) -> None:
    seen = published.fitted | published.predicted
    assert seen.isdisjoint(published.dataset.test.sample_ids)


def test_the_card_records_the_study(published: Published) -> None:
    card = ModelCard.read(published.run.folder)
    assert card.selection is not None
    assert card.selection.tuning is not None
    assert card.selection.tuning == published.run.selection.tuning
    assert (card.selection.tuning.trials, card.selection.tuning.seed) == (2, 1)


def test_the_tuned_candidate_is_scored_beside_the_others(published: Published) -> None:
    names = [c.name for c in published.run.selection.candidates]
    assert names == ["frozen", "logistic", "tuned"]


def test_a_named_strategy_with_a_search_publishes_it_tuned(encoder: Path, tmp_path: Path) -> None:
    data = hold_out("target", _target(60), test_fraction=0.25, seed=0, stratify_by="label")
    tuning = TuneSettings(trials=2, seed=3)
    run = publish_chosen(encoder, data, tmp_path, "tuned-full", QUICK, strategy="full", tune=tuning)
    assert run.selection.tuning is not None
    params = run.selection.tuning.best_params
    checkpoint = load_checkpoint(run.folder)
    published = checkpoint.extra
    assert (run.selection.winner, params["strategy"]) == ("tuned", "full")
    assert run.selection.reason.startswith("tuned (the named strategy, its settings searched)")
    assert published["strategy"] == "full"
    assert published["train_config"]["lr"] == params["lr"]
    assert published["train_config"]["epochs"] == params["epochs"]
    width = params["head_width"]
    head = checkpoint.parts["head"].config  # type: ignore[attr-defined]
    assert (head.hidden, head.dropout) == ((width,) if width else (), params["head_dropout"])


def test_a_tuned_winner_is_said_to_be_optimistic() -> None:
    tuned = CandidateScore(name="tuned", kind="transfer", mean=0.8, sd=0.1, folds=[0.7, 0.9])
    rival = CandidateScore(name="logistic", kind="baseline", mean=0.7, sd=0.1, folds=[0.6, 0.8])
    record = Tuning(
        trials=5,
        seed=0,
        complete=4,
        pruned=1,
        best_value=0.82,
        best_params={"strategy": "full"},
        spread=Spread(min=0.5, median=0.7, max=0.82),
        protocol="test",
    )
    said = reason(tuned, [tuned, rival], "balanced_accuracy", forced=False, tuning=record)
    assert "the best of 5 trials of a search on these same training samples" in said


def test_tuned_is_a_reserved_name() -> None:
    with pytest.raises(ValueError, match="unknown candidate 'tuned'"):
        cands.parse("tuned", "classification", FinetuneOptions())
