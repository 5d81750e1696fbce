"""`genexfer train evaluate|export` and the newer pretrain/finetune options (stdlib-only)."""

from __future__ import annotations

import argparse
from pathlib import Path

from training import defaults

ENCODER_KINDS = ("ae", "dae", "vae")
STRATEGIES = ("frozen", "partial", "gradual", "full")
BASELINES = (
    "logistic",
    "ridge",
    "lasso",
    "elastic_net",
    "random_forest",
    "gradient_boosting",
    "mlp",
)


def register_more(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `evaluate` and `export` subcommands."""
    from training import evaluation_cmd

    ev = subparsers.add_parser(
        "evaluate",
        help="transfer model vs every baseline: few-shot curves, k-fold CV, report",
        description=(
            "Run the evaluation protocol and write report.md, summary.json and PNG plots to "
            "--out. For each seeded repeat a stratified test set is held out first; "
            "preprocessing and the encoder are pretrained, without labels, on every other "
            "cell, so no test cell is seen by pretraining; "
            "k labelled cells per class (--shots) train the transfer model (encoder + linear "
            "head) and every scikit-learn baseline on the same cells; all are scored on the "
            "same test cells. Then stratified k-fold CV the same way. Without --data it uses "
            "scanpy's bundled pbmc68k_reduced (log-normalised .raw.X, 'bulk_labels')."
        ),
    )
    ev.add_argument("--data", type=Path, metavar="FILE", help="h5ad/CSV/TSV on the log scale")
    ev.add_argument("--layer", default="raw", help=_d("h5ad matrix: X, raw or a layer name"))
    ev.add_argument(
        "--orientation",
        default="samples_as_rows",
        choices=["samples_as_rows", "genes_as_rows"],
        help=_d("CSV/TSV layout"),
    )
    ev.add_argument("--label-column", default="bulk_labels", help=_d("obs column of classes"))
    ev.add_argument("--out", type=Path, default=Path("reports/pbmc68k"), help=_d("output folder"))
    ev.add_argument(
        "--title",
        default="Transfer learning vs baselines on pbmc68k_reduced",
        help=_d("report heading"),
    )
    ev.add_argument("--min-cells", type=int, default=30, help=_d("smallest class evaluated"))
    ev.add_argument(
        "--shots",
        type=_ints,
        default=(5, 10, 25),
        metavar="K[,K...]",
        help="labelled cells per class (default: 5,10,25)",
    )
    ev.add_argument("--repeats", type=int, default=10, help=_d("seeded repeats per k"))
    ev.add_argument("--folds", type=int, default=5, help=_d("CV folds, 0 to skip"))
    ev.add_argument(
        "--encoder-kind",
        choices=ENCODER_KINDS,
        default="dae",
        help=_d("autoencoder: plain, denoising (masking) or variational"),
    )
    ev.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="frozen",
        help=_d("fine-tuning strategy of the transfer model"),
    )
    ev.add_argument(
        "--baselines",
        type=_names,
        default=BASELINES,
        metavar="NAME[,NAME...]",
        help=f"baselines to run (default: all: {','.join(BASELINES)})",
    )
    ev.add_argument("--pretrain-epochs", type=int, default=60, help=_d("pretraining epoch cap"))
    ev.add_argument(
        "--finetune-epochs",
        type=int,
        default=defaults.FINETUNE.epochs,
        help=_d("fine-tuning epoch cap (transfer and scratch network)"),
    )
    _opt(ev, patience=10)
    ev.add_argument("--seed", type=int, default=0, help=_d("seeds every split and training"))
    ev.add_argument("--quiet", action="store_true", help="no progress bars")
    ev.set_defaults(func=evaluation_cmd.evaluate)

    ex = subparsers.add_parser(
        "export",
        help="fit a scikit-learn baseline and publish it as a servable ONNX classifier/regressor",
        description=(
            "Hold out a test split (stratified when classifying), fit the per-gene "
            "preprocessing and the chosen baseline on the rest, score the held-out samples, and "
            "publish preprocessing → estimator as one ONNX graph (input 'expression', output "
            "'probabilities' for a classifier or 'prediction' for a regressor; onnx.checker and "
            "ONNX Runtime vs scikit-learn parity ≤ 1e-4, relative to the target's scale for a "
            "regressor) with a model card, as a new version of MODELS_DIR/NAME that the service "
            "loads like any classifier or regressor. Neural encoders and heads are exported by "
            "`pretrain` and `finetune` themselves."
        ),
    )
    ex.add_argument(
        "--baseline",
        choices=(*BASELINES, "linear"),
        required=True,
        help="which baseline ('linear' is ordinary least squares, regression only)",
    )
    ex.add_argument(
        "--task",
        choices=["classification", "regression"],
        default="classification",
        help=_d("classes or numbers; regression baselines are the regressor of the same name"),
    )
    ex.add_argument("--data", type=Path, required=True, metavar="FILE", help=".h5ad/.csv/.tsv")
    ex.add_argument("--layer", default="X", help=_d("h5ad matrix: X, raw or a layer name"))
    ex.add_argument(
        "--orientation",
        default="samples_as_rows",
        choices=["samples_as_rows", "genes_as_rows"],
        help=_d("CSV/TSV layout"),
    )
    ex.add_argument(
        "--label-column", required=True, help="obs/table column with the classes or the numbers"
    )
    ex.add_argument(
        "--input-scale",
        choices=["log", "counts", "normalized"],
        default="log",
        help=_d("what the values are"),
    )
    ex.add_argument("--name", required=True, help="model name to publish under")
    ex.add_argument(
        "--test-fraction",
        type=float,
        default=defaults.TEST_FRACTION,
        help=_d("share held out for the card's metrics"),
    )
    ex.add_argument("--models-dir", type=Path, default=Path("models"), help=_d("model store"))
    ex.add_argument("--seed", type=int, default=0, help=_d("seeds the split and the estimator"))
    ex.add_argument("--description", default="", help="card description (default: generated)")
    ex.set_defaults(func=evaluation_cmd.export_baseline_cmd)


def add_encoder_options(parser: argparse.ArgumentParser) -> None:
    """Options of `pretrain` beyond the demo's: encoder kind, streaming, device, loss plot."""
    group = parser.add_argument_group("encoder kind and streaming")
    group.add_argument(
        "--encoder-kind",
        choices=ENCODER_KINDS,
        default="ae",
        help="ae: dense (with --input-dropout), dae: masking-noise denoising, "
        "vae: variational (default: %(default)s)",
    )
    group.add_argument("--mask-rate", type=float, default=0.3, help=_d("dae: share masked"))
    group.add_argument("--beta", type=float, default=1.0, help=_d("vae: KL weight"))
    group.add_argument(
        "--stream",
        action="store_true",
        help="read --data chunk by chunk (always for .npy and .parquet; "
        "backed for .h5ad), for sources larger than memory",
    )
    group.add_argument("--chunk-rows", type=int, default=4096, help=_d("rows per chunk"))
    group.add_argument("--max-steps", type=int, default=None, help="cap on optimiser steps")
    group.add_argument(
        "--device",
        choices=["cpu", "cuda", "auto"],
        default="cpu",
        help=_d("cuda uses float16 mixed precision"),
    )
    group.add_argument(
        "--loss-plot",
        type=Path,
        metavar="PNG",
        help="write the training/validation loss curve here",
    )


def add_strategy_options(parser: argparse.ArgumentParser) -> None:
    """Options of `finetune`: strategy, layers to unfreeze, encoder learning rate."""
    group = parser.add_argument_group("strategy")
    group.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="frozen",
        help="frozen: head only; partial: + top --unfreeze-top encoder layers; "
        "gradual: one more layer per stage; full: all, encoder at a lower LR "
        "(default: %(default)s)",
    )
    group.add_argument("--unfreeze-top", type=int, default=1, help=_d("partial: layers"))
    group.add_argument(
        "--encoder-lr-scale", type=float, default=0.1, help=_d("encoder LR as a share of --lr")
    )


def _opt(parser: argparse.ArgumentParser, patience: int) -> None:
    base = defaults.PRETRAIN
    group = parser.add_argument_group("pretraining optimisation")
    group.add_argument("--epochs", type=int, default=base.epochs, help=argparse.SUPPRESS)
    group.add_argument("--batch-size", type=int, default=base.batch_size, help=_d("minibatch"))
    group.add_argument("--lr", type=float, default=base.lr, help=_d("AdamW learning rate"))
    group.add_argument(
        "--weight-decay", type=float, default=base.weight_decay, help=_d("AdamW weight decay")
    )
    group.add_argument(
        "--val-fraction", type=float, default=base.val_fraction, help=_d("share for early stopping")
    )
    group.add_argument("--patience", type=int, default=patience, help=_d("early-stopping epochs"))


def _d(text: str) -> str:
    return text + " (default: %(default)s)"


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown baselines {unknown}; have {list(BASELINES)}")
    return names
