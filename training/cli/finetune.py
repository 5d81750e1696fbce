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
    "input scale (see its model.json)."
)


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `genexfer train finetune`."""
    parsers.data(parser)
    parsers.target(parser)
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
    result = cli.guard(_finetune, args)
    if result is None:
        return 1
    overlap = 1 - result.n_missing_genes / result.n_panel_genes
    print(
        f"panel overlap {overlap:.1%} ({result.n_panel_genes - result.n_missing_genes}"
        f" of {result.n_panel_genes} encoder genes in the data)"
    )
    if result.n_missing_genes:
        print(f"note: {result.n_missing_genes} panel genes were missing and filled")
    if result.history is not None:
        print(f"early stopping on the {result.history.validation}")
        for note in result.history.notes:
            print(f"note: {note}")
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


def _finetune(args: argparse.Namespace) -> ChosenRun:
    from training.export.store import resolve_version

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
