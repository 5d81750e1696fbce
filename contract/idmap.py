"""Human gene ids: a resolver from any gene name to its Entrez Gene id, keyed by `gene_key`.

The table is `resources/human_genes.tsv.gz` (built by tools/build_gene_table.py from Debian's
r-bioc-org.hs.eg.db): one row per Entrez gene with its official symbol, Ensembl gene ids and
aliases. It is read once, on first use.
"""

from __future__ import annotations

import gzip
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, NamedTuple

from contract.genes import gene_key

SPECIES = "Homo sapiens"
TABLE = Path(__file__).resolve().parent / "resources" / "human_genes.tsv.gz"

How = Literal["symbol", "ensembl", "entrez", "alias", "ambiguous", "unknown"]
IdType = Literal["symbol", "ensembl", "entrez", "mixed", "unknown"]

_ENSEMBL = re.compile(r"ENS[A-Z]*[GT]\d+", re.ASCII)
_ENTREZ = re.compile(r"\d+", re.ASCII)


class Gene(NamedTuple):
    """One row of the table."""

    entrez: str
    symbol: str
    ensembl: tuple[str, ...]
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Match:
    """What one input name resolved to; `candidates` lists the genes an ambiguous name may mean."""

    name: str
    entrez: str | None
    how: How
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolution:
    """The matches of a list of names, in input order."""

    matches: tuple[Match, ...]

    @property
    def entrez(self) -> list[str | None]:
        """The Entrez id per input name, None where it did not resolve to one gene."""
        return [m.entrez for m in self.matches]

    @property
    def how(self) -> list[How]:
        """How each input name was resolved."""
        return [m.how for m in self.matches]

    @property
    def resolved_fraction(self) -> float:
        """The share of names resolved to exactly one gene (0.0 for no names)."""
        if not self.matches:
            return 0.0
        return sum(m.entrez is not None for m in self.matches) / len(self.matches)

    def counts(self) -> dict[How, int]:
        """How many names were resolved each way."""
        return dict(Counter(m.how for m in self.matches))


@dataclass(frozen=True)
class _Index:
    genes: dict[str, Gene]
    symbols: dict[str, tuple[str, ...]]
    ensembl: dict[str, tuple[str, ...]]
    aliases: dict[str, tuple[str, ...]]
    header: tuple[str, ...]


def _split(field: str) -> tuple[str, ...]:
    return tuple(field.split("|")) if field else ()


def _frozen(index: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    # rows come sorted by Entrez id, so each list is already in order: only repeats need to go
    return {key: tuple(dict.fromkeys(ids)) for key, ids in index.items()}


@cache
def _index() -> _Index:
    genes: dict[str, Gene] = {}
    header: list[str] = []
    symbols: dict[str, list[str]] = defaultdict(list)
    ensembl: dict[str, list[str]] = defaultdict(list)
    aliases: dict[str, list[str]] = defaultdict(list)
    with gzip.open(TABLE, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("#"):
                header.append(line[1:].strip())
                continue
            entrez, symbol, ens, alias = line.rstrip("\n").split("\t")
            if entrez == "entrez":
                continue
            gene = Gene(entrez, symbol, _split(ens), _split(alias))
            genes[entrez] = gene
            symbols[gene_key(symbol)].append(entrez)
            for ensembl_id in gene.ensembl:
                ensembl[ensembl_id].append(entrez)
            for name in gene.aliases:
                aliases[gene_key(name)].append(entrez)
    for key, ids in symbols.items():
        if len(ids) == 1:
            continue
        # a few official symbols are shared by a gene and a phenotype or locus record (TEC, HBD,
        # MEMO1): the one with an Ensembl gene model is the one expression data measures
        modelled = [e for e in ids if genes[e].ensembl]
        if len(modelled) == 1:
            symbols[key] = modelled
    return _Index(genes, _frozen(symbols), _frozen(ensembl), _frozen(aliases), tuple(header))


def _match(name: str, index: _Index) -> Match:
    key = gene_key(name)
    if _ENTREZ.fullmatch(key):
        entrez = str(int(key))
        if entrez in index.genes:
            return Match(name, entrez, "entrez")
        return Match(name, None, "unknown")
    how: How
    if _ENSEMBL.fullmatch(key):
        found, how = index.ensembl.get(key, ()), "ensembl"
    elif key in index.symbols:
        # official symbols are looked up before aliases: an alias that is another gene's
        # symbol means that other gene
        found, how = index.symbols[key], "symbol"
    else:
        found, how = index.aliases.get(key, ()), "alias"
    if len(found) == 1:
        return Match(name, found[0], how)
    if found:
        return Match(name, None, "ambiguous", found)
    return Match(name, None, "unknown")


def resolve(names: Iterable[str]) -> Resolution:
    """Resolve gene names (symbols, aliases, Ensembl or Entrez ids, any case) to Entrez ids."""
    if isinstance(names, str):
        raise TypeError("resolve takes a sequence of names; wrap a single name in a list")
    index = _index()
    return Resolution(tuple(_match(name, index) for name in names))


def _kind(key: str) -> IdType:
    if _ENTREZ.fullmatch(key):
        return "entrez"
    return "ensembl" if _ENSEMBL.fullmatch(key) else "symbol"


def id_type(names: Iterable[str]) -> IdType:
    """The id type that most resolvable names are written in, 'mixed' if none has a majority."""
    resolution = resolve(names)
    kinds = Counter(_kind(gene_key(m.name)) for m in resolution.matches if m.how != "unknown")
    if not kinds:
        return "unknown"
    kind, count = kinds.most_common(1)[0]
    return kind if 2 * count > sum(kinds.values()) else "mixed"


def _mouse_cased(name: str) -> bool:
    # mouse symbols capitalise only the first letter (Cd4, Actb); human ones are upper-case but
    # for the 'orf' of open reading frames (C1orf228)
    return any(c.islower() for c in name.replace("orf", ""))


def species(names: Iterable[str]) -> str | None:
    """SPECIES when most names resolve in the (human) table and are written as human names
    (symbols upper-case), else None: mouse symbols resolve case-insensitively too, so the case
    tells them apart."""
    matches = resolve(list(names)).matches
    known = [m.name for m in matches if m.how != "unknown"]
    if not matches or 2 * len(known) <= len(matches):
        return None
    symbols = [n for n in known if _kind(gene_key(n)) == "symbol"]
    if symbols and 5 * sum(_mouse_cased(n) for n in symbols) > len(symbols):
        return None
    return SPECIES


def gene(entrez: str) -> Gene:
    """The table row of an Entrez id; KeyError if the table has no such gene."""
    return _index().genes[entrez]


def source() -> tuple[str, ...]:
    """The table's header comments: source package, versions, dates and licence."""
    return _index().header
