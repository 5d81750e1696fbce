"""The option groups several commands share: the data, what a head is trained for, the
optimisation, the head, the fine-tuning methods, the input scale, the multi-omics data.

Standard library only (plus the stdlib-only `training.train.defaults` and `training.nn.config`):
torch loads when a command runs, so `genexfer --help` works where only the service is installed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from contract.vocab import ADAPTATIONS, ORIENTATIONS, SEMI_SUPERVISION, TASKS
from training.cli.shared.values import d, show, task_spec, widths
from training.nn.config import TrainConfig
from training.train import defaults

DEVICES = ("cpu", "cuda", "auto")


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


def widths_option(
    group: argparse._ActionsContainer, flag: str, default: tuple[int, ...], help: str
) -> None:
    """An option taking comma-separated layer widths (see `widths`)."""
    group.add_argument(flag, type=widths, default=default, metavar="W[,W...]", help=help)


def multiomics(parser: argparse.ArgumentParser) -> None:
    """finetune's multi-omics data: --modality NAME=FILE (repeated), --logit-modality NAME
    (repeated)."""
    group = parser.add_argument_group("multi-omics")
    group.add_argument(
        "--modality",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="an added modality (e.g. methylation=beta.csv, protein=rppa.parquet): a table with "
        "samples as rows, the first column their ids; a sample absent from it lacks that "
        "modality. With --data FILE.h5mu every modality but 'rna' is added instead",
    )
    group.add_argument(
        "--logit-modality",
        action="append",
        default=None,
        metavar="NAME",
        help="a modality of β-values, turned into M-values (log2 β/(1-β)) before "
        "standardisation (default: methylation)",
    )
