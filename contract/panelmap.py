"""A model's gene panel reached through the human gene table, for names the direct match misses.

`contract.genes.gene_key` decides whether two names are the same gene; when an input name
matches no panel id or alias by it (an Ensembl id sent to a symbol panel, an Entrez id, a
previous symbol), `contract.idmap.resolve` may still name the Entrez gene it stands for, and so
the panel column whose own name resolves to the same Entrez gene. Ambiguous names (an alias of
several genes) are never guessed. Only human panels (or panels of unknown species, as old
cards are) use the table, which holds human genes only.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from contract import idmap
from contract.card import GenePanel
from contract.genes import gene_key

MEMO_LIMIT = 500_000  # names remembered per panel; a request repeating its genes costs lookups


@dataclass(frozen=True)
class TableHit:
    """Where one input name leads through the table: a panel column, or the panel genes it may
    mean when the name is ambiguous."""

    column: int | None
    candidates: tuple[str, ...] = ()


_MISS = TableHit(None)


def uses_table(panel: GenePanel) -> bool:
    """Whether the (human) gene table applies to this panel."""
    return panel.species in (None, idmap.SPECIES)


@dataclass
class TableMap:
    """Entrez id → panel column for the panel genes the table resolves to exactly one column,
    and a memo of input names already looked up."""

    panel: GenePanel
    by_entrez: dict[str, int]
    _memo: dict[str, TableHit] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, panel: GenePanel) -> TableMap:
        """Resolve every panel id (then its aliases) once; an Entrez id two columns claim is
        dropped, since it could not say which column a name means."""
        columns: dict[str, set[int]] = {}
        for col, gene in enumerate(panel.ids):
            names = [gene, *(panel.aliases[col] if panel.aliases else ())]
            for entrez in idmap.resolve(names).entrez:
                if entrez is not None:
                    columns.setdefault(entrez, set()).add(col)
                    break  # the id first; an alias only when the id does not resolve
        by_entrez = {e: next(iter(cols)) for e, cols in columns.items() if len(cols) == 1}
        return cls(panel, by_entrez)

    def look_up(self, names: Sequence[str]) -> list[TableHit]:
        """Where each name leads (in order); names already seen are answered from the memo."""
        keys = [gene_key(n) for n in names]
        with self._lock:
            fresh = [k for k in dict.fromkeys(keys) if k not in self._memo]
        if fresh:
            hits = {
                k: self._hit(m) for k, m in zip(fresh, idmap.resolve(fresh).matches, strict=True)
            }
            with self._lock:
                if len(self._memo) + len(hits) > MEMO_LIMIT:
                    self._memo.clear()
                self._memo.update(hits)
        else:
            hits = {}
        with self._lock:
            return [hits.get(k) or self._memo.get(k, _MISS) for k in keys]

    def _hit(self, match: idmap.Match) -> TableHit:
        if match.entrez is not None:
            return TableHit(self.by_entrez.get(match.entrez))
        panel_genes = tuple(
            self.panel.ids[self.by_entrez[e]] for e in match.candidates if e in self.by_entrez
        )
        return TableHit(None, panel_genes) if panel_genes else _MISS
