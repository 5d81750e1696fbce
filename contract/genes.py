"""Gene identifiers: one canonical key per gene, and duplicate columns folded into one.

Shared by training and the service (numpy only). Ensembl ids lose their version suffix
(``ENSG00000141510.17`` → ``ENSG00000141510``) and every name is compared upper-cased, so
``Cd4``, ``CD4`` and ``cd4`` are one gene. Columns that collapse onto one key are summed on a
linear scale (counts, normalised) and averaged on a log or standardised scale, because a sum of
log values is not a log of anything meaningful.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from contract.matrix import ExpressionMatrix

# ENSG/ENST/ENSMUSG…: "ENS", an optional species code, a type letter, 11 digits, then ".version"
# (GENCODE also appends "_PAR_Y" to the pseudo-autosomal copies, which are distinct genes)
_ENSEMBL_VERSION = re.compile(r"^(ENS[A-Z]*[GTPER]\d{11})\.\d+(_PAR_Y)?$", re.IGNORECASE)
LINEAR_SCALES = frozenset({"counts", "normalized"})


class DuplicateGenesWarning(UserWarning):
    """Some columns named the same gene and were aggregated."""


def strip_version(gene: str) -> str:
    """An Ensembl id without its version suffix; any other name stripped of blanks only."""
    name = gene.strip()
    match = _ENSEMBL_VERSION.match(name)
    if match is None:
        return name
    return match.group(1) + (match.group(2) or "")


def gene_key(gene: str) -> str:
    """The key two names of the same gene share: version stripped, upper-cased."""
    return strip_version(gene).upper()


@dataclass(frozen=True)
class Harmonised:
    """Columns after folding: values, one name per column, and what was folded."""

    values: npt.NDArray[np.float32]
    genes: list[str]
    duplicates: dict[str, list[str]]  # kept name → every input name folded into it
    renamed: int  # names whose version suffix was stripped

    def warning(self, limit: int = 50) -> str | None:
        """One sentence listing the folded genes, or None when nothing was folded."""
        if not self.duplicates:
            return None
        items = [f"{k} ({', '.join(v)})" for k, v in list(self.duplicates.items())[:limit]]
        more = f" and {len(self.duplicates) - limit} more" if len(self.duplicates) > limit else ""
        return (
            f"{len(self.duplicates)} gene(s) appear more than once after harmonising ids "
            f"and were aggregated: " + "; ".join(items) + more
        )


def harmonise(values: npt.NDArray[np.float32], genes: list[str], scale: str) -> Harmonised:
    """Fold the columns of `values` (samples × genes) that name the same gene.

    Parameters
    ----------
    values:
        Samples × genes float32 array; NaN stays NaN (a missing value in any copy propagates).
    genes:
        One name per column (symbols or Ensembl ids, versioned or not, any case).
    scale:
        ``counts`` or ``normalized`` sum the copies; ``log`` or ``standardized`` average them.
    """
    if values.ndim != 2 or values.shape[1] != len(genes):
        raise ValueError(f"{len(genes)} gene names for values of shape {values.shape}")
    stripped = [strip_version(g) for g in genes]
    renamed = sum(a != b for a, b in zip(genes, stripped, strict=True))
    first: dict[str, int] = {}
    group = np.empty(len(genes), dtype=np.intp)
    names: list[str] = []
    members: list[list[str]] = []
    for j, name in enumerate(stripped):
        key = name.upper()
        slot = first.setdefault(key, len(names))
        if slot == len(names):
            names.append(name)
            members.append([])
        members[slot].append(genes[j])
        group[j] = slot
    duplicates = {names[i]: m for i, m in enumerate(members) if len(m) > 1}
    if not duplicates:
        return Harmonised(np.asarray(values, dtype=np.float32), names, {}, renamed)
    # one sparse-free scatter-add over columns: O(samples × genes), no Python loop over genes
    summed = np.zeros((values.shape[0], len(names)), dtype=np.float64)
    np.add.at(summed.T, group, values.T.astype(np.float64))
    if scale not in LINEAR_SCALES:
        counts = np.bincount(group, minlength=len(names)).astype(np.float64)
        summed /= counts
    return Harmonised(summed.astype(np.float32), names, duplicates, renamed)


def harmonise_matrix(matrix: ExpressionMatrix, scale: str) -> tuple[ExpressionMatrix, Harmonised]:
    """`harmonise` for a whole ExpressionMatrix; a warning lists the genes folded together.

    Parameters
    ----------
    matrix:
        Any matrix; NaN (missing) values propagate into an aggregated column.
    scale:
        The matrix's scale: ``counts``/``normalized`` sum duplicates, ``log``/``standardized``
        average them.
    """
    folded = harmonise(matrix.X, matrix.gene_ids, scale)
    message = folded.warning()
    if message is not None:
        warnings.warn(message, DuplicateGenesWarning, stacklevel=2)
    out = ExpressionMatrix(
        X=folded.values, sample_ids=matrix.sample_ids, gene_ids=folded.genes, obs=matrix.obs
    )
    return out, folded
