"""What `genexfer train demo|pretrain|finetune` do; heavy imports happen inside each command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from training.config import TrainConfig

if TYPE_CHECKING:
    from training.data.matrix import ExpressionMatrix
    from training.tuning import HeadRun
    from training.workflows import EncoderRun

P = ParamSpec("P")
R = TypeVar("R")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The optimisation settings given on the command line."""
    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        val_fraction=args.val_fraction,
        patience=args.patience,
        seed=args.seed,
    )


def demo(args: argparse.Namespace) -> int:
    """Run the demo and print where it published and how it scored."""
    from training.demo import CLASSIFIER_NAME, run_demo

    result = _guard(run_demo, args.models_dir, seed=args.seed, progress=_progress(args))
    if result is None:
        return 1
    scores = result.classifier.scores
    n_classes = len(result.classifier.labels)
    print(f"encoder     {result.encoder.folder}")
    print(f"classifier  {result.classifier.folder}  ({CLASSIFIER_NAME}, parent = encoder)")
    print(
        f"held-out balanced accuracy {scores['balanced_accuracy']:.3f}, "
        f"macro-F1 {scores['macro_f1']:.3f}, accuracy {scores['accuracy']:.3f} "
        f"on {result.classifier.n_test} held-out cells ({n_classes} classes, chance "
        f"{1 / n_classes:.3f}); {result.seconds:.1f} s in all"
    )
    return 0


def pretrain(args: argparse.Namespace) -> int:
    """Pretrain on --data and publish the encoder."""
    from app.inference.card import InputScale
    from training.workflows import hold_out, pretrain_and_export

    streamed = args.stream or args.data.suffix.lower() in (".npy", ".parquet", ".pq")

    def run() -> EncoderRun:
        if streamed:
            return _stream_pretrain(args)
        matrix = _read(args, obs_columns=())
        dataset = hold_out(
            args.data.name,
            matrix,
            test_fraction=args.test_fraction,
            seed=args.seed,
            stratify_by=None,
        )
        cfg = encoder_config(args, matrix.shape[1])
        description = args.description or (
            f"{type(cfg).__name__.removesuffix('Config')} pretrained on "
            f"{dataset.train.shape[0]} samples × {matrix.shape[1]} genes of "
            f"{args.data.name} ({args.input_scale} input)."
        )
        return pretrain_and_export(
            dataset,
            input_scale=InputScale(args.input_scale),
            model_cfg=cfg,
            train_cfg=train_config(args),
            name=args.name,
            models_dir=args.models_dir,
            description=description,
            clip=args.clip,
            progress=_progress(args),
        )

    run_result = _guard(run)
    if run_result is None:
        return 1
    if args.loss_plot is not None:
        from training.report import plot_history

        print(f"loss curve {plot_history(run_result.history, args.loss_plot)}")
    for metric in run_result.metrics:
        print(f"{metric.name} ({metric.split}) {metric.value:.4f}")
    print(f"published {run_result.folder}")
    return 0


def encoder_config(args: argparse.Namespace, n_genes: int) -> Any:
    """The autoencoder config the pretrain options describe."""
    from training.nn.encoders import AutoencoderConfig
    from training.nn.variants import DenoisingAutoencoderConfig, VariationalAutoencoderConfig

    common = {
        "n_genes": n_genes,
        "hidden": args.hidden,
        "latent": args.latent,
        "dropout": args.dropout,
        "activation": args.activation,
    }
    if args.encoder_kind == "dae":
        return DenoisingAutoencoderConfig(**common, mask_rate=args.mask_rate)
    if args.encoder_kind == "vae":
        return VariationalAutoencoderConfig(**common, beta=args.beta)
    return AutoencoderConfig(**common, input_dropout=args.input_dropout)


def _stream_pretrain(args: argparse.Namespace) -> EncoderRun:
    from app.inference.card import InputScale
    from training.data.stream import open_source
    from training.streaming import stream_pretrain_and_export

    n_genes = len(open_source(args.data, args.chunk_rows).gene_ids)
    cfg = encoder_config(args, n_genes)
    description = args.description or (
        f"{type(cfg).__name__.removesuffix('Config')} pretrained on {args.data.name}, "
        f"streamed from disk ({n_genes} genes, {args.input_scale} input)."
    )
    return stream_pretrain_and_export(
        args.data,
        input_scale=InputScale(args.input_scale),
        model_cfg=cfg,
        train_cfg=train_config(args),
        name=args.name,
        models_dir=args.models_dir,
        description=description,
        chunk_rows=args.chunk_rows,
        max_steps=args.max_steps,
        device=args.device,
        clip=args.clip,
        progress=_progress(args),
    )


def finetune(args: argparse.Namespace) -> int:
    """Fine-tune a head on --encoder with --data and publish the classifier or regressor."""
    from training.finetune import FinetuneOptions
    from training.tuning import finetune_and_export
    from training.versions import resolve_version
    from training.workflows import hold_out

    classify = args.task == "classification"

    def run() -> HeadRun:
        encoder_folder = resolve_version(args.models_dir, args.encoder)
        in_table = args.labels is None and args.orientation == "samples_as_rows"
        matrix = _read(args, obs_columns=(args.label_column,) if in_table else ())
        if args.labels is not None:
            from training.data.readers import attach_obs, read_obs

            matrix = attach_obs(matrix, read_obs(args.labels))
        dataset = hold_out(
            args.data.name,
            matrix,
            test_fraction=args.test_fraction,
            seed=args.seed,
            stratify_by=args.label_column if classify else None,
        )
        description = args.description or (
            f"{'Classifier' if classify else 'Regressor'} of {args.label_column!r} on "
            f"{args.data.name}: a head "
            f"({args.strategy}) on the encoder "
            f"{encoder_folder.parent.name}:{encoder_folder.name}, "
            f"trained on {dataset.train.shape[0]} samples."
        )
        return finetune_and_export(
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
            options=FinetuneOptions(args.strategy, args.unfreeze_top, args.encoder_lr_scale),
            progress=_progress(args),
        )

    run_result = _guard(run)
    if run_result is None:
        return 1
    overlap = 1 - run_result.n_missing_genes / run_result.n_panel_genes
    print(
        f"panel overlap {overlap:.1%} ({run_result.n_panel_genes - run_result.n_missing_genes}"
        f" of {run_result.n_panel_genes} encoder genes in the data)"
    )
    if run_result.n_missing_genes:
        print(f"note: {run_result.n_missing_genes} panel genes were missing and filled")
    for key, value in run_result.scores.items():
        print(f"held-out {key} {value:.4f}")
    print(f"published {run_result.folder}")
    return 0


def _read(args: argparse.Namespace, obs_columns: tuple[str, ...]) -> ExpressionMatrix:
    from training.data.readers import read_matrix

    if args.data.name.lower().endswith(".h5ad"):
        return read_matrix(args.data, layer=args.layer)
    return read_matrix(args.data, orientation=args.orientation, obs_columns=obs_columns)


def _guard(func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
    # bad input (files, ids, names) is the user's to fix: say what is wrong, no traceback
    try:
        return func(*args, **kwargs)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.quiet else None
