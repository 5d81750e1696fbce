"""What several `genexfer train` commands share: argument groups, reading --data, error guard.

Standard library only (plus the stdlib-only `training.train.defaults` and `training.nn.config`):
torch loads when a command runs, so `genexfer --help` works where only the service is installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeAlias, TypeVar

from contract.vocab import (
    ADAPTATIONS,
    BASELINES,
    ORIENTATIONS,
    SEMI_SUPERVISION,
    TASKS,
    parse_candidate,
)
from training.nn.config import TrainConfig
from training.train import defaults

if TYPE_CHECKING:
    from contract.matrix import ExpressionMatrix
    from training.evaluation.splits import Dataset
    from training.preprocess.convert import Conversion
    from training.publish.chosen import ChosenRun
    from training.train.finetune import FinetuneOptions

DEVICES = ("cpu", "cuda", "auto")

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


def target(parser: argparse.ArgumentParser, *, multi_task: bool = False) -> None:
    """What a head is trained for and where it goes: --label-column, --task, --labels,
    --encoder, --name, --test-fraction (`multi_task`: and --multi-task, in place of
    --label-column and --task)."""
    parser.add_argument(
        "--label-column",
        required=not multi_task,
        help="obs column (h5ad), table column (samples-as-rows CSV) or --labels column: the "
        "classes, or the numbers to predict with --task regression"
        + (" (or give --multi-task)" if multi_task else ""),
    )
    if multi_task:
        parser.add_argument(
            "--multi-task",
            action="append",
            type=task_spec,
            metavar="COLUMN[:KIND[:WEIGHT]]",
            help="multi-task: a label column with its kind (classification, the default, or "
            "regression) and loss weight (default 1); repeat for each task, e.g. --multi-task "
            "bulk_labels --multi-task G2M_score:regression:0.5. One encoder is fine-tuned with "
            "a head per task on the weighted sum of their losses (a row missing a task's label "
            "is masked for that task); needs a named --strategy",
        )
    parser.add_argument(
        "--task", choices=TASKS, default="classification", help=d("what the head predicts")
    )
    parser.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help="CSV/TSV of per-sample metadata whose first column holds the sample ids",
    )
    parser.add_argument("--encoder", required=True, help="NAME or NAME:VERSION in --models-dir")
    parser.add_argument("--name", required=True, help="model name to publish under")
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=defaults.TEST_FRACTION,
        help="share held out (stratified by label when classifying) for the card's metrics "
        "(default: %(default)s)",
    )


def task_spec(text: str) -> tuple[str, str, float]:
    """'G2M_score:regression:0.5' → (column, kind, weight); the kind and weight may be left out
    (classification, 1), and a column may itself hold ':' (read from the right)."""
    column, kind, weight = text, "classification", 1.0
    head, _, last = column.rpartition(":")
    if head:
        try:
            weight = float(last)
            column = head
        except ValueError:
            pass
    head, _, last = column.rpartition(":")
    if head and last in TASKS:
        column, kind = head, last
    if not column.strip(":") or column[0] == ":" or not 0 < weight < float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected COLUMN[:classification|regression[:WEIGHT>0]], got {text!r}"
        )
    return column, kind, weight


def head(parser: argparse.ArgumentParser) -> None:
    """--head-hidden, --head-dropout."""
    group = parser.add_argument_group("head")
    shown = show(defaults.HEAD_HIDDEN)
    help_text = f"hidden widths, '' for a linear head (default: {shown!r})"
    widths_option(group, "--head-hidden", defaults.HEAD_HIDDEN, help_text)
    group.add_argument(
        "--head-dropout", type=float, default=defaults.HEAD_DROPOUT, help=d("dropout")
    )


def unlabelled(parser: argparse.ArgumentParser) -> None:
    """--unlabelled: more rows without a label."""
    parser.add_argument(
        "--unlabelled",
        type=Path,
        metavar="FILE",
        help="more samples without a label (e.g. the new domain's), read like --data; rows of "
        "--data without a label are used the same way",
    )


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


def device_option(group: argparse._ActionsContainer) -> None:
    """--device: where training runs."""
    group.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help=d("auto: CUDA when present; cuda trains in float16 mixed precision"),
    )


def counts_to_log(parser: argparse.ArgumentParser) -> None:
    """--counts-to-log and --target-sum: convert counts for a log-scale model."""
    group = parser.add_argument_group("input scale")
    group.add_argument(
        "--counts-to-log",
        action="store_true",
        help="the data are counts and the model takes log values: normalise every sample to "
        "--target-sum and take log1p first (recorded with the model); without it, values on "
        "the wrong scale are refused",
    )
    group.add_argument(
        "--target-sum", type=float, default=1e4, help=d("--counts-to-log: per-sample total")
    )


def conversion(args: argparse.Namespace) -> Conversion | None:
    """The --counts-to-log conversion, if asked for."""
    from training.preprocess.convert import Conversion

    return Conversion(args.target_sum) if args.counts_to_log else None


def methods(parser: argparse.ArgumentParser) -> None:
    """The fine-tuning methods: adaptation, semi-supervision, --min-epochs, --device."""
    group = parser.add_argument_group(
        "rows without a label (adaptation, semi-supervision) and early stopping"
    )
    group.add_argument(
        "--adaptation",
        choices=ADAPTATIONS,
        default="none",
        help="align the domains' embeddings: dann (adversarial, gradient reversal) or mmd; "
        "needs a trainable encoder (--strategy partial, gradual or full) and rows without a "
        "label or a --domain-column (default: %(default)s)",
    )
    group.add_argument(
        "--adaptation-weight",
        type=float,
        default=defaults.ADAPTATION_WEIGHT,
        help=d("λ: reversed-gradient scale (dann) or MMD weight"),
    )
    group.add_argument(
        "--domain-column",
        metavar="COL",
        help="obs column naming each row's batch or lab, the domains adaptation aligns "
        "(default: labelled rows vs rows without a label)",
    )
    group.add_argument(
        "--semi-supervised",
        choices=SEMI_SUPERVISION,
        default="none",
        help="learn from rows without a label: pseudo_label (confident predictions, "
        "classification only) or consistency (agreement under masking noise) "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--confidence",
        type=float,
        default=defaults.CONFIDENCE,
        help=d("pseudo_label: top-probability threshold"),
    )
    group.add_argument(
        "--semi-weight",
        type=float,
        default=defaults.SEMI_WEIGHT,
        help=d("weight of the unlabelled rows' term"),
    )
    group.add_argument(
        "--min-epochs",
        type=int,
        default=defaults.MIN_EPOCHS,
        help=d("no early stop (and no best epoch) before this many epochs"),
    )
    device_option(group)


def candidates(group: argparse._ActionsContainer) -> None:
    """--candidates: what --strategy auto compares."""
    group.add_argument(
        "--candidates",
        type=lambda text: [c for c in text.split(",") if c],
        metavar="NAME[,NAME...]",
        help="--strategy auto: the candidates to compare, each a strategy with optional "
        "+dann/+mmd and +pseudo_label/+consistency, or a baseline's name (default: chosen "
        "from the data)",
    )


def check_candidates(args: argparse.Namespace) -> None:
    """Refuse --candidates that are not names, or given with a named --strategy."""
    for name in args.candidates or ():
        parse_candidate(name, args.task)
    if args.candidates and args.strategy != "auto":
        raise ValueError("--candidates are compared by --strategy auto; leave one of them out")


def finetune_options(args: argparse.Namespace) -> FinetuneOptions:
    """The FinetuneOptions the --strategy and method options describe."""
    from training.train.finetune import FinetuneOptions

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
    description = args.description or (
        f"{kind} of {args.label_column!r} on {args.data.name}: {how} on the encoder "
        f"{encoder_folder.parent.name}:{encoder_folder.name}, trained on "
        f"{dataset.train.shape[0]} samples."
        + ("" if conversion is None else " " + conversion.describe())
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


def encoder_training(
    parser: argparse.ArgumentParser,
    group: argparse._ArgumentGroup,
    *,
    lr_help: str = "encoder LR as a share of --lr",
) -> None:
    """The options `finetune` and `tune` share after --strategy: --candidates, --unfreeze-top,
    --encoder-lr-scale (defaults from contract.defaults, as jobs have them), --unlabelled, the
    methods and --counts-to-log."""
    from contract import defaults as shared

    candidates(group)
    group.add_argument(
        "--unfreeze-top", type=int, default=shared.UNFREEZE_TOP, help=d("partial: layers")
    )
    group.add_argument(
        "--encoder-lr-scale", type=float, default=shared.ENCODER_LR_SCALE, help=d(lr_help)
    )
    unlabelled(parser)
    methods(parser)
    counts_to_log(parser)
