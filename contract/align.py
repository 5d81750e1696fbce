"""Gene alignment: map input gene columns onto a model's panel, and say how well they matched.

The one path every caller takes (serving, dataset uploads, fine-tuning jobs, the CLI): check the
input scale, fold columns that name the same gene (`contract.genes.harmonise`), then match names
on the panel ids and their aliases by `contract.genes.gene_key` (case-insensitive, Ensembl
version suffixes stripped). Panel genes the input lacks get the card's fill value; input genes
outside the panel are ignored and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from contract.card import GenePanel, InputScale
from contract.errors import DataError, GeneOverlapError
from contract.genes import Harmonised, gene_key, harmonise, strip_version
from contract.matrix import ExpressionMatrix
from contract.scale import require_scale

MAX_LISTED = 50  # genes named in an answer; the counts are always complete


@dataclass(frozen=True)
class PanelIndex:
    """A panel with what alignment looks up per request, computed once per model."""

    panel: GenePanel
    lookup: dict[str, int]  # gene_key of every id and alias → panel column
    fill: npt.NDArray[np.float32]
    # the ids are their own harmonised names and keys, so an input whose genes are exactly the
    # ids in panel order aligns to itself (`to_panel` then skips the per-gene work)
    plain: bool = False

    @classmethod
    def of(cls, panel: GenePanel) -> PanelIndex:
        """Index a panel: its ids first, then aliases that name no id."""
        lookup: dict[str, int] = {}
        for col, gene in enumerate(panel.ids):
            for name in (gene, *(panel.aliases[col] if panel.aliases else ())):
                lookup.setdefault(gene_key(name), col)
        plain = all(
            strip_version(g) == g and lookup[gene_key(g)] == col for col, g in enumerate(panel.ids)
        ) and len({strip_version(g).upper() for g in panel.ids}) == len(panel.ids)
        return cls(panel, lookup, np.asarray(panel.fill_values, dtype=np.float32), plain)

    def matched_columns(self, genes: list[str]) -> set[int]:
        """The panel columns some input name matches (how much of the panel an input covers)."""
        return {col for gene in genes if (col := self.lookup.get(gene_key(gene))) is not None}


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


def align(index: PanelIndex, genes: list[str], *, min_overlap: float) -> Alignment:
    """Align input gene names to the panel; refuse duplicates and too small an overlap."""
    panel = index.panel
    source = np.full(len(panel.ids), -1, dtype=np.intp)
    claimed_by: dict[int, str] = {}
    duplicates: list[str] = []
    unused: list[str] = []
    for idx, gene in enumerate(genes):
        col = index.lookup.get(gene_key(gene))
        if col is None:
            unused.append(gene)
        elif col in claimed_by:
            duplicates.append(f"{gene} (same gene as {claimed_by[col]})")
        else:
            claimed_by[col] = gene
            source[col] = idx
    if duplicates:
        raise DataError(
            f"{len(duplicates)} gene(s) appear more than once: "
            + ", ".join(duplicates[:MAX_LISTED]),
            genes=duplicates[:MAX_LISTED],
        )
    matched = int((source >= 0).sum())
    missing = [panel.ids[c] for c in np.flatnonzero(source < 0)]
    alignment = Alignment(source, len(panel.ids), matched, missing, unused)
    if alignment.fraction < min_overlap:
        raise GeneOverlapError(
            f"only {matched} of the model's {len(panel.ids)} genes ({alignment.fraction:.1%}) are "
            f"in the input; at least {min_overlap:.0%} are required. Check the gene identifiers "
            "(the model's panel is listed at GET /v1/models/{name}).",
            matched=matched,
            panel_size=len(panel.ids),
            missing_genes=missing[:MAX_LISTED],
            unmatched_input_genes=unused[:MAX_LISTED],
        )
    return alignment


@dataclass(frozen=True)
class PanelInput:
    """Input values in panel order, and how they got there (for the overlap report)."""

    values: npt.NDArray[np.float32]
    alignment: Alignment
    folded: Harmonised


def to_panel(
    values: npt.NDArray[np.float32],
    genes: list[str],
    index: PanelIndex,
    scale: InputScale,
    *,
    min_overlap: float,
    declared: InputScale | None = None,
) -> PanelInput:
    """Check the scale, fold duplicate genes, align to the panel and fill the missing genes.

    Parameters
    ----------
    values, genes:
        Samples × genes input and one name per column.
    index:
        The model's indexed gene panel (ids, aliases, fill values).
    scale:
        The scale the model takes; values on another scale are refused (`InputScaleError`).
    min_overlap:
        Smallest share of panel genes the input must have (`GeneOverlapError` below it).
    declared:
        The scale the caller vouches for: detection is skipped, a mismatch is still refused.
    """
    require_scale(values, scale, declared)
    ids = index.panel.ids
    if index.plain and len(genes) == len(ids) and genes == ids:
        # the panel itself, in order: harmonise and align would both be the identity
        n = len(ids)
        identity = Alignment(np.arange(n, dtype=np.intp), n, n, [], [])
        return PanelInput(values, identity, Harmonised(values, list(genes), {}, 0))
    folded = harmonise(values, genes, scale.value)
    alignment = align(index, folded.genes, min_overlap=min_overlap)
    return PanelInput(alignment.apply(folded.values, index.fill), alignment, folded)


def align_matrix(
    matrix: ExpressionMatrix, panel: GenePanel, scale: InputScale, *, min_overlap: float = 0.5
) -> tuple[ExpressionMatrix, PanelInput]:
    """`to_panel` for a whole ExpressionMatrix: its samples and obs, the panel's genes in order."""
    done = to_panel(matrix.X, matrix.gene_ids, PanelIndex.of(panel), scale, min_overlap=min_overlap)
    # an input already in panel order comes back as itself: the aligned matrix gets its own copy,
    # as it always did, so that nothing done to one changes the other
    values = done.values.copy() if np.shares_memory(done.values, matrix.X) else done.values
    aligned = ExpressionMatrix(
        X=values, sample_ids=matrix.sample_ids, gene_ids=list(panel.ids), obs=matrix.obs
    )
    return aligned, done
