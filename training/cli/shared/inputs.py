"""The data a command reads: --data (and --unlabelled) as a matrix, --labels joined by sample
id, the labelled rows apart from the rest, the public datasets by name, the --modality files.

Standard library only at import (the readers load when a command runs), so `genexfer --help`
works where only the service is installed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contract.matrix import ExpressionMatrix
    from training.preprocess.convert import Conversion


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


def conversion(args: argparse.Namespace) -> Conversion | None:
    """The --counts-to-log conversion, if asked for."""
    from training.preprocess.convert import Conversion

    return Conversion(args.target_sum) if args.counts_to_log else None


def read_prepared(
    args: argparse.Namespace, path: Path, scale: str, *, target: bool
) -> ExpressionMatrix:
    """A file read like --data, its --label-column and --batch-column (`target`) joined from
    --labels, on the input scale (`evaluate`)."""
    from training.preprocess.convert import prepared

    columns = (args.label_column, args.batch_column) if target else ()
    table = args.labels is None and args.orientation == "samples_as_rows"
    wanted = tuple(c for c in columns if c) if table else ()
    matrix = read(args, obs_columns=wanted, path=path)
    if args.labels is not None:
        matrix = with_labels(matrix, args.labels, required=path == args.data)
    return prepared(matrix, scale, conversion(args))


def with_labels(matrix: ExpressionMatrix, path: Path, *, required: bool) -> ExpressionMatrix:
    """The matrix with --labels' columns joined by sample id (all of its rows must be there
    when `required`; else only if every id is)."""
    from contract.io.readers import attach_obs, read_obs

    obs = read_obs(path)
    if required or set(matrix.sample_ids) <= set(obs.index):
        return attach_obs(matrix, obs)
    return matrix


def public_dataset(name: str) -> ExpressionMatrix:
    """A public dataset by its --dataset name."""
    from training.data import public
    from training.data.pbmc68k import load_pbmc68k_reduced

    if name == "pbmc68k":
        return load_pbmc68k_reduced()
    if name == "pbmc68k-shifted":
        return public.load_pbmc68k_shifted()
    if name == "bladderbatch":
        return public.load_bladderbatch()
    return public.load_all_leukaemia()


def public_note(name: str, args: argparse.Namespace) -> str:
    """The report's sentence on a public dataset and its --label-column."""
    notes = {
        "pbmc68k": "scanpy's bundled pbmc68k_reduced (700 PBMCs, 765 genes, log-normalised "
        "`.raw.X`)",
        "pbmc68k-shifted": "scanpy's bundled pbmc68k_reduced dealt into 3 batches (stratified "
        "by `bulk_labels`) with simulated batch effects at strength 1 "
        "(`training.data.shift`: per-gene location and scale on correlated programmes, library "
        "size, dropout; `load_pbmc68k_shifted()`, seed 0)",
        "bladderbatch": "bladderbatch (57 bladder arrays, 5,000 probe sets, RMA log2, 5 "
        "processing batches)",
        "all-leukaemia": "ALL (128 adult leukaemia arrays, 5,000 probe sets, RMA log2)",
    }
    return f"Data: {notes[name]}, labels `{args.label_column}`."


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
