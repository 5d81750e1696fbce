"""`genexfer train pretrain`: fit preprocessing and an autoencoder, publish the encoder."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from contract.vocab import ENCODER_KINDS, SELECT_BY
from training.cli.shared import command, inputs, options, settings, values
from training.train import defaults

if TYPE_CHECKING:
    from training.nn.variants import AnyAutoencoderConfig
    from training.publish.encoder import EncoderRun

INPUT_SCALES = ("log", "counts", "normalized")


NAME = "pretrain"
HELP = "pretrain an autoencoder and publish its encoder"
DESCRIPTION = (
    "Fit per-gene preprocessing and a denoising dense autoencoder on an expression file, "
    "then export preprocess → encoder as a new version of MODELS_DIR/NAME (ONNX input "
    "'expression', output 'embedding'). Samples held out with --test-fraction take no "
    "part in fitting and give a held-out reconstruction error."
)


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `genexfer train pretrain`."""
    options.data(parser)
    parser.add_argument(
        "--input-scale",
        choices=INPUT_SCALES,
        default="log",
        help="what the values are: counts get library-size normalisation and log1p, "
        "normalized gets log1p, log neither; then per-gene z-scores (default: %(default)s)",
    )
    parser.add_argument("--name", required=True, help="model name to publish under")
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        help="share of samples held out at random (default: %(default)s)",
    )
    options.common(parser)
    options.optimisation(parser, defaults.PRETRAIN)
    model = parser.add_argument_group("model")
    help_text = f"encoder hidden widths (default: {values.show(defaults.ENCODER_HIDDEN)})"
    options.widths_option(model, "--hidden", defaults.ENCODER_HIDDEN, help_text)
    model.add_argument(
        "--latent", type=int, default=defaults.ENCODER_LATENT, help=values.d("embedding width")
    )
    model.add_argument(
        "--dropout", type=float, default=defaults.ENCODER_DROPOUT, help=values.d("hidden dropout")
    )
    model.add_argument(
        "--input-dropout",
        type=float,
        default=defaults.ENCODER_INPUT_DROPOUT,
        help=values.d("input dropout (denoising)"),
    )
    model.add_argument(
        "--activation", default=defaults.ACTIVATION, help=values.d("relu, gelu, elu or silu")
    )
    model.add_argument(
        "--clip", type=float, default=defaults.CLIP, help=values.d("clip of the z-scores")
    )
    model.add_argument(
        "--select-genes",
        type=int,
        metavar="N",
        help="keep the N genes of highest --select-by, fitted on the pretraining samples (no "
        "labels) and fused into the graph, which still takes the whole panel (default: all)",
    )
    model.add_argument(
        "--select-by",
        choices=SELECT_BY,
        default="variance",
        help=values.d("variance, or dispersion (Seurat's highly variable genes), on the log scale"),
    )
    parser.add_argument("--description", default="", help="card description (default: generated)")
    group = parser.add_argument_group("encoder kind and streaming")
    group.add_argument(
        "--encoder-kind",
        choices=ENCODER_KINDS,
        default="ae",
        help="ae: dense (with --input-dropout), dae: masking-noise denoising, "
        "vae: variational (default: %(default)s)",
    )
    group.add_argument("--mask-rate", type=float, default=0.3, help=values.d("dae: share masked"))
    group.add_argument("--beta", type=float, default=1.0, help=values.d("vae: KL weight"))
    group.add_argument(
        "--stream",
        action="store_true",
        help="read --data chunk by chunk (always for .npy and .parquet; "
        "backed for .h5ad), for sources larger than memory",
    )
    group.add_argument("--chunk-rows", type=int, default=4096, help=values.d("rows per chunk"))
    group.add_argument("--max-steps", type=int, default=None, help="cap on optimiser steps")
    options.device_option(group)
    group.add_argument(
        "--loss-plot",
        type=Path,
        metavar="PNG",
        help="write the training/validation loss curve here",
    )


def run(args: argparse.Namespace) -> int:
    """Pretrain on --data and publish the encoder."""
    result = command.guard(_pretrain, args)
    if result is None:
        return 1
    if args.loss_plot is not None:
        from training.reporting.report import plot_history

        print(f"loss curve {plot_history(result.history, args.loss_plot)}")
    for metric in result.metrics:
        print(f"{metric.name} ({metric.split}) {metric.value:.4f}")
    print(f"published {result.folder}")
    return 0


def encoder_config(args: argparse.Namespace, n_genes: int) -> AnyAutoencoderConfig:
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


def _streamed(args: argparse.Namespace) -> bool:
    return bool(args.stream) or args.data.suffix.lower() in (".npy", ".parquet", ".pq")


def _pretrain(args: argparse.Namespace) -> EncoderRun:
    """Read --data whole or stream it from disk; either way publish with the same options."""
    from contract.card import InputScale
    from training.data.stream import open_source
    from training.preprocess.select import GeneSelection
    from training.publish.encoder import pretrain_and_export, stream_pretrain_and_export

    train: Callable[..., EncoderRun]
    select = None if args.select_genes is None else GeneSelection(args.select_genes, args.select_by)
    if _streamed(args):
        n_genes = len(open_source(args.data, args.chunk_rows).gene_ids)
        cfg = encoder_config(args, n_genes if select is None else select.n)
        kind = type(cfg).__name__.removesuffix("Config")
        generated = (
            f"{kind} pretrained on {args.data.name}, "
            f"streamed from disk ({n_genes} genes, {args.input_scale} input)."
        )
        train = functools.partial(
            stream_pretrain_and_export,
            args.data,
            chunk_rows=args.chunk_rows,
            max_steps=args.max_steps,
        )
    else:
        matrix = inputs.read(args, obs_columns=())
        dataset = settings.held_out(args, matrix, stratify=False)
        cfg = encoder_config(args, matrix.shape[1] if select is None else select.n)
        kind = type(cfg).__name__.removesuffix("Config")
        generated = (
            f"{kind} pretrained on {dataset.train.shape[0]} samples × {matrix.shape[1]} genes of "
            f"{args.data.name} ({args.input_scale} input)."
        )
        train = functools.partial(pretrain_and_export, dataset)
    if select is not None:
        generated += f" The {select.n} genes of highest {select.by} feed the encoder."
    return train(
        input_scale=InputScale(args.input_scale),
        model_cfg=cfg,
        train_cfg=settings.train_config(args),
        name=args.name,
        models_dir=args.models_dir,
        description=args.description or generated,
        clip=args.clip,
        select=select,
        device=args.device,
        progress=command.progress(args),
    )
