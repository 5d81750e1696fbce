"""`genexfer train tune`: search the fine-tuning settings, then publish the automatic choice."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from contract import defaults as shared
from contract.vocab import STRATEGY_CHOICES
from training.cli.shared import command, inputs, options, settings
from training.train import defaults

if TYPE_CHECKING:
    from training.publish.chosen import ChosenRun


NAME = "tune"
HELP = "search the fine-tuning settings (Optuna), then publish the best of the choice"
DESCRIPTION = (
    "Like `finetune`, with a hyperparameter search first: an Optuna study (TPE sampler, "
    "seeded by --seed; median pruning fold by fold) over the strategy, learning rate, weight "
    "decay, head width (linear, 32, 64, 128) and dropout, epochs and patience (--epochs is "
    "the ceiling), the encoder's learning-rate share and, with rows without a label or a "
    "--domain-column, the domain adaptation and its weight. Every trial is scored by inner "
    "cross-validation on the training samples only; the test split is held out before. The "
    "best settings then join the automatic choice as the candidate 'tuned', beside the "
    "transfer strategies and the classical baselines, and the choice's one-standard-error "
    "rule on its own folds publishes (tuned counts as the most complex candidate; with a "
    "named --strategy, the search keeps it and the tuned model is "
    "published). The card's selection records every candidate and the study."
)


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `genexfer train tune`."""
    options.data(parser)
    options.target(parser)
    options.common(parser)
    options.optimisation(parser, defaults.FINETUNE, title="optimisation (the first trial)")
    options.head(parser)
    parser.add_argument("--description", default="", help="card description (default: generated)")
    group = parser.add_argument_group("the search")
    group.add_argument(
        "--trials",
        type=int,
        default=shared.TUNE_TRIALS,
        help=f"trials to run, 1 to {shared.TUNE_MAX_TRIALS} (default: %(default)s)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="no trial starts after this many seconds (default: no limit)",
    )
    group.add_argument(
        "--strategy",
        choices=STRATEGY_CHOICES,
        default="auto",
        help="auto: search every strategy and choose among them and the baselines; a name: "
        "search that strategy's settings and publish it (default: %(default)s)",
    )
    options.encoder_training(
        parser, group, lr_help="encoder LR as a share of --lr (the first trial)"
    )


def run(args: argparse.Namespace) -> int:
    """Search, choose and publish; print the best trial, the spread and the choice."""
    result = command.guard(_tune, args)
    if result is None:
        return 1
    selection = result.selection
    tuning = selection.tuning
    assert tuning is not None
    best = " ".join(f"{k}={_show(v)}" for k, v in tuning.best_params.items())
    print(
        f"best trial: {selection.metric} {tuning.best_value:.4f} ({tuning.complete} complete, "
        f"{tuning.pruned} pruned, {tuning.failed} failed of {tuning.trials}): {best}"
    )
    spread = tuning.spread
    print(
        f"spread of the complete trials: min {spread.min:.4f}, median {spread.median:.4f}, "
        f"max {spread.max:.4f}"
    )
    for c in sorted(selection.candidates, key=lambda c: -c.mean):
        print(f"inner CV {c.name}: {selection.metric} {c.mean:.4f} ± {c.sd:.4f}")
    print(f"chosen: {selection.winner}. {selection.reason}")
    for warning in selection.warnings:
        print(f"warning: {warning}")
    for key, value in result.scores.items():
        print(f"held-out {key} {value:.4f}")
    print(f"published {result.folder}")
    return 0


def _tune(args: argparse.Namespace) -> ChosenRun:
    from training.choice.tune import TuneSettings
    from training.export.store import resolve_version

    # bad values fail before any file is read
    search = TuneSettings(trials=args.trials, timeout_s=args.timeout, seed=args.seed)
    options = settings.finetune_options(args)
    settings.check_candidates(args)
    conversion = inputs.conversion(args)
    encoder_folder = resolve_version(args.models_dir, args.encoder)
    matrix, unlabelled = inputs.labelled(args, encoder_folder, conversion)
    dataset = settings.held_out(args, matrix, stratify=args.task == "classification")
    how = (
        "the best of an inner cross-validation over transfer heads (one with settings from a "
        f"{args.trials}-trial search) and classical baselines"
        if args.strategy == "auto"
        else f"a head ({args.strategy}) with settings from a {args.trials}-trial search"
    )

    def trial(number: int, state: str, value: float | None) -> None:
        if not args.quiet:
            shown = "-" if value is None or math.isnan(value) else f"{value:.4f}"
            print(f"trial {number}: {state} {shown}", flush=True)

    return settings.publish_chosen(
        args,
        dataset,
        encoder_folder,
        how=how,
        options=options,
        unlabelled=unlabelled,
        conversion=conversion,
        tune=search,
        on_trial=trial,
    )


def _show(value: float | int | str) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
