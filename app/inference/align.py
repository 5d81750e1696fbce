"""Gene alignment: map a request's gene columns onto a model's panel, and say how well they matched.

Names match case-insensitively on the panel ids and their aliases, Ensembl version suffixes
stripped on both sides (`app.inference.genes.gene_key`). Panel genes the input lacks get
the card's fill value; input genes outside the panel are ignored and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.errors import InsufficientGeneOverlap, InvalidExpressionData
from app.inference.card import GenePanel
from app.inference.genes import gene_key

MAX_LISTED = 50  # genes named in an answer; the counts are always complete


def panel_lookup(panel: GenePanel) -> dict[str, int]:
    """Normalised name (id or alias) → panel column."""
    lookup: dict[str, int] = {}
    for col, gene in enumerate(panel.ids):
        names = [gene, *(panel.aliases[col] if panel.aliases else [])]
        for name in names:
            lookup.setdefault(gene_key(name), col)
    return lookup


@dataclass(frozen=True)
class Alignment:
    """Where each panel gene comes from in the input (-1: missing, filled)."""

    source: npt.NDArray[np.intp]
    panel_size: int
    matched: int
    missing_genes: list[str]
    unused_input_genes: list[str]

    @property
    def fraction(self) -> float:
        return self.matched / self.panel_size

    def apply(
        self, x: npt.NDArray[np.float32], fill: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """Reorder input columns into panel order, filling the missing ones."""
        out = np.empty((x.shape[0], self.panel_size), dtype=np.float32)
        present = self.source >= 0
        out[:, present] = x[:, self.source[present]]
        out[:, ~present] = fill[~present]
        return out


def align(
    panel: GenePanel, lookup: dict[str, int], genes: list[str], *, min_overlap: float
) -> Alignment:
    """Align input gene names to the panel; refuse duplicates and too small an overlap."""
    source = np.full(len(panel.ids), -1, dtype=np.intp)
    claimed_by: dict[int, str] = {}
    duplicates: list[str] = []
    unused: list[str] = []
    for idx, gene in enumerate(genes):
        col = lookup.get(gene_key(gene))
        if col is None:
            unused.append(gene)
        elif col in claimed_by:
            duplicates.append(f"{gene} (same gene as {claimed_by[col]})")
        else:
            claimed_by[col] = gene
            source[col] = idx
    if duplicates:
        raise InvalidExpressionData(
            f"{len(duplicates)} gene(s) appear more than once: "
            + ", ".join(duplicates[:MAX_LISTED]),
            genes=duplicates[:MAX_LISTED],
        )
    matched = int((source >= 0).sum())
    missing = [panel.ids[c] for c in np.flatnonzero(source < 0)]
    alignment = Alignment(source, len(panel.ids), matched, missing, unused)
    if alignment.fraction < min_overlap:
        raise InsufficientGeneOverlap(
            f"only {matched} of the model's {len(panel.ids)} genes ({alignment.fraction:.1%}) are "
            f"in the input; at least {min_overlap:.0%} are required. Check the gene identifiers "
            "(the model's panel is listed at GET /v1/models/{name}).",
            matched=matched,
            panel_size=len(panel.ids),
            missing_genes=missing[:MAX_LISTED],
            unmatched_input_genes=unused[:MAX_LISTED],
        )
    return alignment
