"""What several `genexfer train` commands share: argument groups, reading --data, error guard.

Standard library only (plus the stdlib-only `training.train.defaults` and `training.nn.config`):
torch loads when a command runs, so `genexfer --help` works where only the service is installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, Protocol, TypeAlias, TypeVar

from contract.vocab import BASELINES, ORIENTATIONS
from training.nn.config import TrainConfig

if TYPE_CHECKING:
    from contract.matrix import ExpressionMatrix
    from training.evaluation.splits import Dataset

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


def common(parser: argparse.ArgumentParser) -> None:
    """--models-dir, --seed, --quiet."""
    parser.add_argument(
        "--models-dir", type=Path, default=Path("models"), help=d("model store to publish into")
    )
    parser.add_argument("--seed", type=int, default=0, help=d("seeds splits, init, batch order"))
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def data(parser: argparse.ArgumentParser, *, required: bool = True, layer: str = "X") -> None:
    """--data, --layer, --orientation."""
    parser.add_argument(
        "--data", type=Path, required=required, metavar="FILE", help=".h5ad, .csv or .tsv (.gz ok)"
    )
    parser.add_argument("--layer", default=layer, help=d("h5ad matrix: X, raw or a layer name"))
    parser.add_argument(
        "--orientation",
        choices=ORIENTATIONS,
        default="samples_as_rows",
        help=d("CSV/TSV layout; the first column holds the ids"),
    )


def optimisation(
    parser: argparse.ArgumentParser,
    base: TrainConfig,
    *,
    title: str = "optimisation",
    epochs: bool = True,
) -> None:
    """--epochs (unless a command names its own), --batch-size, --lr, --weight-decay,
    --val-fraction, --patience."""
    group = parser.add_argument_group(title)
    if epochs:
        group.add_argument("--epochs", type=int, default=base.epochs, help=d("maximum epochs"))
    group.add_argument("--batch-size", type=int, default=base.batch_size, help=d("minibatch size"))
    group.add_argument("--lr", type=float, default=base.lr, help=d("AdamW learning rate"))
    group.add_argument(
        "--weight-decay", type=float, default=base.weight_decay, help=d("AdamW weight decay")
    )
    group.add_argument(
        "--val-fraction",
        type=float,
        default=base.val_fraction,
        help=d("share of the training split used for early stopping"),
    )
    group.add_argument(
        "--patience", type=int, default=base.patience, help=d("epochs without improvement")
    )


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


def read(args: argparse.Namespace, obs_columns: tuple[str, ...]) -> ExpressionMatrix:
    """The --data file as a matrix (`obs_columns`: table columns that are not genes)."""
    from contract.io.readers import read_matrix

    if args.data.name.lower().endswith(".h5ad"):
        return read_matrix(args.data, layer=args.layer)
    return read_matrix(args.data, orientation=args.orientation, obs_columns=obs_columns)


def held_out(args: argparse.Namespace, matrix: ExpressionMatrix, *, stratify: bool) -> Dataset:
    """`matrix` (from --data) with --test-fraction held out, seeded by --seed (`stratify`: by
    --label-column)."""
    from training.evaluation.splits import hold_out

    return hold_out(
        args.data.name,
        matrix,
        test_fraction=args.test_fraction,
        seed=args.seed,
        stratify_by=args.label_column if stratify else None,
    )


def widths_option(
    group: argparse._ActionsContainer, flag: str, default: tuple[int, ...], help: str
) -> None:
    """An option taking comma-separated layer widths (see `widths`)."""
    group.add_argument(flag, type=widths, default=default, metavar="W[,W...]", help=help)


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


def d(text: str) -> str:
    """Help text that shows the default."""
    return text + " (default: %(default)s)"


def show(widths: tuple[int, ...]) -> str:
    """Widths as the command line takes them."""
    return ",".join(str(w) for w in widths)


def widths(text: str) -> tuple[int, ...]:
    """'256,64' → (256, 64); '' → ()."""
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def positive_ints(text: str) -> tuple[int, ...]:
    """'5,10,25' → (5, 10, 25); refuses empty and non-positive lists."""
    values = widths(text)
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def baseline_names(text: str) -> tuple[str, ...]:
    """A comma-separated list of known classification baselines."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown baselines {unknown}; have {list(BASELINES)}")
    return names
