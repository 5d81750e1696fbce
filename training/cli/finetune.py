"""`genexfer train finetune`: a classifier or regression head on a published encoder."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from contract.vocab import STRATEGY_CHOICES
from training.cli import args as cli
from training.cli import multiomics, parsers
from training.train import defaults

if TYPE_CHECKING:
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
    parsers.data(parser)
    parsers.target(parser, multi_task=True)
    parsers.common(parser)
    parsers.optimisation(parser, defaults.FINETUNE)
    parsers.head(parser)
    parser.add_argument("--description", default="", help="card description (default: generated)")
    group = parser.add_argument_group("strategy")
    group.add_argument(
        "--strategy",
        choices=STRATEGY_CHOICES,
        default="auto",
        help="auto: inner cross-validation on the training samples over the strategies (with "
        "adaptation and semi-supervision where the data allow) and classical baselines, the "
        "best published; frozen: head only; partial: + top --unfreeze-top encoder layers; "
        "gradual: one more layer per stage; full: all, encoder at a lower LR. A named "
        "strategy is compared with logistic regression (ridge) and warned about when it "
        "loses (default: %(default)s)",
    )
    parsers.encoder_training(parser, group)
    multiomics.arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Fine-tune a head on --encoder with --data and publish the classifier or regressor."""
    if multiomics.wanted(args):
        return multiomics.run(args)
    if args.multi_task:
        return _run_multitask(args)
    result = cli.guard(_finetune, args)
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
    options = cli.finetune_options(args)  # bad values fail before any file is read
    cli.check_candidates(args)
    conversion = cli.conversion(args)
    encoder_folder = resolve_version(args.models_dir, args.encoder)
    matrix, unlabelled = cli.labelled(args, encoder_folder, conversion)
    dataset = cli.held_out(args, matrix, stratify=classify)
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
    return cli.publish_chosen(
        args,
        dataset,
        encoder_folder,
        how=how,
        options=options,
        unlabelled=unlabelled,
        conversion=conversion,
    )


def _run_multitask(args: argparse.Namespace) -> int:
    result = cli.guard(_multitask, args)
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
    options = cli.finetune_options(args)
    if args.candidates:
        raise ValueError("--candidates are compared by --strategy auto, which is single-task")
    conversion = cli.conversion(args)
    encoder_folder = resolve_version(args.models_dir, args.encoder)
    matrix, unlabelled = cli.labelled(args, encoder_folder, conversion)
    first = tasks[0]
    full = first.kind == "classification" and cli.has_every_label(matrix, first.column)
    dataset = cli.held_out(args, matrix, stratify=full, column=first.column)
    names = ", ".join(f"{t.column!r} ({t.kind}, weight {t.weight:g})" for t in tasks)
    description = cli.card_description(
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
        train_cfg=cli.train_config(args),
        name=args.name,
        models_dir=args.models_dir,
        description=description,
        options=options,
        progress=cli.progress(args),
        unlabelled=unlabelled,
        domain_column=args.domain_column,
        input_conversion=None if conversion is None else conversion.record(),
    )
