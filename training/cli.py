"""`genexfer train ...`: the demo, pretrain and finetune commands and their help.

Only the standard library and stdlib-only modules (`training.commands`, `training.defaults`,
`training.config`) are imported here: torch loads when a command runs, so `genexfer --help`
works where only the service is installed. The service CLI calls `register(train_subparsers)`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training import cli_more, commands, defaults
from training.config import TrainConfig


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `demo`, `pretrain`, `finetune`, `evaluate` and `export` subcommands."""
    demo = subparsers.add_parser(
        "demo",
        help="reproduce the committed pbmc68k demo models",
        description=(
            "Train the demo models on scanpy's bundled pbmc68k_reduced (700 PBMCs, log-normalised "
            ".raw.X, labels 'bulk_labels'): a stratified 80/20 split, an encoder pretrained on "
            "the 80% only, a linear head fine-tuned on the frozen encoder, scores on the "
            "held-out 20%. Publishes new versions of pbmc68k-encoder and pbmc68k-celltype "
            "(the classifier's parent is that encoder). Takes seconds on a laptop CPU."
        ),
    )
    _common(demo)
    demo.set_defaults(func=commands.demo)

    pre = subparsers.add_parser(
        "pretrain",
        help="pretrain an autoencoder and publish its encoder",
        description=(
            "Fit per-gene preprocessing and a denoising dense autoencoder on an expression file, "
            "then export preprocess → encoder as a new version of MODELS_DIR/NAME (ONNX input "
            "'expression', output 'embedding'). Samples held out with --test-fraction take no "
            "part in fitting and give a held-out reconstruction error."
        ),
    )
    _data_arguments(pre)
    pre.add_argument(
        "--input-scale",
        choices=["log", "counts", "normalized"],
        default="log",
        help="what the values are: counts get library-size normalisation and log1p, "
        "normalized gets log1p, log neither; then per-gene z-scores (default: %(default)s)",
    )
    pre.add_argument("--name", required=True, help="model name to publish under")
    pre.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        help="share of samples held out at random (default: %(default)s)",
    )
    _common(pre)
    _train_arguments(pre, defaults.PRETRAIN)
    model = pre.add_argument_group("model")
    model.add_argument(
        "--hidden",
        type=_widths,
        default=defaults.ENCODER_HIDDEN,
        metavar="W[,W...]",
        help=f"encoder hidden widths (default: {_show(defaults.ENCODER_HIDDEN)})",
    )
    model.add_argument(
        "--latent", type=int, default=defaults.ENCODER_LATENT, help=_d("embedding width")
    )
    model.add_argument(
        "--dropout", type=float, default=defaults.ENCODER_DROPOUT, help=_d("hidden dropout")
    )
    model.add_argument(
        "--input-dropout",
        type=float,
        default=defaults.ENCODER_INPUT_DROPOUT,
        help=_d("input dropout (denoising)"),
    )
    model.add_argument(
        "--activation", default=defaults.ACTIVATION, help=_d("relu, gelu, elu or silu")
    )
    model.add_argument("--clip", type=float, default=defaults.CLIP, help=_d("clip of the z-scores"))
    pre.add_argument("--description", default="", help="card description (default: generated)")
    cli_more.add_encoder_options(pre)
    pre.set_defaults(func=commands.pretrain)

    fine = subparsers.add_parser(
        "finetune",
        help="fine-tune a classifier or regression head on a published encoder",
        description=(
            "Load a published encoder (weights, config and preprocessing from its version "
            "folder), align the data to its gene panel, hold out a test split (stratified by "
            "label for classification), train a head with the chosen strategy (classification: "
            "class-weighted cross-entropy; regression: mean squared error on the standardised "
            "target; early stopping) and publish preprocess → encoder → head as a new version "
            "of MODELS_DIR/NAME, its parent the encoder: outputs 'logits' and 'probabilities' "
            "(classification) or 'prediction' on the target's own scale (regression), plus the "
            "head alone as head.onnx (input 'embedding'). The data must be on the encoder's "
            "input scale (see its model.json)."
        ),
    )
    _data_arguments(fine)
    fine.add_argument(
        "--label-column",
        required=True,
        help="obs column (h5ad), table column (samples-as-rows CSV) or --labels column: the "
        "classes, or the numbers to predict with --task regression",
    )
    fine.add_argument(
        "--task",
        choices=["classification", "regression"],
        default="classification",
        help="what the head predicts (default: %(default)s)",
    )
    fine.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help="CSV/TSV of per-sample metadata whose first column holds the sample ids",
    )
    fine.add_argument("--encoder", required=True, help="NAME or NAME:VERSION in --models-dir")
    fine.add_argument("--name", required=True, help="model name to publish under")
    fine.add_argument(
        "--test-fraction",
        type=float,
        default=defaults.TEST_FRACTION,
        help="share held out (stratified by label when classifying) for the card's metrics "
        "(default: %(default)s)",
    )
    _common(fine)
    _train_arguments(fine, defaults.FINETUNE)
    head = fine.add_argument_group("head")
    head.add_argument(
        "--head-hidden",
        type=_widths,
        default=defaults.HEAD_HIDDEN,
        metavar="W[,W...]",
        help=f"hidden widths, '' for a linear head (default: {_show(defaults.HEAD_HIDDEN)!r})",
    )
    head.add_argument(
        "--head-dropout", type=float, default=defaults.HEAD_DROPOUT, help=_d("dropout")
    )
    fine.add_argument("--description", default="", help="card description (default: generated)")
    cli_more.add_strategy_options(fine)
    fine.set_defaults(func=commands.finetune)
    cli_more.register_more(subparsers)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models-dir", type=Path, default=Path("models"), help=_d("model store to publish into")
    )
    parser.add_argument("--seed", type=int, default=0, help=_d("seeds splits, init, batch order"))
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", type=Path, required=True, metavar="FILE", help=".h5ad, .csv or .tsv (.gz ok)"
    )
    parser.add_argument("--layer", default="X", help=_d("h5ad matrix: X, raw or a layer name"))
    parser.add_argument(
        "--orientation",
        choices=["samples_as_rows", "genes_as_rows"],
        default="samples_as_rows",
        help=_d("CSV/TSV layout; the first column holds the ids"),
    )


def _train_arguments(parser: argparse.ArgumentParser, base: TrainConfig) -> None:
    group = parser.add_argument_group("optimisation")
    group.add_argument("--epochs", type=int, default=base.epochs, help=_d("maximum epochs"))
    group.add_argument("--batch-size", type=int, default=base.batch_size, help=_d("minibatch size"))
    group.add_argument("--lr", type=float, default=base.lr, help=_d("AdamW learning rate"))
    group.add_argument(
        "--weight-decay", type=float, default=base.weight_decay, help=_d("AdamW weight decay")
    )
    group.add_argument(
        "--val-fraction",
        type=float,
        default=base.val_fraction,
        help=_d("share of the training split used for early stopping"),
    )
    group.add_argument(
        "--patience", type=int, default=base.patience, help=_d("epochs without improvement")
    )


def _d(text: str) -> str:
    return text + " (default: %(default)s)"


def _show(widths: tuple[int, ...]) -> str:
    return ",".join(str(w) for w in widths)


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
