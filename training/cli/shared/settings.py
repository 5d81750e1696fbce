"""What the training commands make of their arguments: the optimisation settings, the
fine-tuning options and candidates, the held-out split, the card's description, and the publish
call `finetune` and `tune` share.

Standard library only (plus the stdlib-only `training.nn.config`): torch loads when a command
runs, so `genexfer --help` works where only the service is installed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.vocab import parse_candidate
from training.cli.shared.command import progress
from training.nn.config import TrainConfig

if TYPE_CHECKING:
    from contract.matrix import ExpressionMatrix
    from training.evaluation.splits import Dataset
    from training.methods.options import FinetuneOptions
    from training.preprocess.convert import Conversion
    from training.publish.chosen import ChosenRun


def train_config(args: argparse.Namespace, epochs: int | None = None) -> TrainConfig:
    """The optimisation settings given on the command line (`epochs` instead of --epochs)."""
    return TrainConfig(
        epochs=args.epochs if epochs is None else epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        val_fraction=args.val_fraction,
        patience=args.patience,
        seed=args.seed,
    )


def check_candidates(args: argparse.Namespace) -> None:
    """Refuse --candidates that are not names, or given with a named --strategy."""
    for name in args.candidates or ():
        parse_candidate(name, args.task)
    if args.candidates and args.strategy != "auto":
        raise ValueError("--candidates are compared by --strategy auto; leave one of them out")


def finetune_options(args: argparse.Namespace) -> FinetuneOptions:
    """The FinetuneOptions the --strategy and method options describe."""
    from training.methods.options import FinetuneOptions

    auto = args.strategy == "auto"
    if auto and (args.adaptation != "none" or args.semi_supervised != "none"):
        raise ValueError(
            "with --strategy auto the methods are candidates: name them in --candidates "
            "(e.g. full+dann,frozen+pseudo_label), or name one --strategy"
        )
    return FinetuneOptions(
        strategy="frozen" if auto else args.strategy,  # auto: the candidates' common settings
        unfreeze_top=args.unfreeze_top,
        encoder_lr_scale=args.encoder_lr_scale,
        adaptation=args.adaptation,
        adaptation_weight=args.adaptation_weight,
        semi_supervised=args.semi_supervised,
        confidence=args.confidence,
        semi_weight=args.semi_weight,
        min_epochs=args.min_epochs,
        device=args.device,
    )


def held_out(
    args: argparse.Namespace,
    matrix: ExpressionMatrix,
    *,
    stratify: bool,
    column: str | None = None,
) -> Dataset:
    """`matrix` (from --data) with --test-fraction held out, seeded by --seed (`stratify`: by
    `column`, by default --label-column)."""
    from training.evaluation.splits import hold_out

    return hold_out(
        args.data.name,
        matrix,
        test_fraction=args.test_fraction,
        seed=args.seed,
        stratify_by=(column or args.label_column) if stratify else None,
    )


def card_description(
    args: argparse.Namespace,
    subject: str,
    model: str,
    dataset: Dataset,
    conversion: Conversion | None,
) -> str:
    """--description, or the card's own: `subject` (what the model predicts) on --data, by
    `model` (which encoder, how), the training samples' count and any input conversion."""
    given: str | None = args.description
    return given or (
        f"{subject} on {args.data.name}: {model}, trained on {dataset.train.shape[0]} samples."
        + ("" if conversion is None else " " + conversion.describe())
    )


def publish_chosen(
    args: argparse.Namespace,
    dataset: Dataset,
    encoder_folder: Path,
    *,
    how: str,
    options: FinetuneOptions,
    unlabelled: ExpressionMatrix | None,
    conversion: Conversion | None,
    **extra: Any,
) -> ChosenRun:
    """`choose_and_export` with the options `finetune` and `tune` share; `how` is the card
    description's words for the model, `extra` the command's own arguments (e.g. tune=)."""
    from training.publish.chosen import choose_and_export

    kind = "Classifier" if args.task == "classification" else "Regressor"
    description = card_description(
        args,
        f"{kind} of {args.label_column!r}",
        f"{how} on the encoder {encoder_folder.parent.name}:{encoder_folder.name}",
        dataset,
        conversion,
    )
    return choose_and_export(
        dataset,
        encoder_folder=encoder_folder,
        label_column=args.label_column,
        head_hidden=args.head_hidden,
        head_dropout=args.head_dropout,
        train_cfg=train_config(args),
        name=args.name,
        models_dir=args.models_dir,
        description=description,
        task=args.task,
        strategy=args.strategy,
        candidates=args.candidates,
        options=options,
        progress=progress(args),
        unlabelled=unlabelled,
        domain_column=args.domain_column,
        input_conversion=None if conversion is None else conversion.record(),
        **extra,
    )
