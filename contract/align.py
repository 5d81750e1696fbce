"""Gene alignment: map input gene columns onto a model's panel, and say how well they matched.

The one path every caller takes (serving, dataset uploads, fine-tuning jobs, the CLI): check the
input scale (applying the card's input transform when the values are on a scale it converts
from, `contract.transforms`), fold columns that name the same gene (`contract.genes.harmonise`),
then match names on the panel ids and their aliases by `contract.genes.gene_key`
(case-insensitive, Ensembl version suffixes stripped). Names that match nothing directly are
looked up in the human gene table (`contract.panelmap`): an Ensembl id, Entrez id or previous
symbol of a panel gene finds its column; ambiguous names are reported, never guessed. Panel
genes the input lacks get the card's fill value; input genes outside the panel are ignored and
counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from contract import transforms as scales
from contract.card import GenePanel, InputScale, InputTransform
from contract.errors import DataError, GeneOverlapError
from contract.genes import Harmonised, gene_key, harmonise, strip_version
from contract.matrix import ExpressionMatrix
from contract.panelmap import TableMap, uses_table

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

    @cached_property
    def table(self) -> TableMap | None:
        """The panel through the human gene table, built when a name first needs it (the
        table takes about a second to read, once per process); None for non-human panels."""
        return TableMap.of(self.panel) if uses_table(self.panel) else None


@dataclass(frozen=True)
class GeneMatch:
    """Where each panel gene comes from in the input (-1: missing), and how names matched."""

    source: npt.NDArray[np.intp]
    direct: int  # panel genes matched by gene_key (ids and aliases)
    via_table: int  # panel genes matched through the human gene table
    ambiguous: list[str]  # input names that may mean a panel gene but were not used, and why
    unused_input_genes: list[str]

    @property
    def matched(self) -> int:
        return self.direct + self.via_table


def match(index: PanelIndex, genes: list[str]) -> GeneMatch:
    """Match input names to panel columns: directly first, then through the gene table.

    A column matched directly is never taken by a table match; a second name the table sends to
    a column already matched, or a name that may mean several genes, is listed in `ambiguous`
    and not used. Two names that match one column directly are an error (`harmonise` first).
    """
    panel = index.panel
    source = np.full(len(panel.ids), -1, dtype=np.intp)
    claimed_by: dict[int, str] = {}
    duplicates: list[str] = []
    misses: list[int] = []
    for idx, gene in enumerate(genes):
        col = index.lookup.get(gene_key(gene))
        if col is None:
            misses.append(idx)
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
    direct = len(claimed_by)
    table = index.table if misses else None
    if table is None:
        return GeneMatch(source, direct, 0, [], [genes[i] for i in misses])
    ambiguous: list[str] = []
    unused: list[str] = []
    for idx, hit in zip(misses, table.look_up([genes[i] for i in misses]), strict=True):
        gene = genes[idx]
        if hit.column is not None and hit.column not in claimed_by:
            claimed_by[hit.column] = gene
            source[hit.column] = idx
            continue
        unused.append(gene)
        if hit.column is not None:
            panel_gene, first = panel.ids[hit.column], claimed_by[hit.column]
            ambiguous.append(f"{gene} (is {panel_gene}, already matched by {first})")
        elif hit.candidates:
            ambiguous.append(f"{gene} (may be {' or '.join(hit.candidates)})")
    return GeneMatch(source, direct, len(claimed_by) - direct, ambiguous, unused)


@dataclass(frozen=True)
class Alignment:
    """Where each panel gene comes from in the input (-1: missing, filled)."""

    source: npt.NDArray[np.intp]
    panel_size: int
    matched: int
    missing_genes: list[str]
    unused_input_genes: list[str]
    matched_directly: int = 0
    matched_via_table: int = 0
    ambiguous_genes: tuple[str, ...] = ()

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
    found = match(index, genes)
    missing = [panel.ids[c] for c in np.flatnonzero(found.source < 0)]
    alignment = Alignment(
        found.source,
        len(panel.ids),
        found.matched,
        missing,
        found.unused_input_genes,
        found.direct,
        found.via_table,
        tuple(found.ambiguous),
    )
    if alignment.fraction < min_overlap:
        raise GeneOverlapError(
            f"only {found.matched} of the model's {len(panel.ids)} genes "
            f"({alignment.fraction:.1%}) are in the input ({found.direct} by name, "
            f"{found.via_table} through the human gene table); at least {min_overlap:.0%} are "
            "required. Check the gene identifiers (the model's panel is listed at "
            "GET /v1/models/{name}).",
            matched=found.matched,
            matched_directly=found.direct,
            matched_via_table=found.via_table,
            panel_size=len(panel.ids),
            missing_genes=missing[:MAX_LISTED],
            unmatched_input_genes=found.unused_input_genes[:MAX_LISTED],
            ambiguous_genes=found.ambiguous[:MAX_LISTED],
        )
    return alignment


@dataclass(frozen=True)
class PanelInput:
    """Input values in panel order, and how they got there (for the overlap report)."""

    values: npt.NDArray[np.float32]
    alignment: Alignment
    folded: Harmonised
    transform: InputTransform | None = None  # applied to the values before alignment


def to_panel(
    values: npt.NDArray[np.float32],
    genes: list[str],
    index: PanelIndex,
    scale: InputScale,
    *,
    min_overlap: float,
    declared: InputScale | None = None,
    transforms: Sequence[InputTransform] = (),
) -> PanelInput:
    """Check the scale (transforming when needed), fold duplicate genes, align, fill the rest.

    Parameters
    ----------
    values, genes:
        Samples × genes input and one name per column.
    index:
        The model's indexed gene panel (ids, aliases, fill values).
    scale:
        The scale the model takes; values on another scale are refused (`InputScaleError`)
        unless one of `transforms` starts from it.
    min_overlap:
        Smallest share of panel genes the input must have (`GeneOverlapError` below it).
    declared:
        The scale the caller vouches for: detection is skipped, a mismatch is still refused.
    transforms:
        The card's input transforms (other accepted scales and their per-sample steps); a
        sample's library size is summed over every gene sent, before alignment.
    """
    choice = scales.choose(values, scale, transforms, declared)
    ids = index.panel.ids
    if index.plain and len(genes) == len(ids) and genes == ids:
        # the panel itself, in order: harmonise and align would both be the identity
        n = len(ids)
        identity = Alignment(np.arange(n, dtype=np.intp), n, n, [], [], matched_directly=n)
        x = values if choice.transform is None else scales.apply(choice.transform, values)
        return PanelInput(x, identity, Harmonised(values, list(genes), {}, 0), choice.transform)
    folded = harmonise(values, genes, choice.scale.value)
    x = folded.values if choice.transform is None else scales.apply(choice.transform, folded.values)
    alignment = align(index, folded.genes, min_overlap=min_overlap)
    return PanelInput(alignment.apply(x, index.fill), alignment, folded, choice.transform)


def align_matrix(
    matrix: ExpressionMatrix,
    panel: GenePanel,
    scale: InputScale,
    *,
    min_overlap: float = 0.5,
    transforms: Sequence[InputTransform] = (),
) -> tuple[ExpressionMatrix, PanelInput]:
    """`to_panel` for a whole ExpressionMatrix: its samples and obs, the panel's genes in order."""
    done = to_panel(
        matrix.X,
        matrix.gene_ids,
        PanelIndex.of(panel),
        scale,
        min_overlap=min_overlap,
        transforms=transforms,
    )
    # an input already in panel order comes back as itself: the aligned matrix gets its own copy,
    # as it always did, so that nothing done to one changes the other
    values = done.values.copy() if np.shares_memory(done.values, matrix.X) else done.values
    aligned = ExpressionMatrix(
        X=values, sample_ids=matrix.sample_ids, gene_ids=list(panel.ids), obs=matrix.obs
    )
    return aligned, done
