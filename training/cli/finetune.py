"""`genexfer train finetune`: a classifier or regression head on a published encoder.

With --multi-task, one encoder with a head per task (`training.publish.multitask`); with
multi-omics data (--data FILE.h5mu, or --modality NAME=FILE), a multi-omics classifier
(`training.multiomics.publish`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from contract.vocab import STRATEGY_CHOICES
from training.cli.shared import command, inputs, options, settings
from training.train import defaults

if TYPE_CHECKING:
    from training.multiomics.publish import MultiOmicsRun
    from training.publish.chosen import ChosenRun
    from training.publish.multitask import MultitaskRun
    from training.train.loop import History


NAME = "finetune"
HELP = "fine-tune a classifier or regression head on a published encoder"
DESCRIPTION = (
    "Load a published encoder (weights, config and preprocessing from its version "
    "folder), align the data to its gene panel, hold out a test split (stratified by "
    "label for classification), train a head with the chosen strategy (classification: "
    "class-weighted cross-entropy; regression: mean squared error on the standardised "
    "target; early stopping) and publish preprocess → encoder → head as a new version "
    "of MODELS_DIR/NAME, its parent the encoder: outputs 'logits' and 'probabilities' "
    "(classification) or 'prediction' on the target's own scale (regression), plus the "
    "head alone as head.onnx (input 'embedding'). The data must be on the encoder's "
    "input scale (see its model.json). With --multi-task (repeated) in place of "
    "--label-column: one encoder with a head per task, trained on the weighted sum of the "
    "tasks' losses, published as one graph with outputs '<task>.logits' and "
    "'<task>.probabilities' (classification) or '<task>.prediction' (regression); each task "
    "is compared with logistic (ridge) regression on the held-out samples and the card warns "
    "where that baseline scores higher."
)


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `genexfer train finetune`."""
    options.data(parser)
    options.target(parser, multi_task=True)
    options.common(parser)
    options.optimisation(parser, defaults.FINETUNE)
    options.head(parser)
    parser.add_argument("--description", default="", help="card description (default: generated)")
    group = parser.add_argument_group("strategy")
    group.add_argument(
        "--strategy",
        choices=STRATEGY_CHOICES,
        default="auto",
        help="auto: inner cross-validation on the training samples over the strategies (with "
        "adaptation and semi-supervision where the data allow) and classical baselines, the "
        "simplest within one standard error of the best published; frozen: head only; "
        "partial: + top --unfreeze-top encoder layers; "
        "gradual: one more layer per stage; full: all, encoder at a lower LR. A named "
        "strategy is compared with logistic regression (ridge) and warned about when it "
        "loses (default: %(default)s)",
    )
    options.encoder_training(parser, group)
    options.multiomics(parser)


def run(args: argparse.Namespace) -> int:
    """Fine-tune a head on --encoder with --data and publish the classifier or regressor."""
    if _wants_multiomics(args):
        return _run_multiomics(args)
    if args.multi_task:
        return _run_multitask(args)
    result = command.guard(_finetune, args)
    if result is None:
        return 1
    _print_panel_overlap(result)
    if result.n_missing_genes:
        print(f"note: {result.n_missing_genes} panel genes were missing and filled")
    if result.history is not None:
        _print_stopping(result.history)
    for key, value in result.scores.items():
        print(f"held-out {key} {value:.4f}")
    selection = result.selection
    print(f"inner cross-validation: {selection.protocol}")
    for c in sorted(selection.candidates, key=lambda c: -c.mean):
        mark = "  <- published" if c.name == selection.winner else ""
        print(f"  {c.name:<24} {c.kind:<9} {selection.metric} {c.mean:.3f} ± {c.sd:.3f}{mark}")
    print(f"why: {selection.reason}")
    for warning in selection.warnings:
        print(f"WARNING: {warning}")
    print(f"published {result.folder}")
    return 0


def _print_panel_overlap(result: ChosenRun | MultitaskRun) -> None:
    overlap = 1 - result.n_missing_genes / result.n_panel_genes
    print(
        f"panel overlap {overlap:.1%} ({result.n_panel_genes - result.n_missing_genes}"
        f" of {result.n_panel_genes} encoder genes in the data)"
    )


def _print_stopping(history: History) -> None:
    print(f"early stopping on the {history.validation}")
    for note in history.notes:
        print(f"note: {note}")


def _finetune(args: argparse.Namespace) -> ChosenRun:
    from training.export.store import resolve_version

    if args.label_column is None:
        raise ValueError("give --label-column (one task) or --multi-task (several)")
    classify = args.task == "classification"
    options = settings.finetune_options(args)  # bad values fail before any file is read
    settings.check_candidates(args)
    conversion = inputs.conversion(args)
    encoder_folder = resolve_version(args.models_dir, args.encoder)
    matrix, unlabelled = inputs.labelled(args, encoder_folder, conversion)
    dataset = settings.held_out(args, matrix, stratify=classify)
    methods = "".join(
        [
            f", {args.adaptation} adaptation" if args.adaptation != "none" else "",
            f", {args.semi_supervised}" if args.semi_supervised != "none" else "",
        ]
    )
    how = (
        "the best of an inner cross-validation over transfer heads and classical baselines"
        if args.strategy == "auto"
        else f"a head ({args.strategy}{methods})"
    )
    return settings.publish_chosen(
        args,
        dataset,
        encoder_folder,
        how=how,
        options=options,
        unlabelled=unlabelled,
        conversion=conversion,
    )


def _run_multitask(args: argparse.Namespace) -> int:
    result = command.guard(_multitask, args)
    if result is None:
        return 1
    _print_panel_overlap(result)
    _print_stopping(result.history)
    for task in result.tasks:
        print(f"task {task.name} ({task.kind}, weight {task.weight:g}, {task.n_labelled} labelled)")
        for key, value in result.scores.get(task.name, {}).items():
            base = result.baseline_scores[task.name].get(key, float("nan"))
            print(f"  held-out {key} {value:.4f} (baseline {base:.4f})")
        for warning in task.warnings:
            print(f"  WARNING: {warning}")
    print(f"published {result.folder}")
    return 0


def _multitask(args: argparse.Namespace) -> MultitaskRun:
    from training.export.store import resolve_version
    from training.publish.multitask import multitask_and_export
    from training.train.multitask import TaskSpec

    if args.label_column is not None:
        raise ValueError(
            "--label-column and --multi-task exclude each other: name every task with --multi-task"
        )
    if args.strategy == "auto":
        raise ValueError(
            "the automatic choice is single-task: a multi-task fine-tune needs a "
            "named --strategy (frozen, partial, gradual or full)"
        )
    tasks = [TaskSpec(column, kind, weight) for column, kind, weight in args.multi_task]
    options = settings.finetune_options(args)
    if args.candidates:
        raise ValueError("--candidates are compared by --strategy auto, which is single-task")
    conversion = inputs.conversion(args)
    encoder_folder = resolve_version(args.models_dir, args.encoder)
    matrix, unlabelled = inputs.labelled(args, encoder_folder, conversion)
    first = tasks[0]
    full = first.kind == "classification" and inputs.has_every_label(matrix, first.column)
    dataset = settings.held_out(args, matrix, stratify=full, column=first.column)
    names = ", ".join(f"{t.column!r} ({t.kind}, weight {t.weight:g})" for t in tasks)
    description = settings.card_description(
        args,
        f"Multi-task model of {names}",
        f"one {args.strategy} encoder {encoder_folder.parent.name}:{encoder_folder.name} "
        "with a head per task",
        dataset,
        conversion,
    )
    return multitask_and_export(
        dataset,
        encoder_folder=encoder_folder,
        tasks=tasks,
        head_hidden=args.head_hidden,
        head_dropout=args.head_dropout,
        train_cfg=settings.train_config(args),
        name=args.name,
        models_dir=args.models_dir,
        description=description,
        options=options,
        progress=command.progress(args),
        unlabelled=unlabelled,
        domain_column=args.domain_column,
        input_conversion=None if conversion is None else conversion.record(),
    )


def _wants_multiomics(args: argparse.Namespace) -> bool:
    """Whether the finetune command was given multi-omics data."""
    data: Path | None = getattr(args, "data", None)
    return bool(getattr(args, "modality", None)) or (
        data is not None and data.name.lower().endswith(".h5mu")
    )


def _run_multiomics(args: argparse.Namespace) -> int:
    """Train and publish a multi-omics classifier; print what it scored and what it had."""
    result = command.guard(_multiomics, args)
    if result is None:
        return 1
    print(
        f"panel overlap {1 - result.n_missing_genes / result.n_panel_genes:.1%} "
        f"({result.n_panel_genes - result.n_missing_genes} of {result.n_panel_genes} genes)"
    )
    for name, share in result.presence.items():
        print(f"modality {name}: present in {share:.0%} of the training samples")
    for key, value in result.scores.items():
        print(f"held-out {key} {value:.4f}")
    if result.selection is not None:
        print(result.selection.reason)
        for warning in result.selection.warnings:
            print(f"WARNING: {warning}")
    print(f"published {result.folder}")
    return 0


def _multiomics(args: argparse.Namespace) -> MultiOmicsRun:
    from training.export.store import resolve_version
    from training.multiomics.data import read_h5mu, read_tables
    from training.multiomics.publish import multiomics_and_export

    if args.task != "classification":
        raise ValueError("multi-omics fine-tuning trains classifiers only (--task classification)")
    if args.strategy == "auto":
        print("note: the automatic choice does not cover multi-omics models: strategy frozen")
        args.strategy = "frozen"
    options = settings.finetune_options(args)
    encoder_folder = resolve_version(args.models_dir, args.encoder)
    files = inputs.modality_files(args.modality)
    if args.data.name.lower().endswith(".h5mu"):
        if files:
            raise ValueError("--modality goes with a table of expression, not an .h5mu")
        data = read_h5mu(args.data)
    else:
        expression = inputs.read(args, obs_columns=(args.label_column,))
        data = read_tables(expression, files)
    return multiomics_and_export(
        data,
        data_name=args.data.name,
        encoder_folder=encoder_folder,
        label_column=args.label_column,
        train_cfg=settings.train_config(args),
        options=options,
        name=args.name,
        models_dir=args.models_dir,
        description=args.description,
        test_fraction=args.test_fraction,
        logit=tuple(args.logit_modality or ("methylation",)),
        progress=command.progress(args),
    )
