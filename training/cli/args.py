"""What several `genexfer train` commands make of their arguments: the data read, the training
settings, the publish call; the command protocol and the error guard (their options:
`training.cli.parsers`).

Standard library only (plus the stdlib-only `training.nn.config`): torch loads when a command
runs, so `genexfer --help` works where only the service is installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeAlias, TypeVar

from contract.vocab import parse_candidate
from training.nn.config import TrainConfig

if TYPE_CHECKING:
    from contract.matrix import ExpressionMatrix
    from training.evaluation.splits import Dataset
    from training.methods.options import FinetuneOptions
    from training.preprocess.convert import Conversion
    from training.publish.chosen import ChosenRun

P = ParamSpec("P")
R = TypeVar("R")
# a string: argparse's class is not subscriptable at run time, only for type checkers
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Command(Protocol):
    """A command module: its name, one-line help, description, options and what it runs."""

    NAME: str
    HELP: str
    DESCRIPTION: str

    def arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's options to its parser."""

    def run(self, args: argparse.Namespace) -> int:
        """Do the command's work; the exit status."""


def add_command(commands: Subparsers, command: Command) -> None:
    """Add a command module's parser to `commands`; parsing it selects the module's `run`."""
    parser = commands.add_parser(command.NAME, help=command.HELP, description=command.DESCRIPTION)
    command.arguments(parser)
    parser.set_defaults(func=command.run)


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


def read(
    args: argparse.Namespace, obs_columns: tuple[str, ...], path: Path | None = None
) -> ExpressionMatrix:
    """The --data file (or `path`, read the same way) as a matrix (`obs_columns`: table columns
    that are not genes)."""
    from contract.io.readers import read_matrix

    path = args.data if path is None else path
    if path.name.lower().endswith(".h5ad"):
        return read_matrix(path, layer=args.layer)
    return read_matrix(path, orientation=args.orientation, obs_columns=obs_columns)


def labelled(
    args: argparse.Namespace, encoder_folder: Path, conversion: Conversion | None
) -> tuple[ExpressionMatrix, ExpressionMatrix | None]:
    """The --data rows with a --label-column value, and the rows without one (those of --data
    and of --unlabelled), on the encoder's input scale (`conversion`: --counts-to-log)."""
    from contract.card import ModelCard
    from contract.io.readers import attach_obs, read_obs
    from training.preprocess.convert import prepared
    from training.train.apply import split_unlabelled, stack_rows

    scale = ModelCard.read(encoder_folder).input_scale
    domain = (args.domain_column,) if args.domain_column else ()
    table = args.labels is None and args.orientation == "samples_as_rows"
    obs = None if args.labels is None else read_obs(args.labels)
    columns = label_columns(args)
    matrix = read(args, obs_columns=(*columns, *domain) if table else ())
    if obs is not None:
        matrix = attach_obs(matrix, obs)
    matrix, rest = split_unlabelled(prepared(matrix, scale, conversion), columns)
    if args.unlabelled is not None:
        more = read(args, obs_columns=domain if table else (), path=args.unlabelled)
        if obs is not None and set(more.sample_ids) <= set(obs.index.astype(str)):
            more = attach_obs(more, obs)
        more = prepared(more, scale, conversion)
        rest = more if rest is None else stack_rows(rest, more)
    return matrix, rest


def has_every_label(matrix: ExpressionMatrix, column: str) -> bool:
    """Whether every row of `matrix` has a value in `column`."""
    from training.train.apply import labelled_rows

    return bool(labelled_rows(matrix, column).all())


def label_columns(args: argparse.Namespace) -> tuple[str, ...]:
    """The label columns: each --multi-task's, else --label-column."""
    tasks = getattr(args, "multi_task", None)
    return tuple(t[0] for t in tasks) if tasks else (args.label_column,)


def conversion(args: argparse.Namespace) -> Conversion | None:
    """The --counts-to-log conversion, if asked for."""
    from training.preprocess.convert import Conversion

    return Conversion(args.target_sum) if args.counts_to_log else None


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


def guard(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
    """Run `func`; bad input (files, ids, names) is the user's to fix: a message, no traceback."""
    try:
        return func(*args, **kwargs)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def progress(args: argparse.Namespace) -> bool | None:
    """Progress bars: off with --quiet, else only on a terminal."""
    return False if args.quiet else None


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
