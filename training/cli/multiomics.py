"""`genexfer train finetune` on multi-omics data: --data FILE.h5mu, or --modality NAME=FILE.

Not a command of its own: `training.cli.finetune` hands over when the data have modalities
besides expression. The parser side (`arguments`) imports only the standard library.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from training.cli import args as cli

if TYPE_CHECKING:
    from training.multiomics.publish import MultiOmicsRun


def arguments(parser: argparse.ArgumentParser) -> None:
    """--modality NAME=FILE (repeated), --logit-modality NAME (repeated)."""
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


def wanted(args: argparse.Namespace) -> bool:
    """Whether the finetune command was given multi-omics data."""
    data: Path | None = getattr(args, "data", None)
    return bool(getattr(args, "modality", None)) or (
        data is not None and data.name.lower().endswith(".h5mu")
    )


def modality_files(specs: list[str]) -> dict[str, Path]:
    """NAME=FILE options as a mapping; ValueError naming a bad or repeated one."""
    files: dict[str, Path] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise ValueError(f"--modality {spec!r}: expected NAME=FILE")
        if name in files:
            raise ValueError(f"--modality {name!r} given twice")
        files[name] = Path(file)
    return files


def run(args: argparse.Namespace) -> int:
    """Train and publish a multi-omics classifier; print what it scored and what it had."""
    result = cli.guard(_publish, args)
    if result is None:
        return 1
    print(
        f"panel overlap {1 - result.n_missing_genes / result.n_panel_genes:.1%} "
        f"({result.n_panel_genes - result.n_missing_genes} of {result.n_panel_genes} genes)"
    )
    for name, share in result.presence.items():
        print(f"modality {name}: present in {share:.0%} of the training samples")
    for key, value in result.scores.items():
        print(f"held-out {key} {value:.4f}")
    if result.selection is not None:
        print(result.selection.reason)
        for warning in result.selection.warnings:
            print(f"WARNING: {warning}")
    print(f"published {result.folder}")
    return 0


def _publish(args: argparse.Namespace) -> MultiOmicsRun:
    from training.export.store import resolve_version
    from training.multiomics.data import read_h5mu, read_tables
    from training.multiomics.publish import multiomics_and_export

    if args.task != "classification":
        raise ValueError("multi-omics fine-tuning trains classifiers only (--task classification)")
    if args.strategy == "auto":
        print("note: the automatic choice does not cover multi-omics models: strategy frozen")
        args.strategy = "frozen"
    options = cli.finetune_options(args)
    encoder_folder = resolve_version(args.models_dir, args.encoder)
    files = modality_files(args.modality)
    if args.data.name.lower().endswith(".h5mu"):
        if files:
            raise ValueError("--modality goes with a table of expression, not an .h5mu")
        data = read_h5mu(args.data)
    else:
        expression = cli.read(args, obs_columns=(args.label_column,))
        data = read_tables(expression, files)
    return multiomics_and_export(
        data,
        data_name=args.data.name,
        encoder_folder=encoder_folder,
        label_column=args.label_column,
        train_cfg=cli.train_config(args),
        options=options,
        name=args.name,
        models_dir=args.models_dir,
        description=args.description,
        test_fraction=args.test_fraction,
        logit=tuple(args.logit_modality or ("methylation",)),
        progress=cli.progress(args),
    )
