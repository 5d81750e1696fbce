"""Classical baselines (scikit-learn) on the same preprocessed input as the transfer model.

Every claim about transfer learning is made against these, on the same splits. Each baseline sees
the encoder's preprocessing output (standardised, clipped expression), so the comparison is
about what the encoder adds, not about normalisation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.utils.class_weight import compute_sample_weight

from contract.vocab import Task

Factory = Callable[[int], BaseEstimator]


def _logistic(C: float, l1_ratio: float | None = None) -> Factory:
    """Class-balanced logistic regression: L2 penalty, or with `l1_ratio` L1/elastic-net (saga)."""
    if l1_ratio is None:
        return lambda seed: LogisticRegression(
            C=C, max_iter=500, class_weight="balanced", random_state=seed
        )
    return lambda seed: LogisticRegression(
        C=C,
        l1_ratio=l1_ratio,
        solver="saga",
        max_iter=300,
        class_weight="balanced",
        random_state=seed,
    )


# the same ensemble and network settings for both tasks; sqrt-of-features subsampling keeps 10
# classes × 100 boosting rounds to seconds on 2 cores
_FOREST: dict[str, Any] = {"n_estimators": 200, "n_jobs": 1}
_BOOSTING: dict[str, Any] = {
    "n_estimators": 100,
    "max_depth": 3,
    "max_features": "sqrt",
    "subsample": 0.8,
}
_MLP: dict[str, Any] = {"hidden_layer_sizes": (128,), "alpha": 1e-2, "max_iter": 300}

# Defaults are the libraries' standard settings, not tuned on the evaluation data: a baseline
# tuned on the test folds would be as dishonest as a transfer model tuned on them. Iteration caps
# keep few-shot runs fast; "balanced" class weights match the transfer head's weighted loss.
CLASSIFIERS: dict[str, Factory] = {
    "logistic": _logistic(C=1.0),
    "ridge": _logistic(C=0.01),
    "lasso": _logistic(C=0.1, l1_ratio=1.0),
    "elastic_net": _logistic(C=0.1, l1_ratio=0.5),
    "random_forest": lambda seed: RandomForestClassifier(
        **_FOREST, class_weight="balanced", random_state=seed
    ),
    "gradient_boosting": lambda seed: GradientBoostingClassifier(**_BOOSTING, random_state=seed),
    "mlp": lambda seed: MLPClassifier(**_MLP, random_state=seed),
}
REGRESSORS: dict[str, Factory] = {
    "linear": lambda seed: LinearRegression(),
    "ridge": lambda seed: Ridge(alpha=10.0),
    "lasso": lambda seed: Lasso(alpha=0.05, max_iter=2000),
    "elastic_net": lambda seed: ElasticNet(alpha=0.05, l1_ratio=0.5, max_iter=2000),
    "random_forest": lambda seed: RandomForestRegressor(**_FOREST, random_state=seed),
    "gradient_boosting": lambda seed: GradientBoostingRegressor(**_BOOSTING, random_state=seed),
    "mlp": lambda seed: MLPRegressor(**_MLP, random_state=seed),
}


def baseline_names(task: Task) -> list[str]:
    """The baselines available for a task, in report order."""
    return list(CLASSIFIERS if task == "classification" else REGRESSORS)


def fit_baseline(
    name: str,
    X: npt.NDArray[np.float32],
    y: npt.ArrayLike,
    *,
    task: Task = "classification",
    seed: int = 0,
) -> Any:
    """Fit the named baseline on preprocessed features.

    Parameters
    ----------
    name:
        One of `baseline_names(task)`.
    X:
        Preprocessed training samples (n, n_genes), e.g. ``pipeline.transform(matrix.X)``.
    y:
        Labels (classification) or numeric targets (regression), one per sample.
    task:
        ``"classification"`` or ``"regression"``.
    seed:
        Seeds the estimator's randomness.
    """
    table = CLASSIFIERS if task == "classification" else REGRESSORS
    if name not in table:
        raise ValueError(f"unknown {task} baseline {name!r}; have {sorted(table)}")
    if len(X) != len(np.asarray(y)) or len(X) == 0:
        raise ValueError(f"{len(X)} samples but {len(np.asarray(y))} targets")
    model = table[name](seed)
    with warnings.catch_warnings():
        # few-shot sets are tiny and iteration caps keep runs short: an unconverged solver is
        # an expected, reported property of the baseline, not an error
        warnings.simplefilter("ignore", ConvergenceWarning)
        if isinstance(model, GradientBoostingClassifier):
            # it has no class_weight; balanced sample weights do the same job
            model.fit(X, np.asarray(y), sample_weight=compute_sample_weight("balanced", y))
        else:
            model.fit(X, np.asarray(y))
    return model


def baseline_proba(model: Any, X: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Class probabilities (n, n_classes), columns in ``model.classes_`` order."""
    return np.asarray(model.predict_proba(X), dtype=np.float32)
