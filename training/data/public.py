"""Public datasets kept in the repository (datasets/, see its README) and pbmc68k with batches."""

from __future__ import annotations

from pathlib import Path

from contract.io.readers import attach_obs, read_obs, read_parquet
from contract.matrix import ExpressionMatrix
from training.data.pbmc68k import load_pbmc68k_reduced
from training.data.shift import BatchEffect, simulate_batches

# training/data/public.py → the repository root; an installed wheel has no datasets/ beside it
DATASETS = Path(__file__).resolve().parents[2] / "datasets"


def load_bladderbatch(root: str | Path | None = None) -> ExpressionMatrix:
    """Bladder cancer arrays, 57 samples × 5,000 probe sets; obs: cancer, outcome, batch (1-5).

    Parameters
    ----------
    root:
        The folder holding ``bladderbatch/``; the repository's ``datasets/`` when not given.
    """
    return _load("bladderbatch", root)


def load_all_leukaemia(root: str | Path | None = None) -> ExpressionMatrix:
    """Adult ALL arrays, 128 samples × 5,000 probe sets; obs: BT, lineage (B/T), mol_biol, ...

    Parameters
    ----------
    root:
        The folder holding ``all_leukaemia/``; the repository's ``datasets/`` when not given.
    """
    return _load("all_leukaemia", root)


def load_pbmc68k_shifted(
    n_batches: int = 3,
    strength: float = 1.0,
    seed: int = 0,
    *,
    stratify: str | None = "bulk_labels",
    effect: BatchEffect | None = None,
) -> ExpressionMatrix:
    """scanpy's pbmc68k_reduced (700 cells, log1p) split into batches with simulated effects.

    Parameters
    ----------
    n_batches:
        Number of batches, in ``obs["batch"]`` as ``"batch_0"``, ...
    strength:
        Multiplies every spread of the batch effect (0: no effect, 1: the defaults).
    seed:
        Seeds the split and the effects.
    stratify:
        Deal each cell type evenly over the batches (``None``: deal at random).
    effect:
        The spreads at strength 1 (see `training.data.shift.BatchEffect`).
    """
    return simulate_batches(
        load_pbmc68k_reduced(),
        n_batches,
        seed=seed,
        strength=strength,
        stratify=stratify,
        effect=effect,
    )


def _load(name: str, root: str | Path | None) -> ExpressionMatrix:
    folder = (DATASETS if root is None else Path(root)) / name
    expression, samples = folder / "expression.parquet", folder / "samples.tsv"
    for path in (expression, samples):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: the public datasets live in the repository's datasets/ "
                "folder (built by tools/build_datasets.py) and do not come with an installed "
                "package; run from a checkout or pass root="
            )
    matrix = read_parquet(expression, orientation="samples_as_rows")
    return attach_obs(matrix, read_obs(samples))
