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

Methods are registered in `training.evaluation.methods`; baselines are scikit-learn's on the
target's own genes, preprocessed as fitted on the split's non-test rows.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.evaluation.attribution import Attribution
from training.evaluation.baselines import baseline_names
from training.evaluation.external import ExternalResult, external_validation
from training.evaluation.methods import (
    METHODS,
    Fit,
    Inputs,
    Rows,
    baseline_fit,
    method,
    with_references,
)
from training.evaluation.metrics import classification_metrics, predict_labels_from
from training.evaluation.pretraining import (
    EncoderShape,
    Pretrained,
    Pretraining,
    align_to,
)
from training.evaluation.splits import (
    few_shot_sample,
    kfold_splits,
    leave_one_batch_out,
    stratified_split,
)
from training.nn.config import TrainConfig
from training.preprocess.select import GeneSelection, fit_pipeline
from training.train import defaults
from training.train.apply import labelled_rows
from training.train.loop import History

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ProtocolConfig:
    """What the evaluation runs.

    Parameters
    ----------
    label_column:
        obs column with the classes.
    min_cells:
        Only classes with at least this many rows are evaluated.
    shots:
        Labelled rows per class of the few-shot curves.
    repeats:
        Seeded repeats per k (each with its own test split and pretraining); with ``lobo``,
        how many times each batch is held out (other seeds each time).
    folds:
        Folds of the stratified cross-validation (0 skips it).
    test_fraction:
        Share of each evaluated class held out as the few-shot test set.
    encoder, hidden, latent:
        The pretrained encoder's kind (``ae``, ``dae``, ``vae``) and widths.
    methods:
        Registered methods to run (`training.evaluation.methods`); a method's reference (the
        same without rows without a label) is added when missing.
    baselines:
        scikit-learn baselines to run.
    protocol:
        ``few_shot`` (few-shot curves and CV) or ``lobo`` (leave one batch out).
    batch_column:
        obs column naming each row's batch (``lobo``; adaptation aligns these batches).
    input_scale:
        The scale of the matrices' values.
    seed:
        Seeds every split, draw and training.
    select:
        Optional gene selection, fitted with the preprocessing.
    device:
        Where the networks train.
    """

    label_column: str = "bulk_labels"
    min_cells: int = 30
    shots: tuple[int, ...] = (5, 10, 25)
    repeats: int = 10
    folds: int = 5
    test_fraction: float = 0.2
    encoder: str = "dae"
    hidden: tuple[int, ...] = defaults.ENCODER_HIDDEN
    latent: int = defaults.ENCODER_LATENT
    methods: tuple[str, ...] = ("frozen", "scratch")
    baselines: tuple[str, ...] = tuple(baseline_names("classification"))
    protocol: str = "few_shot"
    batch_column: str | None = None
    input_scale: str = "log"
    pretrain: TrainConfig = defaults.PRETRAIN
    finetune: TrainConfig = defaults.FINETUNE
    seed: int = 0
    select: GeneSelection | None = None
    device: str = "cpu"
    explain: bool = True

    def __post_init__(self) -> None:
        for name in self.methods:
            method(name)  # ValueError for an unknown one
        if self.protocol not in ("few_shot", "lobo"):
            raise ValueError(f"protocol must be few_shot or lobo, got {self.protocol!r}")
        if self.protocol == "lobo" and not self.batch_column:
            raise ValueError("leave-one-batch-out needs a batch column")

    @property
    def shape(self) -> EncoderShape:
        """The encoder architecture."""
        return EncoderShape(self.encoder, self.hidden, self.latent)

    @property
    def models(self) -> tuple[str, ...]:
        """The methods run (references added), then the baselines."""
        return (*with_references(self.methods), *self.baselines)


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


@dataclass(frozen=True)
class Split:
    """One test set and the training draws scored on it: (k, labelled rows, unlabelled rows)."""

    protocol: str
    index: int
    name: str
    test: IntArray
    draws: list[tuple[int | None, IntArray, IntArray]]
    classes: list[str]
    hidden: IntArray | None = None  # rows kept from pretraining besides the test rows

    @property
    def withheld(self) -> IntArray:
        """The rows pretraining and the baselines' preprocessing must not see."""
        return self.test if self.hidden is None else np.union1d(self.test, self.hidden)


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
    labels = _labels(matrix, cfg.label_column)
    classes = _classes(labels, cfg.min_cells)
    eligible = np.array([i for i, c in enumerate(labels) if c in classes], dtype=np.int64)
    result = _result(matrix, cfg, pretraining, classes, len(eligible))
    if cfg.protocol == "lobo":
        assert cfg.batch_column is not None
        batches = matrix.labels(cfg.batch_column)
        result.batches = _composition(batches, labels, classes)
        splits = _lobo(batches, labels, classes, cfg, result)
    else:
        splits = _few_shot(labels, eligible, cfg, classes)
    bar = tqdm(splits, desc="evaluate", disable=None if progress is None else not progress)
    every = np.arange(matrix.shape[0])
    for split in bar:
        pool = matrix.take(np.setdiff1d(every, split.withheld))
        pretrained = _pretrained(pretraining, pool, cfg, split.index, result)
        plain = _plain(pretraining, pretrained, pool, cfg)
        encoded, _ = align_to(matrix, pretrained)
        truth = [labels[i] for i in split.test]
        for k, train_idx, unl_idx in split.draws:
            inputs = _inputs(cfg, split, matrix, encoded, pretrained, plain, train_idx, unl_idx)
            for name, fit in _fits(cfg, inputs, result, split).items():
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
    labels = _labels(matrix, cfg.label_column)
    labelled = np.array([i for i, c in enumerate(labels) if c in result.classes], dtype=np.int64)
    pretrained = _pretrained(pretraining, matrix, cfg, 0, None)
    plain = _plain(pretraining, pretrained, matrix, cfg)
    encoded, _ = align_to(matrix, pretrained)
    hidden = _hide_labels(external, cfg.label_column)
    unlabelled, _ = align_to(hidden, pretrained)
    split = Split("external", 0, name, np.zeros(0, dtype=np.int64), [], result.classes)
    template = _inputs(cfg, split, matrix, encoded, pretrained, plain, labelled, None)
    template = dataclasses.replace(
        template, encoded=dataclasses.replace(template.encoded, unlabelled=unlabelled)
    )
    for model, fit in _fits(cfg, template, result, split).items():
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


def _labels(matrix: ExpressionMatrix, column: str) -> list[str]:
    """Each row's label; "" for a row without one (it is never a class, only an unlabelled row)."""
    has = labelled_rows(matrix, column)
    return [c if h else "" for c, h in zip(matrix.labels(column), has, strict=True)]


def _classes(labels: list[str], min_cells: int) -> list[str]:
    counts = Counter(c for c in labels if c)
    classes = sorted(c for c, n in counts.items() if n >= min_cells)
    if len(classes) < 2:
        raise ValueError(f"fewer than 2 classes have ≥ {min_cells} cells: {dict(counts)}")
    return classes


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


def _composition(
    batches: list[str], labels: list[str], classes: list[str]
) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for b, c in zip(batches, labels, strict=True):
        if c in classes:
            row = table.setdefault(b, {})
            row[c] = row.get(c, 0) + 1
    return dict(sorted(table.items()))


def _few_shot(
    labels: list[str], eligible: IntArray, cfg: ProtocolConfig, classes: list[str]
) -> list[Split]:
    sub = [labels[i] for i in eligible]
    every = np.arange(len(labels), dtype=np.int64)
    splits: list[Split] = []
    for r in range(cfg.repeats):
        seed = cfg.seed + r
        _, test_local = stratified_split(sub, cfg.test_fraction, seed)
        test_idx = eligible[test_local]
        pool = np.setdiff1d(eligible, test_idx)
        others = np.setdiff1d(every, test_idx)
        draws: list[tuple[int | None, IntArray, IntArray]] = []
        for k in cfg.shots:
            train = few_shot_sample(labels, k, pool, seed * 1000 + k)
            draws.append((k, train, np.setdiff1d(others, train)))
        splits.append(Split("few_shot", r, str(r), test_idx, draws, classes))
    if cfg.folds:
        for f, (train_local, test_local) in enumerate(kfold_splits(sub, cfg.folds, cfg.seed)):
            test_idx, train = eligible[test_local], eligible[train_local]
            rest = np.setdiff1d(np.setdiff1d(every, test_idx), train)
            splits.append(Split("cv", f, str(f), test_idx, [(None, train, rest)], classes))
    return splits


def _lobo(
    batches: list[str],
    labels: list[str],
    classes: list[str],
    cfg: ProtocolConfig,
    result: ProtocolResult,
) -> list[Split]:
    splits: list[Split] = []
    folds = leave_one_batch_out(batches, labels, classes)
    column = np.asarray(batches, dtype=object)
    # each repeat holds every batch out once more, with other seeds (pretraining, training)
    for _ in range(max(1, cfg.repeats)):
        for name, train, test in folds:
            learnt = sorted({labels[j] for j in train})
            # the held-out batch's every row (other classes too), labels hidden
            held = np.flatnonzero(column == name).astype(np.int64)
            index = len(splits)
            # the whole held-out batch stays out of pretraining, its other classes' rows too
            draws: list[tuple[int | None, IntArray, IntArray]] = [(None, train, held)]
            splits.append(Split("lobo", index, name, test, draws, learnt, held))
    skipped = sorted(set(result.batches) - {f[0] for f in folds})
    if skipped:
        result.notes.append(
            f"batches {skipped} left out: none of their rows is of a class another batch has"
        )
    if not splits:
        raise ValueError("no batch can be held out: no other batch has its classes")
    return splits


def _pretrained(
    pretraining: Pretraining,
    pool: ExpressionMatrix,
    cfg: ProtocolConfig,
    index: int,
    result: ProtocolResult | None,
) -> Pretrained:
    pretrained = pretraining.for_pool(
        pool,
        cfg.shape,
        cfg.pretrain,
        scale=cfg.input_scale,
        select=cfg.select,
        seed=cfg.seed + index,
    )
    if result is not None and result.n_pretrain_rows == 0:
        result.pretrain_history = pretrained.history
        result.n_pretrain_rows = pretrained.n_rows
        result.panel_overlap = align_to(pool.take(np.arange(min(1, pool.shape[0]))), pretrained)[1]
    return pretrained


def _plain(
    pretraining: Pretraining, pretrained: Pretrained, pool: ExpressionMatrix, cfg: ProtocolConfig
) -> PreprocessPipeline:
    # pretraining on the pool fits the very pipeline the baselines would: share it
    if pretraining.kind == "target":
        return pretrained.pipeline
    return fit_pipeline(pool, cfg.input_scale, clip=defaults.CLIP, select=cfg.select)


def _hide_labels(matrix: ExpressionMatrix, column: str) -> ExpressionMatrix:
    """The rows without their labels: what a method may learn from without a label."""
    obs = matrix.obs.drop(columns=[column], errors="ignore")
    return ExpressionMatrix(
        X=matrix.X, sample_ids=matrix.sample_ids, gene_ids=matrix.gene_ids, obs=obs
    )


def _inputs(
    cfg: ProtocolConfig,
    split: Split,
    matrix: ExpressionMatrix,
    encoded: ExpressionMatrix,
    pretrained: Pretrained,
    plain: PreprocessPipeline,
    train_idx: IntArray,
    unl_idx: IntArray | None,
) -> Inputs:
    unlabelled = None
    if unl_idx is not None and len(unl_idx):
        unlabelled = _hide_labels(encoded.take(unl_idx), cfg.label_column)
    return Inputs(
        classes=split.classes,
        label_column=cfg.label_column,
        encoded=Rows(
            pretrained.pipeline, encoded.take(train_idx), encoded.take(split.test), unlabelled
        ),
        plain=Rows(plain, matrix.take(train_idx), matrix.take(split.test), None),
        encoder=pretrained.encoder,
        latent=pretrained.latent,
        shape=cfg.shape,
        finetune=dataclasses.replace(cfg.finetune, seed=cfg.seed + split.index),
        domain_column=cfg.batch_column if split.protocol == "lobo" else None,
        device=cfg.device,
    )


def _fits(
    cfg: ProtocolConfig, inputs: Inputs, result: ProtocolResult, split: Split
) -> dict[str, Fit]:
    fits: dict[str, Fit] = {}
    for name in with_references(cfg.methods):
        m = method(name)
        if m.unlabelled and inputs.encoded.unlabelled is None:
            note = f"{name} skipped on the {split.protocol} splits: no rows without a label there"
            if note not in result.notes:
                result.notes.append(note)
            continue
        fits[name] = m.fit
    fits.update({name: baseline_fit(name) for name in cfg.baselines})
    return fits
