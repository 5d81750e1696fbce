"""What drives each model of the evaluation: gene attributions pooled over its test samples.

Networks (the transfer model, the scratch network) and the baselines with an input gradient
(logistic regression, exact through linear preprocessing; the MLP) get integrated gradients of the
predicted class's logit against the training mean, the same graph the service serves
(`training.export.explain`). The other baselines (random forest, gradient boosting) get
scikit-learn's permutation importance: the drop in balanced accuracy when a gene's values are
shuffled among the test samples, one value per gene for all classes together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from contract.preprocess.pipeline import PreprocessPipeline
from training.export.explain import (
    DEFAULT_STEPS,
    IntegratedGradients,
    UnsupportedExplanation,
    sklearn_layers,
)
from training.preprocess.fused import pipeline_module

ALL_CLASSES = "all classes"
PERMUTATION_REPEATS = 3


@dataclass
class Attribution:
    """One model's attributions summed per class (mean = sum / count) over its test samples.

    `method` is ``integrated_gradients``, ``exact`` (a linear model behind linear
    preprocessing: (x − x0) ⊙ its coefficients) or ``permutation_importance`` (one row,
    `ALL_CLASSES`, of mean decreases in balanced accuracy, not absolute values).
    """

    method: str
    genes: list[str]
    sums: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, values: npt.NDArray[np.float64], n: int) -> None:
        """Add `n` samples' summed values to `label`'s row."""
        if label in self.sums:
            self.sums[label] = self.sums[label] + values
        else:
            self.sums[label] = np.asarray(values, dtype=np.float64)
        self.counts[label] = self.counts.get(label, 0) + n

    def merge(self, other: Attribution) -> None:
        """Pool another split's attributions of the same model into these."""
        for label, values in other.sums.items():
            self.add(label, values, other.counts[label])

    def means(self) -> dict[str, npt.NDArray[np.float64]]:
        """Per class, the mean over its samples."""
        return {c: self.sums[c] / max(self.counts[c], 1) for c in sorted(self.sums)}

    def top(self, label: str, n: int) -> list[tuple[str, float]]:
        """The `n` genes with the largest mean for `label`, largest first."""
        mean = self.means()[label]
        order = np.argsort(-mean, kind="stable")[:n]
        return [(self.genes[j], float(mean[j])) for j in order]


def _by_predicted(
    method: str, genes: list[str], values: npt.NDArray[np.float64], predicted: Sequence[str]
) -> Attribution:
    """Mean |attribution| per predicted class."""
    out = Attribution(method, genes)
    labels = np.asarray(predicted)
    for label in sorted(set(predicted)):
        rows = labels == label
        out.add(label, np.abs(values[rows]).sum(axis=0), int(rows.sum()))
    return out


def _integrated(
    modules: Sequence[nn.Module], pipeline: PreprocessPipeline, x: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], bool]:
    ig = IntegratedGradients(modules, pipeline.input_mean, DEFAULT_STEPS).eval()
    with torch.no_grad():
        inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        target = ig.logits(inputs).argmax(dim=1)
        values = ig(inputs, target).numpy().astype(np.float64)
    return values, target.numpy().astype(np.int64), ig.exact


def network_attribution(
    encoder: nn.Module,
    head: nn.Module,
    labels: Sequence[str],
    pipeline: PreprocessPipeline,
    x: npt.NDArray[np.float32],
) -> Attribution:
    """Integrated gradients of a fine-tuned encoder + head on input-scale test samples `x`."""
    modules = [pipeline_module(pipeline).eval(), encoder.eval(), head.eval()]
    values, target, _ = _integrated(modules, pipeline, x)
    return _by_predicted(
        "integrated_gradients", pipeline.gene_ids, values, [labels[k] for k in target]
    )


def baseline_attribution(
    model: Any,
    pipeline: PreprocessPipeline,
    x: npt.NDArray[np.float32],
    features: npt.NDArray[np.float32],
    truth: Sequence[str],
    *,
    seed: int = 0,
    permutation: bool = True,
) -> Attribution | None:
    """A fitted scikit-learn classifier's attributions on test samples (`x` input scale,
    `features` the same samples preprocessed, `truth` their labels for permutation importance);
    None for a model that needs permutation importance when `permutation` is off (it costs a
    prediction per gene and repeat)."""
    try:
        layers = sklearn_layers(model)
    except UnsupportedExplanation:
        if not permutation:
            return None
        from sklearn.inspection import permutation_importance

        result = permutation_importance(
            model,
            features,
            np.asarray(truth),
            scoring="balanced_accuracy",
            n_repeats=PERMUTATION_REPEATS,
            random_state=seed,
            n_jobs=1,
        )
        out = Attribution("permutation_importance", pipeline.output_names())
        out.add(ALL_CLASSES, np.asarray(result.importances_mean, dtype=np.float64), 1)
        return out
    modules = [pipeline_module(pipeline).eval(), *layers]
    values, target, exact = _integrated(modules, pipeline, x)
    classes = [str(c) for c in model.classes_]
    method = "exact" if exact else "integrated_gradients"
    return _by_predicted(method, pipeline.gene_ids, values, [classes[k] for k in target])
