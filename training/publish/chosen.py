"""Fine-tune by choice and publish: the candidates on inner folds, the winner refitted and served.

Shared by `genexfer train finetune` and fine-tuning jobs. With ``strategy="auto"`` every
candidate (`training.choice.candidates.default_candidates`, or the names given) is scored by inner
cross-validation on the training samples and the one-standard-error rule's pick is published
(`training.choice.auto`): a transfer head through
`training.publish.head`, a classical baseline through its ONNX export
(`training.export.baseline`). With a named strategy that strategy is published, compared on the
same folds with logistic regression (ridge for regression), and the card warns when the baseline
scored higher. Either way the card's `selection` holds every candidate's score and the reason.

With `tune`, a hyperparameter search (`training.choice.tune`) runs first and its best settings
join as one more transfer candidate, ``tuned``, scored on the same folds as the others; with a
named strategy the search keeps that strategy and ``tuned`` is what is published. The card's
`selection.tuning` records the study.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contract.align import align_matrix
from contract.card import Metric, ModelCard, Selection
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from contract.vocab import STRATEGIES, StrategyChoice, Task
from training.choice import candidates as cands
from training.choice import tune as search
from training.choice.auto import choose
from training.choice.tune import OnTrial, TuneSettings
from training.evaluation.baselines import baseline_proba, fit_baseline
from training.evaluation.metrics import classification_metrics, regression_metrics
from training.evaluation.splits import Dataset
from training.export.baseline import export_baseline
from training.export.card import CardInfo
from training.export.store import model_ref
from training.methods.options import FinetuneOptions
from training.nn.config import TrainConfig
from training.publish.head import finetune_and_export, selection_metrics
from training.publish.parent import held_out_note, load_autoencoder
from training.train.apply import numeric_target
from training.train.loop import History

# what a named strategy is compared with on the same folds
COMPARED = {"classification": "logistic", "regression": "ridge"}


@dataclass(frozen=True)
class ChosenRun:
    """The published version, what was chosen and why, and its held-out scores."""

    folder: Path
    selection: Selection
    kind: str  # "transfer" or "baseline"
    labels: list[str]  # class names, or the one target's name
    scores: dict[str, float]
    n_test: int
    n_missing_genes: int
    n_panel_genes: int
    history: History | None  # a transfer head's training; None for a baseline


def choose_and_export(
    dataset: Dataset,
    *,
    encoder_folder: Path,
    label_column: str,
    head_hidden: tuple[int, ...],
    head_dropout: float,
    train_cfg: TrainConfig,
    name: str,
    models_dir: Path,
    description: str,
    task: Task = "classification",
    strategy: StrategyChoice = "auto",
    options: FinetuneOptions | None = None,
    candidates: Sequence[str] | None = None,
    progress: bool | None = None,
    job: str | None = None,
    unlabelled: ExpressionMatrix | None = None,
    domain_column: str | None = None,
    input_conversion: Mapping[str, Any] | None = None,
    on_candidate: Callable[[str, int, int], None] | None = None,
    tune: TuneSettings | None = None,
    on_trial: OnTrial | None = None,
) -> ChosenRun:
    """Choose among the candidates on the training samples, publish the winner.

    Parameters are `training.publish.head.finetune_and_export`'s, and:

    strategy:
        ``auto`` (choose), or the strategy to publish (compared with a baseline).
    options:
        The methods (adaptation, semi-supervision) and device of a named strategy; for
        ``auto``, the device and the method weights every candidate uses.
    candidates:
        ``auto``: the candidate names to compare (strategy[+method], or a baseline's name);
        default `default_candidates`.
    on_candidate:
        Called with (name, index, count) as each candidate's inner CV starts.
    tune:
        Search the hyperparameters first (trials, timeout, seed) and add the best settings as
        the candidate ``tuned``; with a named strategy, the search keeps it and ``tuned`` is
        published.
    on_trial:
        Called as each trial of the search ends (number, state, score).
    """
    base = options or FinetuneOptions()
    card = ModelCard.read(encoder_folder)
    autoencoder = load_autoencoder(encoder_folder)
    pipeline = PreprocessPipeline.load(encoder_folder)
    # the encoder's input transforms (e.g. counts → log1p of normalised values) apply as
    # they do when the service classifies
    transforms = card.input_transforms
    matrix, done = align_matrix(dataset.matrix, card.panel, card.input_scale, transforms=transforms)
    # what the data lacked, counted here: the heads below see the aligned matrix
    n_missing = len(done.alignment.missing_genes)
    if unlabelled is not None:
        unlabelled = align_matrix(unlabelled, card.panel, card.input_scale, transforms=transforms)[
            0
        ]
    aligned = Dataset(dataset.name, matrix, dataset.test_idx, dataset.protocol)
    problem = cands.Problem(
        matrix=aligned.train,
        label_column=label_column,
        task=task,
        encoder=autoencoder.encoder,
        latent=autoencoder.config.latent,
        pipeline=pipeline,
        head_hidden=head_hidden,
        head_dropout=head_dropout,
        train_cfg=train_cfg,
        unlabelled=unlabelled,
        domain_column=domain_column,
    )
    forced: str | None = None
    if strategy == "auto":
        pool = (
            [cands.parse(n, task, base) for n in candidates]
            if candidates
            else cands.default_candidates(
                task, base, unlabelled=unlabelled is not None, domains=domain_column is not None
            )
        )
    else:
        named = cands.transfer(dataclasses.replace(base, strategy=strategy))
        forced = named.name
        pool = [named, cands.baseline(COMPARED[task])]
    common: dict[str, Any] = {
        "encoder_folder": encoder_folder,
        "label_column": label_column,
        "head_hidden": head_hidden,
        "head_dropout": head_dropout,
        "train_cfg": train_cfg,
        "name": name,
        "models_dir": models_dir,
        "description": description,
        "task": task,
        "progress": progress,
        "job": job,
        "unlabelled": unlabelled,
        "domain_column": domain_column,
        "input_conversion": input_conversion,
    }
    record = None
    if tune is not None:
        searched = STRATEGIES if strategy == "auto" else (strategy,)
        tuned = search.tune(problem, tune, base, strategies=searched, on_trial=on_trial)
        pool.append(tuned.candidate())
        record = tuned.record
        forced = None if forced is None else cands.TUNED
    choice = choose(
        problem,
        pool,
        seed=train_cfg.seed,
        forced=forced,
        on_candidate=on_candidate,
        tuning=record,
    )
    if choice.winner.kind == "transfer":
        hidden, dropout, cfg = choice.winner.head(problem)
        own = {"head_hidden": hidden, "head_dropout": dropout, "train_cfg": cfg}
        run = finetune_and_export(
            aligned,
            options=choice.winner.options,
            selection=choice.selection,
            n_missing_genes=n_missing,
            **{**common, **own},
        )
        return ChosenRun(
            run.folder,
            choice.selection,
            "transfer",
            run.labels,
            run.scores,
            run.n_test,
            n_missing,
            run.n_panel_genes,
            run.history,
        )
    assert choice.winner.baseline is not None
    folder, labels, scores = _publish_baseline(
        choice.winner.baseline,
        problem,
        aligned,
        choice.selection,
        name=name,
        models_dir=models_dir,
        description=description,
        job=job,
        parent_folder=encoder_folder,
        encoder_card=card,
        extra={} if input_conversion is None else {"input_conversion": dict(input_conversion)},
    )
    return ChosenRun(
        folder,
        choice.selection,
        "baseline",
        labels,
        scores,
        aligned.test.shape[0],
        n_missing,
        len(card.panel.ids),
        None,
    )


def _publish_baseline(
    baseline: str,
    problem: cands.Problem,
    dataset: Dataset,
    selection: Selection,
    *,
    name: str,
    models_dir: Path,
    description: str,
    job: str | None,
    parent_folder: Path,
    encoder_card: ModelCard,
    extra: dict[str, Any],
) -> tuple[Path, list[str], dict[str, float]]:
    """Refit the winning baseline on every training sample, score it on the test samples, publish
    it with the encoder's preprocessing fused in front."""
    seed = problem.train_cfg.seed
    model = fit_baseline(
        baseline, problem.features(), problem.targets(), task=problem.task, seed=seed
    )
    test = dataset.test
    scores: dict[str, float] = {}
    features = problem.pipeline.transform(test.X).astype(np.float32)
    if problem.task == "classification" and test.shape[0]:
        proba = baseline_proba(model, features)
        labels = [str(c) for c in model.classes_]
        predicted = [labels[i] for i in proba.argmax(axis=1)]
        scores = classification_metrics(test.labels(problem.label_column), predicted, proba, labels)
    elif problem.task == "regression" and test.shape[0] >= 2:
        predicted_values = np.asarray(model.predict(features), dtype=np.float64)
        scores = regression_metrics(numeric_target(test, problem.label_column), predicted_values)
    protocol = (
        f"{held_out_note(dataset, encoder_card)} The classical baseline {baseline} "
        f"(scikit-learn) on the encoder's preprocessing, refitted on every training sample "
        f"after winning the inner cross-validation."
    )
    metrics = [Metric(name=k, value=v, split="test", protocol=protocol) for k, v in scores.items()]
    metrics += selection_metrics(selection)
    info = CardInfo(
        description=f"{description} Published: the classical baseline {baseline}, which won "
        f"the automatic choice.",
        training_data=dataset.training_data(problem.label_column),
        metrics=metrics,
        extra={"task": problem.task, "baseline": baseline, **extra},
        job=job,
        selection=selection,
    )
    folder = export_baseline(
        model,
        problem.pipeline,
        baseline=baseline,
        name=name,
        models_dir=models_dir,
        info=info,
        reference=problem.matrix.X,
        parent=model_ref(parent_folder),
    )
    names = [str(c) for c in model.classes_] if problem.task == "classification" else []
    return folder, names or [problem.label_column], scores
