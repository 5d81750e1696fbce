"""The evaluation protocols: every method and every baseline on the same splits of the target.

For every split the test rows are chosen first. The encoder comes from `Pretraining` (the
target's other rows, a source, both, or a published encoder; never a test row's label, and a
test row's values only where the protocol says so below). The labelled training rows (k per
class, the other folds, or the other batches) come from the rest. Every model gets the same
training rows and is scored on the same test rows:

- ``few_shot``: seeded repeats, each holding out a stratified test set, then k labelled rows
  per class; then stratified k-fold CV. Methods that learn from rows without a label get the
  split's other non-test rows, their labels hidden.
- ``lobo``: leave one batch out; the other batches are labelled, the held-out batch is the
  test set and its rows, their labels hidden, are the rows without a label that adaptation
  and semi-supervision get (transductive: never their labels).
- external validation (`run_external`): every model trained on all the target's labelled
  rows and scored on a second dataset; its rows, labels hidden, are the rows without a label.

Methods are registered in `training.protocol.methods`; baselines are scikit-learn's on the
target's own genes, preprocessed as fitted on the split's non-test rows. `ProtocolConfig`
(`training.protocol.config`) says what runs, `training.protocol.designs` makes the splits and
`training.protocol.inputs` what every model gets on one; this module runs them and keeps the
scores.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from contract.matrix import ExpressionMatrix
from training.evaluation.attribution import Attribution
from training.evaluation.external import ExternalResult, external_validation
from training.evaluation.metrics import classification_metrics, predict_labels_from
from training.protocol.config import ProtocolConfig
from training.protocol.designs import (
    Split,
    batch_composition,
    evaluated_classes,
    few_shot_splits,
    lobo_splits,
    row_labels,
)
from training.protocol.inputs import (
    baseline_pipeline,
    hide_labels,
    model_fits,
    split_encoder,
    split_inputs,
)
from training.protocol.methods import METHODS, Fit, Rows, method, with_references
from training.protocol.pretraining import Pretrained, Pretraining, align_to
from training.train.loop import History


@dataclass
class Outcome:
    """Scores of one model on one split, and its test predictions."""

    protocol: str
    k: int | None
    repeat: int
    model: str
    metrics: dict[str, float]
    y_true: list[str]
    y_pred: list[str]
    split: str = ""  # the held-out batch (lobo)


@dataclass
class ProtocolResult:
    """Every outcome, what each model saw, and facts the report reasons from."""

    config: ProtocolConfig
    classes: list[str]
    n_cells: int
    n_total: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    pretrain_history: History | None = None
    notes: list[str] = field(default_factory=list)
    pretraining: str = "the target's non-test rows, without labels"
    pretraining_kind: str = "target"
    n_pretrain_rows: int = 0
    panel_overlap: float = 1.0
    batches: dict[str, dict[str, int]] = field(default_factory=dict)  # batch → class → rows
    external: dict[str, ExternalResult] = field(default_factory=dict)
    external_name: str = ""
    # model → its gene attributions pooled over the cross-validation test samples
    attributions: dict[str, Attribution] = field(default_factory=dict)


def run_protocol(
    matrix: ExpressionMatrix,
    cfg: ProtocolConfig,
    *,
    pretraining: Pretraining | None = None,
    progress: bool | None = None,
) -> ProtocolResult:
    """Run the protocol `cfg` names for every method and baseline.

    Parameters
    ----------
    matrix:
        The target: every row on `cfg.input_scale`, with `cfg.label_column` in obs.
    cfg:
        The protocol.
    pretraining:
        Where each split's encoder comes from (default: the target's non-test rows).
    progress:
        Progress bar over splits: ``True``/``False``, or ``None`` for "only on a terminal".
    """
    pretraining = pretraining or Pretraining()
    labels = row_labels(matrix, cfg.label_column)
    classes = evaluated_classes(labels, cfg.min_cells)
    eligible = np.array([i for i, c in enumerate(labels) if c in classes], dtype=np.int64)
    result = _result(matrix, cfg, pretraining, classes, len(eligible))
    if cfg.protocol == "lobo":
        assert cfg.batch_column is not None
        batches = matrix.labels(cfg.batch_column)
        result.batches = batch_composition(batches, labels, classes)
        splits = lobo_splits(batches, labels, classes, cfg)
        skipped = sorted(set(result.batches) - {s.name for s in splits})
        if skipped:
            result.notes.append(
                f"batches {skipped} left out: none of their rows is of a class another batch has"
            )
    else:
        splits = few_shot_splits(labels, eligible, cfg, classes)
    bar = tqdm(splits, desc="evaluate", disable=None if progress is None else not progress)
    every = np.arange(matrix.shape[0])
    for split in bar:
        pool = matrix.take(np.setdiff1d(every, split.withheld))
        pretrained = split_encoder(pretraining, pool, cfg, split.index)
        _record_pretraining(result, pretrained, pool)
        plain = baseline_pipeline(pretraining, pretrained, pool, cfg)
        encoded, _ = align_to(matrix, pretrained)
        truth = [labels[i] for i in split.test]
        for k, train_idx, unl_idx in split.draws:
            inputs = split_inputs(
                cfg, split, matrix, encoded, pretrained, plain, train_idx, unl_idx
            )
            for name, fit in model_fits(cfg, inputs, split, result.notes).items():
                proba, attribute = fit(inputs)
                if cfg.explain and split.protocol == "cv":
                    _attribute(result, name, attribute(split.index == 0))
                pred = predict_labels_from(proba, split.classes)
                metrics = classification_metrics(truth, pred, proba, split.classes)
                result.outcomes.append(
                    Outcome(split.protocol, k, split.index, name, metrics, truth, pred, split.name)
                )
    bar.close()
    return result


def run_external(
    matrix: ExpressionMatrix,
    external: ExpressionMatrix,
    cfg: ProtocolConfig,
    result: ProtocolResult,
    *,
    name: str = "external",
    pretraining: Pretraining | None = None,
) -> ProtocolResult:
    """Train every model on all the target's labelled rows of `result`'s classes; score each
    on `external` (aligned to the model's genes, only rows of those classes scored).

    Parameters
    ----------
    matrix:
        The target, as given to `run_protocol`.
    external:
        The second dataset on the same input scale, with `cfg.label_column` in obs.
    cfg:
        The protocol (models, training settings).
    result:
        `run_protocol`'s result; the external scores are added to it.
    name:
        What to call the external data in the report.
    pretraining:
        As given to `run_protocol` (pretraining sees the target's rows, never the external's).
    """
    pretraining = pretraining or Pretraining()
    labels = row_labels(matrix, cfg.label_column)
    labelled = np.array([i for i, c in enumerate(labels) if c in result.classes], dtype=np.int64)
    pretrained = split_encoder(pretraining, matrix, cfg, 0)
    plain = baseline_pipeline(pretraining, pretrained, matrix, cfg)
    encoded, _ = align_to(matrix, pretrained)
    hidden = hide_labels(external, cfg.label_column)
    unlabelled, _ = align_to(hidden, pretrained)
    split = Split("external", 0, name, np.zeros(0, dtype=np.int64), [], result.classes)
    template = split_inputs(cfg, split, matrix, encoded, pretrained, plain, labelled, None)
    template = dataclasses.replace(
        template, encoded=dataclasses.replace(template.encoded, unlabelled=unlabelled)
    )
    for model, fit in model_fits(cfg, template, split, result.notes).items():
        uses_encoder = model in METHODS and method(model).pretrained
        rows = template.encoded if uses_encoder else template.plain

        def proba_fn(
            aligned: ExpressionMatrix, fit: Fit = fit, enc: bool = uses_encoder, rows: Rows = rows
        ) -> npt.NDArray[np.float32]:
            test = dataclasses.replace(rows, test=aligned)
            if enc:
                return fit(dataclasses.replace(template, encoded=test))[0]
            return fit(dataclasses.replace(template, plain=test))[0]

        result.external[model] = external_validation(
            proba_fn, rows.pipeline, result.classes, external, cfg.label_column
        )
    result.external_name = name
    return result


def _attribute(result: ProtocolResult, name: str, found: Attribution | None) -> None:
    """Pool a model's attributions over the cross-validation folds."""
    if found is None:
        return
    if name in result.attributions:
        result.attributions[name].merge(found)
    else:
        result.attributions[name] = found


def _result(
    matrix: ExpressionMatrix,
    cfg: ProtocolConfig,
    pretraining: Pretraining,
    classes: list[str],
    n_cells: int,
) -> ProtocolResult:
    result = ProtocolResult(cfg, classes, n_cells, matrix.shape[0])
    result.pretraining = pretraining.describe()
    result.pretraining_kind = pretraining.kind
    added = sorted(set(with_references(cfg.methods)) - set(cfg.methods))
    if added:
        result.notes.append(
            f"added {', '.join(added)}: the same method without the rows without a label, "
            "to pair with"
        )
    return result


def _record_pretraining(
    result: ProtocolResult, pretrained: Pretrained, pool: ExpressionMatrix
) -> None:
    """Keep the first split's pretraining (its history, rows and panel overlap) for the report."""
    if result.n_pretrain_rows == 0:
        result.pretrain_history = pretrained.history
        result.n_pretrain_rows = pretrained.n_rows
        result.panel_overlap = align_to(pool.take(np.arange(min(1, pool.shape[0]))), pretrained)[1]
