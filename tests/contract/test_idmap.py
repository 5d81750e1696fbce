"""contract.idmap: the gene-name rule and the resolver, on the committed human gene table."""

from __future__ import annotations

import gzip

import pytest

from contract import idmap
from contract.genes import gene_key


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("ENSG00000159251.6", "ENSG00000159251"),
        (" ensg00000141510.17\n", "ENSG00000141510"),
        ("ENST00000269305.9", "ENST00000269305"),
        ("ENSMUSG00000059552.12", "ENSMUSG00000059552"),
        ("ENSP00000269305.4", "ENSP00000269305"),  # versions of any Ensembl id go
        ("RP11-782C8.1", "RP11-782C8.1"),  # clone-based names keep their dot
        ("  tp53 ", "TP53"),
        ("C11orf58", "C11ORF58"),
    ],
)
def test_the_table_is_keyed_by_the_one_gene_rule(name: str, key: str) -> None:
    assert gene_key(name) == key
    assert idmap.resolve([name]).matches[0].name == name


def test_resolve_real_genes() -> None:
    names = [
        "TP53",
        "tp53",
        "ENSG00000141510",
        "ENSG00000141510.18",
        "7157",
        "ATPIF1",  # previous symbol of ATP5IF1
        "NAT1",  # official symbol of 9, also an alias of EIF4G2 and others: official wins
        "A20",  # alias of TNFAIP3 and of IGKV1-27
        "MT-ND3",  # HGNC form of NCBI's ND3
        "TEC",  # shared by a kinase and a phenotype record: the gene with an Ensembl model wins
        "NOT_A_GENE",
        "999999999",
    ]
    resolution = idmap.resolve(names)
    assert resolution.entrez == [
        "7157", "7157", "7157", "7157", "7157", "93974", "9", None, "4537", "7006", None, None
    ]  # fmt: skip
    assert resolution.how == [
        "symbol", "symbol", "ensembl", "ensembl", "entrez", "alias", "symbol", "ambiguous",
        "symbol", "symbol", "unknown", "unknown",
    ]  # fmt: skip
    ambiguous = resolution.matches[7]
    assert ambiguous.name == "A20"
    assert "7128" in ambiguous.candidates  # TNFAIP3
    assert len(ambiguous.candidates) > 1
    assert resolution.counts()["symbol"] == 5
    assert resolution.resolved_fraction == pytest.approx(9 / 12)


def test_gene_rows_and_source() -> None:
    tp53 = idmap.gene("7157")
    assert tp53.symbol == "TP53"
    assert "ENSG00000141510" in tp53.ensembl
    assert "P53" in tp53.aliases
    assert "TP53" not in tp53.aliases
    assert idmap.gene("4537").symbol == "MT-ND3"
    header = " ".join(idmap.source())
    assert "r-bioc-org.hs.eg.db" in header
    assert "Artistic-2.0" in header
    assert idmap.SPECIES == "Homo sapiens"
    with pytest.raises(KeyError):
        idmap.gene("0")


def test_resolve_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError, match="wrap a single name"):
        idmap.resolve("TP53")


@pytest.mark.parametrize(
    ("names", "kind"),
    [
        (["TP53", "EGFR", "ATPIF1", "nonsense"], "symbol"),
        (["ENSG00000141510.5", "ENSG00000146648", "TP53"], "ensembl"),
        (["7157", "1956", "TP53"], "entrez"),
        (["7157", "EGFR"], "mixed"),
        (["nonsense", "9999999999"], "unknown"),
        ([], "unknown"),
    ],
)
def test_id_type(names: list[str], kind: str) -> None:
    assert idmap.id_type(names) == kind


def test_table_is_reproducible_gzip() -> None:
    raw = idmap.TABLE.read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime 0: rebuilding gives the same bytes
    assert len(raw) < 2_000_000
    with gzip.open(idmap.TABLE, "rt", encoding="utf-8") as lines:
        entrez = [int(line.split("\t", 1)[0]) for line in lines if line[0].isdigit()]
    assert entrez == sorted(entrez)
    assert len(entrez) == len(set(entrez)) > 60_000


def test_pbmc68k_gene_names_resolve_and_round_trip_through_ensembl() -> None:
    scanpy = pytest.importorskip("scanpy")
    names = [str(n) for n in scanpy.datasets.pbmc68k_reduced().raw.var_names]
    resolution = idmap.resolve(names)
    assert resolution.resolved_fraction >= 0.95
    assert idmap.id_type(names) == "symbol"

    ensembl = [
        idmap.gene(e).ensembl[0] if e and idmap.gene(e).ensembl else "" for e in resolution.entrez
    ]
    back = idmap.resolve([f"{e}.3" if e else "" for e in ensembl])  # versioned, as GENCODE writes
    same = sum(
        a is not None and a == b for a, b in zip(resolution.entrez, back.entrez, strict=True)
    )
    assert same / len(names) >= 0.95
    assert idmap.id_type(ensembl) == "ensembl"
