"""The transfer-vs-baselines protocol: few-shot curves and k-fold CV on the same splits.

For every split the test cells are chosen first. The preprocessing and the self-supervised
encoder are then fitted on every *other* cell, without labels (the pretraining pool), so no test
cell is seen by pretraining, labelled or not. The labelled training cells (k per class, or the
other folds) come from that pool. Every model, transfer and baseline, gets the same training
cells, the same preprocessed input and is scored on the same test cells.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.evaluation.attribution import Attribution, baseline_attribution, network_attribution
from training.evaluation.baselines import baseline_names, baseline_proba, fit_baseline
from training.evaluation.metrics import classification_metrics, predict_labels_from
from training.evaluation.splits import few_shot_sample, kfold_splits, stratified_split
from training.nn.config import TrainConfig
from training.nn.encoders import AutoencoderConfig
from training.nn.heads import ClassifierHeadConfig
from training.nn.variants import (
    AnyAutoencoderConfig,
    DenoisingAutoencoderConfig,
    VariationalAutoencoderConfig,
    build_autoencoder,
)
from training.preprocess.select import GeneSelection, fit_pipeline, output_width
from training.train import defaults
from training.train.apply import predict_proba
from training.train.finetune import FinetuneOptions, finetune_classifier
from training.train.loop import History
from training.train.pretrain import pretrain

IntArray = npt.NDArray[np.int64]
TRANSFER, SCRATCH, AUTO = "transfer", "scratch_network", "auto"


@dataclass(frozen=True)
class ProtocolConfig:
    """What the evaluation runs.

    Parameters
    ----------
    label_column:
        obs column with the classes.
    min_cells:
        Only classes with at least this many cells are evaluated.
    shots:
        Labelled cells per class of the few-shot curves.
    repeats:
        Seeded repeats per k (each with its own test split and pretraining).
    folds:
        Folds of the stratified cross-validation (0 skips it).
    test_fraction:
        Share of each evaluated class held out as the few-shot test set.
    encoder:
        ``ae``, ``dae`` or ``vae``.
    strategy:
        Fine-tuning strategy of the transfer model.
    baselines:
        scikit-learn baselines to run (default: all).
    seed:
        Seeds every split, draw and training.
    select:
        Optional gene selection, fitted with the preprocessing on each pretraining pool.
    auto:
        Also run the automatic choice (`strategy: auto`, `training.choice`): inner CV on each
        training set over the default candidates, the winner refitted and scored.
    explain:
        Attribute every model's cross-validation test predictions to genes
        (`training.evaluation.attribution`; permutation importance on the first fold only).
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
    strategy: str = "frozen"
    baselines: tuple[str, ...] = tuple(baseline_names("classification"))
    pretrain: TrainConfig = defaults.PRETRAIN
    finetune: TrainConfig = defaults.FINETUNE
    seed: int = 0
    select: GeneSelection | None = None
    auto: bool = False
    explain: bool = True


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


@dataclass
class ProtocolResult:
    """Every outcome, the classes evaluated, and the first pretraining's history."""

    config: ProtocolConfig
    classes: list[str]
    n_cells: int
    n_total: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    pretrain_history: History | None = None
    notes: list[str] = field(default_factory=list)
    # the automatic choice's winner on each training set: (protocol, k, repeat, winner)
    choices: list[tuple[str, int | None, int, str]] = field(default_factory=list)
    # model → its gene attributions pooled over the cross-validation test samples
    attributions: dict[str, Attribution] = field(default_factory=dict)


def encoder_config(cfg: ProtocolConfig, n_genes: int) -> AnyAutoencoderConfig:
    """The autoencoder config a protocol asks for."""
    common: dict[str, Any] = {"n_genes": n_genes, "hidden": cfg.hidden, "latent": cfg.latent}
    if cfg.encoder == "vae":
        return VariationalAutoencoderConfig(**common, dropout=0.1, beta=1.0)
    if cfg.encoder == "dae":
        return DenoisingAutoencoderConfig(**common, dropout=0.1, mask_rate=0.3)
    if cfg.encoder == "ae":
        return AutoencoderConfig(**common, dropout=0.1)
    raise ValueError(f"encoder must be ae, dae or vae, got {cfg.encoder!r}")


def run_protocol(
    matrix: ExpressionMatrix, cfg: ProtocolConfig, *, progress: bool | None = None
) -> ProtocolResult:
    """Run the few-shot curves and the cross-validation for the transfer model and baselines.

    Parameters
    ----------
    matrix:
        All cells on the log input scale, with `cfg.label_column` in obs.
    cfg:
        The protocol.
    progress:
        Progress bar over splits: ``True``/``False``, or ``None`` for "only on a terminal".
    """
    labels = matrix.labels(cfg.label_column)
    counts = Counter(labels)
    classes = sorted(c for c, n in counts.items() if n >= cfg.min_cells)
    if len(classes) < 2:
        raise ValueError(f"fewer than 2 classes have ≥ {cfg.min_cells} cells: {dict(counts)}")
    eligible = np.array([i for i, c in enumerate(labels) if c in classes], dtype=np.int64)
    result = ProtocolResult(cfg, classes, len(eligible), matrix.shape[0])
    splits = _splits(labels, eligible, cfg)
    bar = tqdm(splits, desc="evaluate", disable=None if progress is None else not progress)
    for protocol, repeat, test_idx, trainings in bar:
        pool = np.setdiff1d(np.arange(matrix.shape[0]), test_idx)
        pipeline, encoder, history = _pretrain(matrix.take(pool), cfg, repeat)
        if result.pretrain_history is None:
            result.pretrain_history = history
        X = pipeline.transform(matrix.X)
        test = matrix.take(test_idx)
        truth = [labels[i] for i in test_idx]
        for k, train_idx in trainings:
            train = matrix.take(train_idx)
            y_train = [labels[i] for i in train_idx]
            models = _models(cfg, encoder, pipeline, repeat)
            if cfg.auto:
                models[AUTO] = _automatic(
                    cfg, encoder, pipeline, repeat, classes, result, (protocol, k)
                )
            for name, fit in models.items():
                proba, attribute = fit(train, X[train_idx], y_train, test, X[test_idx])
                pred = predict_labels_from(proba, classes)
                metrics = classification_metrics(truth, pred, proba, classes)
                result.outcomes.append(Outcome(protocol, k, repeat, name, metrics, truth, pred))
                if cfg.explain and protocol == "cv":
                    found = attribute(repeat == 0)
                    if found is not None and name in result.attributions:
                        result.attributions[name].merge(found)
                    elif found is not None:
                        result.attributions[name] = found
    bar.close()
    return result


def _splits(
    labels: list[str], eligible: IntArray, cfg: ProtocolConfig
) -> list[tuple[str, int, IntArray, list[tuple[int | None, IntArray]]]]:
    sub = [labels[i] for i in eligible]
    splits: list[tuple[str, int, IntArray, list[tuple[int | None, IntArray]]]] = []
    for r in range(cfg.repeats):
        seed = cfg.seed + r
        _, test_local = stratified_split(sub, cfg.test_fraction, seed)
        test_idx = eligible[test_local]
        pool = np.setdiff1d(eligible, test_idx)
        draws: list[tuple[int | None, IntArray]] = [
            (k, few_shot_sample(labels, k, pool, seed * 1000 + k)) for k in cfg.shots
        ]
        splits.append(("few_shot", r, test_idx, draws))
    if cfg.folds:
        for f, (train_local, test_local) in enumerate(kfold_splits(sub, cfg.folds, cfg.seed)):
            splits.append(("cv", f, eligible[test_local], [(None, eligible[train_local])]))
    return splits


def _pretrain(
    pool: ExpressionMatrix, cfg: ProtocolConfig, repeat: int
) -> tuple[PreprocessPipeline, Any, History]:
    pipeline = fit_pipeline(pool, "log", clip=defaults.CLIP, select=cfg.select)
    train_cfg = dataclasses.replace(cfg.pretrain, seed=cfg.seed + repeat)
    width = output_width(pipeline)
    model, history = pretrain(pool, pipeline, encoder_config(cfg, width), train_cfg, progress=False)
    return pipeline, model, history


# a model's attributions on the split's test samples; the flag allows permutation importance
Attribute = Callable[[bool], Attribution | None]
Fit = Callable[
    [
        ExpressionMatrix,
        npt.NDArray[np.float32],
        list[str],
        ExpressionMatrix,
        npt.NDArray[np.float32],
    ],
    tuple[npt.NDArray[np.float32], Attribute],
]


def _models(
    cfg: ProtocolConfig, autoencoder: Any, pipeline: PreprocessPipeline, repeat: int
) -> dict[str, Fit]:
    seed = cfg.seed + repeat
    fine = dataclasses.replace(cfg.finetune, seed=seed)

    def neural(encoder: Any, options: FinetuneOptions) -> Fit:
        def fit(
            train: ExpressionMatrix, _x: Any, y: list[str], test: ExpressionMatrix, _xt: Any
        ) -> tuple[npt.NDArray[np.float32], Attribute]:
            head_cfg = ClassifierHeadConfig(n_in=cfg.latent, n_classes=len(set(y)))
            res = finetune_classifier(
                encoder,
                pipeline,
                train,
                cfg.label_column,
                head_cfg,
                fine,
                strategy=options,
                progress=False,
            )

            def attribute(_: bool) -> Attribution:
                return network_attribution(res.encoder, res.head, res.labels, pipeline, test.X)

            return predict_proba(res.encoder, res.head, pipeline, test), attribute

        return fit

    def classical(name: str) -> Fit:
        def fit(
            _t: Any,
            x: npt.NDArray[np.float32],
            y: list[str],
            test: ExpressionMatrix,
            xt: npt.NDArray[np.float32],
        ) -> tuple[npt.NDArray[np.float32], Attribute]:
            model = fit_baseline(name, x, y, seed=seed)

            def attribute(permutation: bool) -> Attribution | None:
                truth = test.labels(cfg.label_column)
                return baseline_attribution(
                    model, pipeline, test.X, xt, truth, seed=seed, permutation=permutation
                )

            return baseline_proba(model, xt), attribute

        return fit

    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = build_autoencoder(encoder_config(cfg, output_width(pipeline))).encoder
    models: dict[str, Fit] = {
        TRANSFER: neural(autoencoder.encoder, FinetuneOptions(cfg.strategy)),  # type: ignore[arg-type]
        SCRATCH: neural(fresh, FinetuneOptions("full", encoder_lr_scale=1.0)),
    }
    models.update({name: classical(name) for name in cfg.baselines})
    return models


def _automatic(
    cfg: ProtocolConfig,
    autoencoder: Any,
    pipeline: PreprocessPipeline,
    repeat: int,
    classes: list[str],
    result: ProtocolResult,
    where: tuple[str, int | None],
) -> Fit:
    """The job's default path: inner CV on the training cells over the default candidates, the
    winner refitted on them; its probabilities in the protocol's class order."""
    from training.choice.auto import choose_and_predict
    from training.choice.candidates import Problem, default_candidates

    seed = cfg.seed + repeat

    def fit(
        train: ExpressionMatrix, _x: Any, _y: list[str], test: ExpressionMatrix, _xt: Any
    ) -> tuple[npt.NDArray[np.float32], Attribute]:
        problem = Problem(
            matrix=train,
            label_column=cfg.label_column,
            task="classification",
            encoder=autoencoder.encoder,
            latent=cfg.latent,
            pipeline=pipeline,
            head_hidden=defaults.HEAD_HIDDEN,
            head_dropout=defaults.HEAD_DROPOUT,
            train_cfg=dataclasses.replace(cfg.finetune, seed=seed),
        )
        pool = default_candidates(
            "classification", FinetuneOptions(), unlabelled=False, domains=False
        )
        choice, seen, proba = choose_and_predict(problem, test, pool, seed=seed)
        result.choices.append((where[0], where[1], repeat, choice.winner.name))
        out = np.zeros((test.shape[0], len(classes)), dtype=np.float32)
        for j, name in enumerate(seen):
            out[:, classes.index(name)] = proba[:, j]
        # the winner differs from split to split: its genes are in the winner's own row
        return out, lambda _: None

    return fit
