"""Build the gene-set resources go_bp.tsv.gz and progeny_human.tsv.gz (maintainer tool).

Run from the repository root after
`apt-get install r-bioc-go.db r-bioc-org.hs.eg.db r-bioc-progeny` (which brings r-base-core):

    python tools/build_gene_sets.py

GO biological-process sets come from org.Hs.eg.db's direct annotations, propagated up GO.db's
is_a and part_of edges; PROGENy footprints come from progeny::model_human_full through Rscript.
Both outputs are deterministic (sorted rows, gzip mtime 0).
"""

from __future__ import annotations

import argparse
import csv
import sqlite3
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

from build_gene_table import ORG_DB, RESOURCES, debian_version, description, gene_rows, write_tsv_gz

GO_DB = Path("/usr/lib/R/site-library/GO.db")
PROGENY = Path("/usr/lib/R/site-library/progeny")
MIN_GENES, MAX_GENES = 10, 500
PROGENY_TOP = 100

# the true-path rule: a gene in a process is in every process it is a kind of (is_a) or a part of
# (part_of); regulates edges are left out, since regulating a process is not taking part in it
_PROPAGATE = ("isa", "part of")
_DUMP_MODEL = "utils::write.csv(progeny::model_human_full, commandArgs(TRUE)[1], row.names = FALSE)"


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _ancestors(parents: dict[str, set[str]]) -> dict[str, frozenset[str]]:
    """Each term with itself and every term above it."""
    memo: dict[str, frozenset[str]] = {}

    def up(term: str) -> frozenset[str]:
        if term not in memo:
            above: set[str] = {term}
            for parent in parents.get(term, ()):
                above |= up(parent)
            memo[term] = frozenset(above)
        return memo[term]

    for term in list(parents):
        up(term)
    return memo


def go_bp_rows(org: sqlite3.Connection, go: sqlite3.Connection) -> list[list[str]]:
    """GO BP terms with MIN_GENES..MAX_GENES human genes: id, name, space-joined symbols."""
    names = dict(go.execute("SELECT go_id, term FROM go_term WHERE ontology = 'BP'").fetchall())
    by_internal = dict(go.execute("SELECT _id, go_id FROM go_term").fetchall())
    parents: dict[str, set[str]] = defaultdict(set)
    marks = ",".join("?" * len(_PROPAGATE))
    for child, parent in go.execute(
        f"SELECT _id, _parent_id FROM go_bp_parents WHERE relationship_type IN ({marks})",
        _PROPAGATE,
    ):
        parents[by_internal[child]].add(by_internal[parent])
    above = _ancestors(parents)
    # symbols exactly as in human_genes.tsv.gz (MT- prefixes included), keyed by org's _id
    entrez_symbol = {row[0]: row[1] for row in gene_rows(org)}
    symbol_of = {i: entrez_symbol[e] for i, e in org.execute("SELECT _id, gene_id FROM genes")}
    members: dict[str, set[str]] = defaultdict(set)
    for internal, term in org.execute("SELECT DISTINCT _id, go_id FROM go_bp"):
        if term not in names:
            raise ValueError(f"{term} is annotated in org.Hs.eg.db but not a BP term of GO.db")
        for ancestor in above.get(term, frozenset((term,))):
            members[ancestor].add(symbol_of[internal])
    return [
        [term, names[term], " ".join(sorted(genes))]
        for term, genes in sorted(members.items())
        if MIN_GENES <= len(genes) <= MAX_GENES
    ]


def progeny_rows() -> list[list[str]]:
    """PROGENy's human model, top PROGENY_TOP genes per pathway by p-value (ties kept)."""
    with tempfile.TemporaryDirectory() as tmp:
        dump = Path(tmp) / "model_human_full.csv"
        subprocess.run(
            ["Rscript", "-e", _DUMP_MODEL, str(dump)],
            check=True,
        )
        with dump.open(newline="", encoding="utf-8") as handle:
            model = list(csv.DictReader(handle))
    by_pathway: dict[str, list[tuple[float, str, float]]] = defaultdict(list)
    for row in model:
        by_pathway[row["pathway"]].append(
            (float(row["p.value"]), row["gene"], float(row["weight"]))
        )
    rows: list[list[str]] = []
    for pathway, genes in sorted(by_pathway.items()):
        genes.sort()
        # progeny::getModel keeps every gene tied with the last one (dplyr::top_n); so do we
        cut = genes[min(PROGENY_TOP, len(genes)) - 1][0]
        rows += [[pathway, g, f"{w:.6g}", f"{p:.6g}"] for p, g, w in genes if p <= cut]
    return rows


def main(argv: list[str] | None = None) -> None:
    """Write go_bp.tsv.gz and progeny_human.tsv.gz."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=RESOURCES)
    args = parser.parse_args(argv)

    org = _connect(ORG_DB / "extdata" / "org.Hs.eg.sqlite")
    go = _connect(GO_DB / "extdata" / "GO.sqlite")
    try:
        go_meta = dict(go.execute("SELECT name, value FROM metadata").fetchall())
        org_meta = dict(org.execute("SELECT name, value FROM metadata").fetchall())
        evidence = sorted(e for (e,) in org.execute("SELECT DISTINCT evidence FROM go_bp"))
        go_rows = go_bp_rows(org, go)
    finally:
        org.close()
        go.close()
    go_desc, org_desc = description(GO_DB), description(ORG_DB)
    go_header = [
        "go_bp.tsv.gz: GO biological-process gene sets, human; built by tools/build_gene_sets.py",
        f"source: Debian r-bioc-go.db {debian_version('r-bioc-go.db')} (GO.db "
        f"{go_desc.get('Version', '?')}) and r-bioc-org.hs.eg.db "
        f"{debian_version('r-bioc-org.hs.eg.db')} (org.Hs.eg.db {org_desc.get('Version', '?')}); "
        f"packages {go_desc.get('License', '?')}",
        f"ontology: {go_meta.get('GOSOURCEURL', '?')} of {go_meta.get('GOSOURCEDATE', '?')}; "
        f"annotations: {org_meta.get('GOEGSOURCENAME', '?')} gene2go of "
        f"{org_meta.get('GOEGSOURCEDATE', '?')}",
        "licence: Gene Ontology data CC BY 4.0 (geneontology.org); cite the GO Consortium",
        "propagation: direct annotations (all evidence codes: "
        f"{' '.join(evidence)}) carried up is_a and part_of edges, not regulates",
        f"kept: terms with {MIN_GENES} to {MAX_GENES} genes; symbols as in human_genes.tsv.gz",
        "columns: term (GO id), name, genes (space-joined official symbols)",
    ]
    write_tsv_gz(args.out_dir / "go_bp.tsv.gz", go_header, [["term", "name", "genes"], *go_rows])

    prog_desc = description(PROGENY)
    prog_rows = progeny_rows()
    prog_header = [
        "progeny_human.tsv.gz: PROGENy human pathway footprints; built by tools/build_gene_sets.py",
        f"source: Debian r-bioc-progeny {debian_version('r-bioc-progeny')} (progeny "
        f"{prog_desc.get('Version', '?')}, data progeny::model_human_full)",
        f"licence: Apache-2.0 (DESCRIPTION: {prog_desc.get('License', '?')}); "
        "cite Schubert et al. 2018, Nat Commun 9:20",
        f"kept: top {PROGENY_TOP} genes per pathway by p-value, ties kept (as progeny::getModel)",
        "columns: pathway, gene (symbol as PROGENy has it), weight (model coefficient), p_value",
    ]
    write_tsv_gz(
        args.out_dir / "progeny_human.tsv.gz",
        prog_header,
        [["pathway", "gene", "weight", "p_value"], *prog_rows],
    )
    for name, count in (("go_bp.tsv.gz", len(go_rows)), ("progeny_human.tsv.gz", len(prog_rows))):
        path = args.out_dir / name
        print(f"wrote {path} ({count} rows, {path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
