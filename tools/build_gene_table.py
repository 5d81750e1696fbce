"""Build contract/resources/human_genes.tsv.gz from Debian's r-bioc-org.hs.eg.db (maintainer tool).

Run from the repository root after `apt-get install r-bioc-org.hs.eg.db`:

    python tools/build_gene_table.py

The output is deterministic (sorted rows, gzip mtime 0), so a re-run on the same package version
gives a byte-identical file and a diff only when the source changed.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sqlite3
import subprocess
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESOURCES = REPO / "contract" / "resources"
PACKAGE = "r-bioc-org.hs.eg.db"
ORG_DB = Path("/usr/lib/R/site-library/org.Hs.eg.db")

# the metadata rows worth carrying into the file header: they date each source
_METADATA_KEYS = ("ORGANISM", "TAXID", "EGSOURCENAME", "EGSOURCEDATE", "EGSOURCEURL")


def debian_version(package: str) -> str:
    """The installed Debian version of `package`, or 'unknown' where dpkg cannot say."""
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def description(package_dir: Path) -> dict[str, str]:
    """The single-line fields of an installed R package's DESCRIPTION file."""
    fields: dict[str, str] = {}
    for line in (package_dir / "DESCRIPTION").read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith((" ", "\t")):
            fields[key] = value.strip()
    return fields


def write_tsv_gz(path: Path, header: Iterable[str], rows: Iterable[Iterable[str]]) -> None:
    """Write `#` comment lines then tab-separated rows as a reproducible gzip (mtime 0, no name)."""
    text = io.StringIO()
    for comment in header:
        text.write(f"# {comment}\n")
    for row in rows:
        fields = list(row)
        if any("\t" in f or "\n" in f for f in fields):
            raise ValueError(f"a field holds a tab or newline: {fields!r}")
        text.write("\t".join(fields) + "\n")
    raw = io.BytesIO()
    # an empty file name and mtime 0 keep the gzip header free of anything that varies per build
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        gz.write(text.getvalue().encode("utf-8"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.getvalue())


def _grouped(db: sqlite3.Connection, sql: str) -> dict[int, set[str]]:
    out: dict[int, set[str]] = defaultdict(set)
    for key, value in db.execute(sql):
        out[int(key)].add(str(value))
    return out


def hgnc_mitochondrial(symbol: str, aliases: Iterable[str]) -> str:
    """HGNC's symbol of a mitochondrial gene NCBI names without the MT- prefix (ND3 -> MT-ND3)."""
    # NCBI keeps HGNC's old prefix-less symbols as aliases (MTND3, MTCYB); only TRNF lacks one
    for alias in sorted(aliases):
        if alias.startswith("MT") and alias[2:].isalnum() and alias.isupper():
            return f"MT-{alias[2:]}"
    if symbol.startswith("TRN"):
        return f"MT-T{symbol[3:]}"
    raise ValueError(f"no HGNC form known for the mitochondrial gene {symbol}")


def gene_rows(db: sqlite3.Connection) -> list[list[str]]:
    """One row per Entrez gene: entrez, symbol, `|`-joined Ensembl ids, `|`-joined aliases."""
    # `ensembl` is the union of ensembl2ncbi and ncbi2ensembl (so on 3.16.0): it alone will do
    ensembl = _grouped(db, "SELECT _id, ensembl_id FROM ensembl")
    aliases = _grouped(db, "SELECT _id, alias_symbol FROM alias")
    mitochondrial = {i for (i,) in db.execute("SELECT _id FROM chromosomes WHERE chromosome='MT'")}
    rows: list[tuple[int, list[str]]] = []
    for internal, entrez, ncbi_symbol in db.execute(
        "SELECT g._id, g.gene_id, i.symbol FROM genes g JOIN gene_info i ON i._id = g._id"
    ):
        symbol = ncbi_symbol
        if internal in mitochondrial:
            # expression data (GENCODE, 10x, Ensembl) names these MT-ND3, MT-CO1, ...; NCBI's
            # own symbol stays an alias
            symbol = hgnc_mitochondrial(ncbi_symbol, aliases.get(internal, ()))
            aliases[internal].add(ncbi_symbol)
        # the alias table repeats each gene's own symbol; the symbol column already says it
        own = symbol.upper()
        other = sorted(a for a in aliases.get(internal, ()) if a.upper() != own and "|" not in a)
        ids = sorted(ensembl.get(internal, ()))
        rows.append((int(entrez), [str(entrez), symbol, "|".join(ids), "|".join(other)]))
    rows.sort(key=lambda item: item[0])
    return [row for _, row in rows]


def main(argv: list[str] | None = None) -> None:
    """Read org.Hs.eg.sqlite and write the human gene id table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package-dir", type=Path, default=ORG_DB)
    parser.add_argument("--out", type=Path, default=RESOURCES / "human_genes.tsv.gz")
    args = parser.parse_args(argv)

    sqlite_path = args.package_dir / "extdata" / "org.Hs.eg.sqlite"
    db = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        meta = dict(db.execute("SELECT name, value FROM metadata").fetchall())
        rows = gene_rows(db)
    finally:
        db.close()
    desc = description(args.package_dir)
    header = [
        "human_genes.tsv.gz: one row per human Entrez Gene id; built by tools/build_gene_table.py",
        f"source: Debian {PACKAGE} {debian_version(PACKAGE)} "
        f"(Bioconductor org.Hs.eg.db {desc.get('Version', '?')}, {desc.get('License', '?')})",
        *(f"metadata {key}: {meta.get(key, '?')}" for key in _METADATA_KEYS),
        "data: NCBI Gene (symbols: NCBI's official ones, HGNC-approved where HGNC named the gene, "
        "the 37 mitochondrial genes given HGNC's MT- form; Ensembl ids: NCBI's gene2ensembl); "
        "NCBI places no restriction on the use of its data",
        "columns: entrez, symbol (official), ensembl (|-joined), aliases (|-joined: previous "
        "symbols and aliases, own symbol left out)",
    ]
    write_tsv_gz(args.out, header, [["entrez", "symbol", "ensembl", "aliases"], *rows])
    print(f"wrote {args.out} ({len(rows)} genes, {args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
