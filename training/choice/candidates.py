"""The models a choice compares: transfer strategies (with their methods) and classical baselines.

A candidate is fitted on some rows of a `Problem` and predicts others: the inner cross-validation
(`training.choice.inner`) and the final refit call the same `fit_predict`, so the score a
candidate is chosen by comes from exactly the code that trains what is published.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from torch import nn

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from contract.vocab import SemiSupervision, Task, parse_candidate
from training.evaluation.baselines import baseline_proba, fit_baseline
from training.methods.options import FinetuneOptions
from training.nn.config import TrainConfig
from training.nn.heads import ClassifierHeadConfig, RegressorHeadConfig
from training.train.apply import numeric_target, predict_proba, predict_values
from training.train.finetune import finetune_classifier, finetune_regressor

# the classical models every choice includes: regularised logistic regression (C = 1 and the
# strongly regularised C = 0.01) and a random forest; ridge, elastic net and a forest to regress
CLASSIFIER_BASELINES = ("logistic", "ridge", "random_forest")
REGRESSOR_BASELINES = ("ridge", "elastic_net", "random_forest")

Kind = Literal["transfer", "baseline"]

# the candidate a hyperparameter search adds (`training.choice.tune`); no strategy or baseline
# is called this, so `parse` never makes it
TUNED = "tuned"


@dataclass(frozen=True)
class Candidate:
    """A transfer strategy with its methods (`options`), or a scikit-learn baseline.

    A transfer candidate trains with the problem's head and optimisation unless it carries its
    own (`train_cfg`, `head_hidden`, `head_dropout`: the tuned candidate's).
    """

    name: str
    kind: Kind
    options: FinetuneOptions | None = None
    baseline: str | None = None
    train_cfg: TrainConfig | None = None
    head_hidden: tuple[int, ...] | None = None
    head_dropout: float | None = None

    def head(self, problem: Problem) -> tuple[tuple[int, ...], float, TrainConfig]:
        """The head (hidden widths, dropout) and optimisation this candidate trains with."""
        return (
            problem.head_hidden if self.head_hidden is None else self.head_hidden,
            problem.head_dropout if self.head_dropout is None else self.head_dropout,
            problem.train_cfg if self.train_cfg is None else self.train_cfg,
        )


def transfer(options: FinetuneOptions) -> Candidate:
    """A transfer candidate, named strategy[+adaptation][+semi-supervision]."""
    parts: list[str] = [options.strategy]
    parts += [options.adaptation] if options.adaptation != "none" else []
    parts += [options.semi_supervised] if options.semi_supervised != "none" else []
    return Candidate("+".join(parts), "transfer", options=options)


def baseline(name: str) -> Candidate:
    """A classical candidate (`training.evaluation.baselines`)."""
    return Candidate(name, "baseline", baseline=name)


def parse(name: str, task: Task, base: FinetuneOptions) -> Candidate:
    """The candidate a name gives (`contract.vocab.parse_candidate`), with `base`'s settings."""
    parsed = parse_candidate(name, task)
    if parsed.baseline is not None:
        return baseline(parsed.baseline)
    assert parsed.strategy is not None
    options = dataclasses.replace(
        base,
        strategy=parsed.strategy,
        adaptation=parsed.adaptation,
        semi_supervised=parsed.semi_supervised,
    )
    return transfer(options)


def default_candidates(
    task: Task, base: FinetuneOptions, *, unlabelled: bool, domains: bool
) -> list[Candidate]:
    """The automatic choice's candidates for the data at hand.

    The head on the frozen encoder and the whole network fine-tuned; with rows without a label
    or a domain column also DANN and MMD on the fine-tuned network; with rows without a label
    also pseudo-labels (classification) or consistency (regression) on the frozen encoder;
    then the classical baselines. `base` carries the device and method weights.
    """
    plain = dataclasses.replace(base, adaptation="none", semi_supervised="none")
    out = [
        transfer(dataclasses.replace(plain, strategy="frozen")),
        transfer(dataclasses.replace(plain, strategy="full")),
    ]
    if unlabelled or domains:
        out += [
            transfer(dataclasses.replace(plain, strategy="full", adaptation=method))
            for method in ("dann", "mmd")
        ]
    if unlabelled:
        semi: SemiSupervision = "pseudo_label" if task == "classification" else "consistency"
        out.append(transfer(dataclasses.replace(plain, strategy="frozen", semi_supervised=semi)))
    names = CLASSIFIER_BASELINES if task == "classification" else REGRESSOR_BASELINES
    return out + [baseline(name) for name in names]


@dataclass(frozen=True)
class Problem:
    """The labelled training samples, aligned to the encoder's panel, and how to train on them.

    Parameters
    ----------
    matrix:
        The labelled training rows (panel order, the encoder's input scale).
    label_column, task:
        What to predict.
    encoder, pipeline:
        The published encoder and its preprocessing.
    head_hidden, head_dropout, train_cfg:
        The head and the optimisation every transfer candidate uses.
    unlabelled, domain_column:
        Rows without a label, and the obs column naming batches, for the methods that use them.
    """

    matrix: ExpressionMatrix
    label_column: str
    task: Task
    encoder: nn.Module
    latent: int
    pipeline: PreprocessPipeline
    head_hidden: tuple[int, ...]
    head_dropout: float
    train_cfg: TrainConfig
    unlabelled: ExpressionMatrix | None = None
    domain_column: str | None = None

    def targets(self) -> list[str] | npt.NDArray[np.float64]:
        """The class of each row, or its number."""
        if self.task == "classification":
            return self.matrix.labels(self.label_column)
        return numeric_target(self.matrix, self.label_column)

    def features(self) -> npt.NDArray[np.float32]:
        """What the baselines see: the encoder's preprocessing of every row."""
        return np.asarray(self.pipeline.transform(self.matrix.X), dtype=np.float32)


Prediction = list[str] | npt.NDArray[np.float64]


def fit_predict(
    candidate: Candidate,
    problem: Problem,
    train_idx: npt.NDArray[np.int64],
    test_idx: npt.NDArray[np.int64],
    *,
    features: npt.NDArray[np.float32] | None = None,
    seed: int = 0,
) -> Prediction:
    """Fit `candidate` on rows `train_idx`, predict rows `test_idx` (labels, or numbers)."""
    if problem.task == "classification":
        classes, proba = fit_proba(
            candidate, problem, train_idx, test_idx, features=features, seed=seed
        )
        return [classes[i] for i in proba.argmax(axis=1)]
    if candidate.kind == "baseline":
        assert candidate.baseline is not None
        X = problem.features() if features is None else features
        y = np.asarray(problem.targets(), dtype=np.float64)
        model = fit_baseline(
            candidate.baseline, X[train_idx], y[train_idx], task="regression", seed=seed
        )
        return np.asarray(model.predict(X[test_idx]), dtype=np.float64)
    return _fit_transfer(candidate, problem, train_idx, test_idx, seed)[1]


def fit_proba(
    candidate: Candidate,
    problem: Problem,
    train_idx: npt.NDArray[np.int64],
    test_idx: npt.NDArray[np.int64],
    *,
    features: npt.NDArray[np.float32] | None = None,
    seed: int = 0,
) -> tuple[list[str], npt.NDArray[np.float32]]:
    """Classification: fit on rows `train_idx`; the classes seen and the probabilities of rows
    `test_idx` (columns in class order)."""
    if candidate.kind == "baseline":
        assert candidate.baseline is not None
        X = problem.features() if features is None else features
        y = problem.targets()
        y_train = [y[i] for i in train_idx]
        model = fit_baseline(candidate.baseline, X[train_idx], y_train, seed=seed)
        return [str(c) for c in model.classes_], baseline_proba(model, X[test_idx])
    classes, proba = _fit_transfer(candidate, problem, train_idx, test_idx, seed)
    assert classes is not None
    return classes, proba


def _fit_transfer(
    candidate: Candidate,
    problem: Problem,
    train_idx: npt.NDArray[np.int64],
    test_idx: npt.NDArray[np.int64],
    seed: int,
) -> tuple[list[str] | None, npt.NDArray[Any]]:
    """(classes, probabilities) for classification, (None, values) for regression."""
    assert candidate.options is not None
    train, test = problem.matrix.take(train_idx), problem.matrix.take(test_idx)
    hidden, dropout, own_cfg = candidate.head(problem)
    cfg = dataclasses.replace(own_cfg, seed=seed)
    common: dict[str, Any] = {
        "strategy": candidate.options,
        "progress": False,
        "unlabelled": problem.unlabelled,
        "domain_column": problem.domain_column,
    }
    hidden, dropout = problem.head_hidden, problem.head_dropout
    if problem.task == "classification":
        n_classes = len(set(train.labels(problem.label_column)))
        head = ClassifierHeadConfig(problem.latent, n_classes, hidden, dropout)
        result = finetune_classifier(
            problem.encoder, problem.pipeline, train, problem.label_column, head, cfg, **common
        )
        return result.labels, predict_proba(result.encoder, result.head, problem.pipeline, test)
    head_r = RegressorHeadConfig(problem.latent, 1, hidden, dropout)
    result = finetune_regressor(
        problem.encoder, problem.pipeline, train, problem.label_column, head_r, cfg, **common
    )
    values = predict_values(result.encoder, result.head, problem.pipeline, test)
    return None, np.asarray(values, dtype=np.float64)
