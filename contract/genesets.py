"""Gene-set collections (GO biological process, PROGENy) and over-representation tests on them.

The collections are `resources/go_bp.tsv.gz` and `resources/progeny_human.tsv.gz`, built by
tools/build_gene_sets.py; each is read once, on first use. Genes are compared by
`contract.genes.gene_key`, so case and surrounding space never matter.
"""

from __future__ import annotations

import gzip
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType

import numpy as np
from scipy.stats import false_discovery_control, hypergeom

from contract import idmap
from contract.genes import gene_key
from contract.vocab import GENE_SET_COLLECTIONS

__all__ = ["GENE_SET_COLLECTIONS", "Enricher", "Enrichment", "GeneSet", "GeneSetCollection"]
RESOURCES = Path(__file__).resolve().parent / "resources"
_FILES = {"go_bp": "go_bp.tsv.gz", "progeny": "progeny_human.tsv.gz"}


@dataclass(frozen=True)
class GeneSet:
    """One set: its id, a readable name, its genes and, for PROGENy, each gene's weight."""

    id: str
    name: str
    genes: frozenset[str]
    weights: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class GeneSetCollection:
    """A named collection of gene sets with the provenance lines of its file."""

    name: str
    sets: tuple[GeneSet, ...]
    source: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.sets)

    def genes(self) -> frozenset[str]:
        """Every gene in any set of the collection."""
        return frozenset().union(*(s.genes for s in self.sets))


@dataclass(frozen=True)
class Enrichment:
    """One set's over-representation: overlap with the query, set size in the universe, p, q."""

    set_id: str
    name: str
    overlap: tuple[str, ...]
    set_size: int
    p: float
    q: float


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The `#` comment lines and the data rows (header row dropped) of a resource file."""
    comments: list[str] = []
    rows: list[list[str]] = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("#"):
                comments.append(line[1:].strip())
            else:
                rows.append(line.rstrip("\n").split("\t"))
    return comments, rows[1:]


def _go_bp(path: Path) -> GeneSetCollection:
    comments, rows = _rows(path)
    sets = tuple(
        GeneSet(term, name, frozenset(gene_key(g) for g in genes.split()))
        for term, name, genes in rows
    )
    return GeneSetCollection("go_bp", sets, tuple(comments))


def _progeny(path: Path) -> GeneSetCollection:
    comments, rows = _rows(path)
    weights: dict[str, dict[str, float]] = defaultdict(dict)
    for pathway, gene, weight, _p in rows:
        weights[pathway][gene_key(gene)] = float(weight)
    sets = tuple(
        GeneSet(pathway, pathway, frozenset(w), MappingProxyType(w))
        for pathway, w in sorted(weights.items())
    )
    return GeneSetCollection("progeny", sets, tuple(comments))


@cache
def load(name: str) -> GeneSetCollection:
    """The collection called `name`, one of GENE_SET_COLLECTIONS, read once."""
    if name not in GENE_SET_COLLECTIONS:
        valid = ", ".join(GENE_SET_COLLECTIONS)
        raise ValueError(f"unknown gene-set collection {name!r}; valid: {valid}")
    path = RESOURCES / _FILES[name]
    return _go_bp(path) if name == "go_bp" else _progeny(path)


def enrich(
    genes: Iterable[str],
    universe: Iterable[str],
    collection: str | GeneSetCollection,
    *,
    min_overlap: int = 1,
) -> list[Enrichment]:
    """Over-representation of `genes` in each set: hypergeometric p, Benjamini-Hochberg q.

    Both the query and every set are first restricted to `universe` (the genes that could have
    been picked, e.g. the model's panel); sets sharing fewer than `min_overlap` genes with the
    query are not tested and not counted in the correction. Results are sorted by p, then id.
    """
    return Enricher(collection, universe, min_overlap=min_overlap).test(genes)


class Enricher:
    """One collection restricted to one universe, indexed by gene, for many queries: each test
    then costs the query's genes' memberships, not a pass over every set (GO BP has 6,169).

    Parameters are those of `enrich`.
    """

    def __init__(
        self,
        collection: str | GeneSetCollection,
        universe: Iterable[str],
        *,
        min_overlap: int = 1,
    ) -> None:
        if min_overlap < 1:
            raise ValueError(f"min_overlap must be at least 1, got {min_overlap}")
        sets = load(collection).sets if isinstance(collection, str) else collection.sets
        self.background = frozenset(gene_key(g) for g in universe)
        self.min_overlap = min_overlap
        self._sets: list[GeneSet] = []
        self._sizes: list[int] = []
        members: dict[str, list[int]] = defaultdict(list)
        for gene_set in sets:
            inside = gene_set.genes & self.background
            if inside:
                for gene in inside:
                    members[gene].append(len(self._sets))
                self._sets.append(gene_set)
                self._sizes.append(len(inside))
        self._members = dict(members)

    def test(self, genes: Iterable[str], *, max_p: float = 1.0) -> list[Enrichment]:
        """The enrichment of one query (see `enrich`); only the sets with p ≤ `max_p` are
        returned (q still corrects over every set tested)."""
        query = frozenset(gene_key(g) for g in genes) & self.background
        if not query:
            return []
        overlaps: dict[int, list[str]] = defaultdict(list)
        for gene in query:
            for k in self._members.get(gene, ()):
                overlaps[k].append(gene)
        tested = sorted(k for k, hits in overlaps.items() if len(hits) >= self.min_overlap)
        if not tested:
            return []
        hits = np.array([len(overlaps[k]) for k in tested])
        sizes = np.array([self._sizes[k] for k in tested])
        # P(X >= hits) for X ~ Hypergeom(universe, set size, query size): sf is P(X > k), so k - 1
        p = np.asarray(
            hypergeom.sf(hits - 1, len(self.background), sizes, len(query)), dtype=np.float64
        )
        p = np.clip(p, 0.0, 1.0)
        q = np.asarray(false_discovery_control(p, method="bh"), dtype=np.float64)
        results = [
            Enrichment(
                self._sets[k].id,
                self._sets[k].name,
                tuple(sorted(overlaps[k])),
                self._sizes[k],
                float(pi),
                float(qi),
            )
            for k, pi, qi in zip(tested, p, q, strict=True)
            if pi <= max_p
        ]
        results.sort(key=lambda r: (r.p, r.set_id))
        return results


def collection_names(ids: Iterable[str], collection: str | GeneSetCollection) -> list[str]:
    """Each gene id as `collection` names it: the id itself where a set has it, else the human
    gene table's official symbol (an Ensembl or Entrez id, or an older symbol, becomes the
    symbol GO uses), else the id unchanged."""
    known = (load(collection) if isinstance(collection, str) else collection).genes()
    names = list(ids)
    entrez = idmap.resolve(names).entrez
    return [
        name if gene_key(name) in known or e is None else idmap.gene(e).symbol
        for name, e in zip(names, entrez, strict=True)
    ]
