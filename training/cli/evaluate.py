"""`genexfer train evaluate`: every method against every baseline, with a report."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from contract.vocab import (
    BASELINES,
    ENCODER_KINDS,
    EVAL_METHODS,
    EVAL_PROTOCOLS,
    PUBLIC_DATASETS,
)
from training.cli.shared import command, inputs, options, settings, values
from training.train import defaults

if TYPE_CHECKING:
    from contract.matrix import ExpressionMatrix
    from training.protocol.pretraining import Kind, Pretraining

NAME = "evaluate"
HELP = "methods vs every baseline: few-shot curves, k-fold CV or leave-one-batch-out, report"
DESCRIPTION = (
    "Run the evaluation protocol and write report.md, summary.json, scores.json and PNG "
    "plots to --out. For each split the test rows are held out first; the encoder is "
    "pretrained, without labels, on every other target row (default), on --source only, on "
    "--source plus those rows (--target-unlabelled), or is a published --encoder; no test "
    "cell is seen by pretraining. The labelled rows (k per class, the other folds, or the "
    "other batches with --protocol lobo) train every --methods entry and every "
    "scikit-learn baseline; all are scored on the same test rows and paired split by split "
    "with the best baseline. Methods that learn from rows without a label get the split's "
    "other rows (lobo: the held-out batch's), never their labels. --external scores every "
    "model trained on all the target's labelled rows on a second file. Without --data or "
    "--dataset it uses scanpy's bundled pbmc68k_reduced (log-normalised .raw.X, 'bulk_labels')."
)


# the evaluation's pretraining epoch cap: each split pretrains its own encoder
PRETRAIN_EPOCHS = 60


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `genexfer train evaluate`."""
    options.data(parser, required=False, layer="raw")
    parser.add_argument(
        "--dataset",
        choices=PUBLIC_DATASETS,
        help="a public dataset instead of --data: pbmc68k (scanpy's pbmc68k_reduced), "
        "pbmc68k-shifted (the same in 3 batches with simulated batch effects, obs 'batch'), "
        "bladderbatch (obs 'cancer', 'batch'), all-leukaemia",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        metavar="FILE",
        help="CSV/TSV of per-sample metadata whose first column holds the sample ids (the "
        "label and batch columns); joined to --data, --source and --external by id",
    )
    parser.add_argument(
        "--label-column", default="bulk_labels", help=values.d("obs column of classes")
    )
    parser.add_argument(
        "--out", type=Path, default=Path("reports/pbmc68k"), help=values.d("output folder")
    )
    parser.add_argument(
        "--title",
        default="Transfer learning vs baselines on pbmc68k_reduced",
        help=values.d("report heading"),
    )
    parser.add_argument(
        "--min-cells", type=int, default=30, help=values.d("smallest class evaluated")
    )
    parser.add_argument(
        "--shots",
        type=values.positive_ints,
        default=(5, 10, 25),
        metavar="K[,K...]",
        help="labelled cells per class (default: 5,10,25)",
    )
    parser.add_argument("--repeats", type=int, default=10, help=values.d("seeded repeats per k"))
    parser.add_argument("--folds", type=int, default=5, help=values.d("CV folds, 0 to skip"))
    parser.add_argument(
        "--encoder-kind",
        choices=ENCODER_KINDS,
        default="dae",
        help=values.d("autoencoder: plain, denoising (masking) or variational"),
    )
    parser.add_argument(
        "--methods",
        type=values.method_names,
        default=("frozen", "scratch"),
        metavar="NAME[,NAME...]",
        help=f"methods to compare with the baselines, of {','.join(EVAL_METHODS)}; dann and "
        "mmd are paired with full, pseudo_label and consistency with frozen, which are added "
        "when missing (default: frozen,scratch)",
    )
    parser.add_argument(
        "--protocol",
        choices=EVAL_PROTOCOLS,
        default="few_shot",
        help="few_shot: few-shot curves and k-fold CV; lobo: leave one --batch-column batch "
        "out (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-column",
        metavar="COL",
        help="obs column naming each row's batch: the batches lobo holds out and adaptation aligns",
    )
    source = parser.add_argument_group("pretraining data (default: the target's non-test rows)")
    source.add_argument(
        "--source",
        type=Path,
        metavar="FILE",
        help="pretrain on this file (read like --data) instead of the target",
    )
    source.add_argument(
        "--target-unlabelled",
        action="store_true",
        help="with --source: also pretrain on each split's non-test target rows, without labels",
    )
    source.add_argument(
        "--encoder",
        metavar="NAME[:VERSION]",
        help="a published encoder in --models-dir instead of pretraining (the target is "
        "aligned to its genes and must be on its input scale)",
    )
    source.add_argument(
        "--models-dir", type=Path, default=Path("models"), help=values.d("where --encoder is")
    )
    parser.add_argument(
        "--external",
        type=Path,
        metavar="FILE",
        help="a second labelled file (read like --data): every model, trained on all the "
        "target's labelled rows, is scored on it",
    )
    parser.add_argument(
        "--baselines",
        type=values.baseline_names,
        default=BASELINES,
        metavar="NAME[,NAME...]",
        help=f"baselines to run (default: all: {','.join(BASELINES)})",
    )
    parser.add_argument(
        "--pretrain-epochs",
        type=int,
        default=PRETRAIN_EPOCHS,
        help=values.d("pretraining epoch cap"),
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=defaults.FINETUNE.epochs,
        help=values.d("fine-tuning epoch cap (transfer and scratch network)"),
    )
    pretraining = dataclasses.replace(defaults.PRETRAIN, patience=10)
    options.optimisation(parser, pretraining, title="pretraining optimisation", epochs=False)
    parser.add_argument(
        "--select-genes",
        type=int,
        metavar="N",
        help="keep the N most variable genes, fitted on each pretraining pool (default: all)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help=values.d("seeds every split and training")
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    options.device_option(parser)
    options.counts_to_log(parser)


def run(args: argparse.Namespace) -> int:
    """Run the protocol and write the report."""
    path = command.guard(_evaluate, args)
    if path is None:
        return 1
    print(f"report {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> Path:
    from training.nn.device import cpu_threads_for
    from training.preprocess.select import GeneSelection
    from training.protocol.config import ProtocolConfig
    from training.protocol.run import run_external, run_protocol
    from training.reporting.report import write_report

    start = time.perf_counter()
    _check(args)
    scale = _scale(args)
    matrix, note = _target(args, scale)
    pretraining = _pretraining(args, scale)
    cfg = ProtocolConfig(
        label_column=args.label_column,
        min_cells=args.min_cells,
        shots=args.shots,
        repeats=args.repeats,
        folds=args.folds,
        encoder=args.encoder_kind,
        methods=args.methods,
        baselines=args.baselines,
        protocol=args.protocol,
        batch_column=args.batch_column,
        input_scale=scale,
        pretrain=settings.train_config(args, epochs=args.pretrain_epochs),
        finetune=dataclasses.replace(
            defaults.FINETUNE, epochs=args.finetune_epochs, seed=args.seed
        ),
        seed=args.seed,
        select=None if args.select_genes is None else GeneSelection(args.select_genes),
        device=args.device,
    )
    with cpu_threads_for(matrix.shape[1]):  # small models: one thread (see loop.py)
        result = run_protocol(matrix, cfg, pretraining=pretraining, progress=command.progress(args))
        if args.external is not None:
            external = inputs.read_prepared(args, args.external, scale, target=True)
            run_external(
                matrix, external, cfg, result, name=args.external.name, pretraining=pretraining
            )
    took = time.perf_counter() - start
    note += f" The whole evaluation took {took / 60:.1f} min on this machine."
    reduced = [f"{args.repeats} repeats (the full run uses 10)"] if 0 < args.repeats < 10 else []
    if args.pretrain_epochs < PRETRAIN_EPOCHS:
        reduced.append(f"pretraining capped at {args.pretrain_epochs} epochs ({PRETRAIN_EPOCHS})")
    if args.finetune_epochs < defaults.FINETUNE.epochs:
        reduced.append(
            f"fine-tuning capped at {args.finetune_epochs} epochs ({defaults.FINETUNE.epochs})"
        )
    if reduced:
        note += f" A reduced run: {', '.join(reduced)}."
    return write_report(result, args.out, title=args.title, data_note=note)


def _check(args: argparse.Namespace) -> None:
    if args.data is not None and args.dataset is not None:
        raise ValueError("give --data or --dataset, not both")
    if args.encoder is not None and args.source is not None:
        raise ValueError(
            "give --encoder or --source, not both: a published encoder is not retrained"
        )
    if args.target_unlabelled and args.source is None:
        raise ValueError("--target-unlabelled adds the target's rows to --source's: give --source")
    if args.protocol == "lobo" and not args.batch_column:
        raise ValueError("--protocol lobo needs --batch-column")


def _scale(args: argparse.Namespace) -> str:
    """The input scale: a published encoder's, else log."""
    from contract.card import ModelCard

    return ModelCard.read(_encoder_folder(args)).input_scale.value if args.encoder else "log"


def _encoder_folder(args: argparse.Namespace) -> Path:
    from training.export.store import resolve_version

    return resolve_version(args.models_dir, args.encoder)


def _pretraining(args: argparse.Namespace, scale: str) -> Pretraining:
    from training.protocol.pretraining import Pretraining

    if args.encoder is not None:
        return Pretraining.published(_encoder_folder(args))
    if args.source is not None:
        kind: Kind = "source+target" if args.target_unlabelled else "source"
        source = inputs.read_prepared(args, args.source, scale, target=False)
        return Pretraining(kind, source=source, source_name=args.source.name)
    return Pretraining()


def _target(args: argparse.Namespace, scale: str) -> tuple[ExpressionMatrix, str]:
    """The target matrix and a sentence on it for the report."""
    if args.data is None:
        matrix = inputs.public_dataset(args.dataset or "pbmc68k")
        if args.labels is not None:
            matrix = inputs.with_labels(matrix, args.labels, required=True)
        from training.preprocess.convert import prepared

        return prepared(matrix, scale, None), inputs.public_note(args.dataset or "pbmc68k", args)
    matrix = inputs.read_prepared(args, args.data, scale, target=True)
    note = f"Data: {args.data.name}, labels `{args.label_column}` ({scale} input scale)."
    if args.counts_to_log:
        note += f" Converted from counts: log1p of values normalised to {args.target_sum:g}."
    return matrix, note
