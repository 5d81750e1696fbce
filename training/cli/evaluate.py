"""`genexfer train evaluate`: the transfer model against every baseline, with a report."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from contract.vocab import BASELINES, ENCODER_KINDS, STRATEGIES
from training.cli import args as cli
from training.train import defaults

NAME = "evaluate"
HELP = "transfer model vs every baseline: few-shot curves, k-fold CV, report"
DESCRIPTION = (
    "Run the evaluation protocol and write report.md, summary.json and PNG plots to "
    "--out. For each seeded repeat a stratified test set is held out first; "
    "preprocessing and the encoder are pretrained, without labels, on every other "
    "cell, so no test cell is seen by pretraining; "
    "k labelled cells per class (--shots) train the transfer model (encoder + linear "
    "head) and every scikit-learn baseline on the same cells; all are scored on the "
    "same test cells. Then stratified k-fold CV the same way. Without --data it uses "
    "scanpy's bundled pbmc68k_reduced (log-normalised .raw.X, 'bulk_labels')."
)


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `genexfer train evaluate`."""
    cli.data(parser, required=False, layer="raw")
    parser.add_argument(
        "--label-column", default="bulk_labels", help=cli.d("obs column of classes")
    )
    parser.add_argument(
        "--out", type=Path, default=Path("reports/pbmc68k"), help=cli.d("output folder")
    )
    parser.add_argument(
        "--title",
        default="Transfer learning vs baselines on pbmc68k_reduced",
        help=cli.d("report heading"),
    )
    parser.add_argument("--min-cells", type=int, default=30, help=cli.d("smallest class evaluated"))
    parser.add_argument(
        "--shots",
        type=cli.positive_ints,
        default=(5, 10, 25),
        metavar="K[,K...]",
        help="labelled cells per class (default: 5,10,25)",
    )
    parser.add_argument("--repeats", type=int, default=10, help=cli.d("seeded repeats per k"))
    parser.add_argument("--folds", type=int, default=5, help=cli.d("CV folds, 0 to skip"))
    parser.add_argument(
        "--encoder-kind",
        choices=ENCODER_KINDS,
        default="dae",
        help=cli.d("autoencoder: plain, denoising (masking) or variational"),
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="frozen",
        help=cli.d("fine-tuning strategy of the transfer model"),
    )
    parser.add_argument(
        "--baselines",
        type=cli.baseline_names,
        default=BASELINES,
        metavar="NAME[,NAME...]",
        help=f"baselines to run (default: all: {','.join(BASELINES)})",
    )
    parser.add_argument(
        "--pretrain-epochs", type=int, default=60, help=cli.d("pretraining epoch cap")
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=defaults.FINETUNE.epochs,
        help=cli.d("fine-tuning epoch cap (transfer and scratch network)"),
    )
    pretraining = dataclasses.replace(defaults.PRETRAIN, patience=10)
    cli.optimisation(parser, pretraining, title="pretraining optimisation", epochs=False)
    parser.add_argument(
        "--select-genes",
        type=int,
        metavar="N",
        help="keep the N most variable genes, fitted on each pretraining pool (default: all)",
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="also run the automatic choice (strategy auto, the jobs' default) on every "
        "training set and report it against the best baseline",
    )
    parser.add_argument("--seed", type=int, default=0, help=cli.d("seeds every split and training"))
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    cli.counts_to_log(parser)


def run(args: argparse.Namespace) -> int:
    """Run the transfer-vs-baselines protocol and write the report."""
    path = cli.guard(_evaluate, args)
    if path is None:
        return 1
    print(f"report {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> Path:
    from training.data.pbmc68k import load_pbmc68k_reduced
    from training.evaluation.protocol import ProtocolConfig, run_protocol
    from training.evaluation.report import write_report
    from training.preprocess.convert import prepared
    from training.preprocess.select import GeneSelection
    from training.train.loop import cpu_threads_for

    start = time.perf_counter()
    if args.data is None:
        matrix = load_pbmc68k_reduced()
        note = (
            "Data: scanpy's bundled pbmc68k_reduced (700 PBMCs, 765 genes, log-normalised "
            "`.raw.X`), labels `bulk_labels` (bulk-sorted cell types, noisy)."
        )
    else:
        conversion = cli.conversion(args)
        matrix = prepared(cli.read(args, obs_columns=(args.label_column,)), "log", conversion)
        note = f"Data: {args.data.name}, labels `{args.label_column}` (log input scale)."
        if conversion is not None:
            note += f" Converted from counts: log1p of values normalised to {args.target_sum:g}."
    cfg = ProtocolConfig(
        label_column=args.label_column,
        min_cells=args.min_cells,
        shots=args.shots,
        repeats=args.repeats,
        folds=args.folds,
        encoder=args.encoder_kind,
        strategy=args.strategy,
        baselines=args.baselines,
        pretrain=cli.train_config(args, epochs=args.pretrain_epochs),
        finetune=dataclasses.replace(
            defaults.FINETUNE, epochs=args.finetune_epochs, seed=args.seed
        ),
        seed=args.seed,
        select=None if args.select_genes is None else GeneSelection(args.select_genes),
        auto=args.auto,
    )
    with cpu_threads_for(matrix.shape[1]):  # small models: one thread (see loop.py)
        result = run_protocol(matrix, cfg, progress=cli.progress(args))
    took = time.perf_counter() - start
    note += f" The whole evaluation took {took / 60:.1f} min on this machine."
    return write_report(result, args.out, title=args.title, data_note=note)
