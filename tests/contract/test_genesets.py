"""contract.genesets: the committed GO BP and PROGENy collections and the enrichment test."""

from __future__ import annotations

import gzip
from math import comb

import numpy as np
import pytest
from scipy.stats import hypergeom

from contract import genesets
from contract.genesets import GeneSet, GeneSetCollection

INTERFERON = "ISG15 IFI6 IFIT1 IFIT3 MX1 OAS1 IFI44L RSAD2 IFIT2 OAS2 OAS3 MX2 IFI27 STAT1 IRF7"
UNIVERSE = [f"G{i}" for i in range(20)]


def _tiny() -> GeneSetCollection:
    sets = (
        GeneSet("A", "five of the query", frozenset(["G0", "G1", "G2", "G3", "G4", "G10"])),
        GeneSet("B", "two of the query", frozenset(["G3", "G4", "G11", "G12", "G13"])),
        GeneSet("C", "none of the query", frozenset(["G15", "G16", "G17"])),
        GeneSet("D", "one, plus genes outside the universe", frozenset(["G0", "X1", "X2"])),
    )
    return GeneSetCollection("tiny", sets, ())


def _p_by_hand(hits: int, universe: int, size: int, drawn: int) -> float:
    """P(at least `hits` of `drawn` genes fall in a set of `size` out of `universe`)."""
    top = min(size, drawn)
    ways = sum(comb(size, k) * comb(universe - size, drawn - k) for k in range(hits, top + 1))
    return ways / comb(universe, drawn)


def test_hypergeometric_p_on_a_tiny_collection() -> None:
    query = ["g0", "G1", "G2", "G3 ", "G4", "NOT_IN_UNIVERSE"]
    results = genesets.enrich(query, UNIVERSE, _tiny())
    by_id = {r.set_id: r for r in results}
    assert set(by_id) == {"A", "B", "D"}  # C shares no gene: not tested
    assert by_id["A"].overlap == ("G0", "G1", "G2", "G3", "G4")
    assert by_id["A"].set_size == 6
    assert by_id["D"].set_size == 1  # X1, X2 are outside the universe
    for set_id, hits, size in (("A", 5, 6), ("B", 2, 5), ("D", 1, 1)):
        expected = _p_by_hand(hits, 20, size, 5)
        assert by_id[set_id].p == pytest.approx(expected, rel=1e-12)
        assert by_id[set_id].p == pytest.approx(hypergeom.sf(hits - 1, 20, size, 5), rel=1e-12)
    assert by_id["A"].p == pytest.approx(6 / 15504, rel=1e-12)  # C(6,5)·C(14,0) / C(20,5)
    assert [r.set_id for r in results] == ["A", "D", "B"]


def test_benjamini_hochberg_over_the_tested_sets() -> None:
    results = genesets.enrich(["G0", "G1", "G2", "G3", "G4"], UNIVERSE, _tiny())
    p = np.array([r.p for r in results])
    q = np.array([r.q for r in results])
    m = len(p)
    by_hand = np.minimum.accumulate((p * m / np.arange(1, m + 1))[::-1])[::-1]
    np.testing.assert_allclose(q, np.minimum(by_hand, 1.0), rtol=1e-12)
    assert np.all(q >= p)
    assert np.all(np.diff(q) >= 0)  # sorted by p, so q never falls

    stricter = genesets.enrich(["G0", "G1", "G2", "G3", "G4"], UNIVERSE, _tiny(), min_overlap=2)
    assert [r.set_id for r in stricter] == ["A", "B"]
    assert stricter[0].q == pytest.approx(stricter[0].p * 2)


def test_enrich_edge_cases() -> None:
    assert genesets.enrich(["X1"], UNIVERSE, _tiny()) == []
    assert genesets.enrich([], UNIVERSE, _tiny()) == []
    with pytest.raises(ValueError, match="min_overlap"):
        genesets.enrich(["G0"], UNIVERSE, _tiny(), min_overlap=0)
    with pytest.raises(ValueError, match="go_bp, progeny"):
        genesets.load("kegg")
    with pytest.raises(ValueError, match="valid: go_bp, progeny"):
        genesets.enrich(["G0"], UNIVERSE, "reactome")


def test_go_bp_collection() -> None:
    go = genesets.load("go_bp")
    assert go is genesets.load("go_bp")
    assert len(go) > 5000
    assert all(10 <= len(s.genes) <= 500 for s in go.sets)
    assert all(g == g.upper() for s in go.sets[:200] for g in s.genes)
    by_id = {s.id: s for s in go.sets}
    assert by_id["GO:0051607"].name == "defense response to virus"
    assert {"ISG15", "MX1", "OAS1"} <= by_id["GO:0051607"].genes
    # propagation: every gene of "defense response to virus" is in its is_a parent
    assert by_id["GO:0051607"].genes <= by_id["GO:0009615"].genes  # response to virus
    assert any("CC BY 4.0" in line for line in go.source)


def test_progeny_collection() -> None:
    progeny = genesets.load("progeny")
    assert len(progeny) == 14
    jak_stat = {s.id: s for s in progeny.sets}["JAK-STAT"]
    assert len(jak_stat.genes) == 100
    assert set(jak_stat.weights) == jak_stat.genes
    assert jak_stat.weights["OAS1"] > 0
    assert any("Apache-2.0" in line for line in progeny.source)


def _universe() -> frozenset[str]:
    return genesets.load("go_bp").genes() | genesets.load("progeny").genes()


def test_interferon_genes_find_antiviral_go_terms() -> None:
    top = genesets.enrich(INTERFERON.split(), _universe(), "go_bp")[:5]
    assert any("virus" in r.name or "type I interferon" in r.name for r in top)
    assert top[0].q < 1e-10


def test_interferon_genes_find_jak_stat_in_progeny() -> None:
    results = genesets.enrich(INTERFERON.lower().split(), _universe(), "progeny")
    assert results[0].set_id == "JAK-STAT"
    assert results[0].q < 1e-10


@pytest.mark.parametrize("resource", ["go_bp.tsv.gz", "progeny_human.tsv.gz"])
def test_resources_are_reproducible_gzip(resource: str) -> None:
    raw = (genesets.RESOURCES / resource).read_bytes()
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime 0
    assert len(raw) < 4_000_000
    with gzip.open(genesets.RESOURCES / resource, "rt", encoding="utf-8") as lines:
        assert next(lines).startswith("# ")


def test_an_enricher_answers_many_queries_as_enrich_does() -> None:
    rng = np.random.default_rng(3)
    enricher = genesets.Enricher(_tiny(), UNIVERSE)
    for _ in range(20):
        query = list(rng.choice(UNIVERSE, size=int(rng.integers(1, 8)), replace=False))
        assert enricher.test(query) == genesets.enrich(query, UNIVERSE, _tiny())
    # by hand: G0..G2 drawn, set A holds 6 of the 20 (G0-G4, G10): P(X ≥ 3) = C(6,3)/C(20,3)
    (a, *_) = enricher.test(["G0", "G1", "G2"])
    assert a.set_id == "A"
    assert a.p == pytest.approx(comb(6, 3) / comb(20, 3), rel=1e-12)
    # a p cut-off keeps q as corrected over every set tested
    everything = enricher.test(["G0", "G1", "G2", "G3", "G4"])
    assert enricher.test(["G0", "G1", "G2", "G3", "G4"], max_p=0.01) == everything[:1]
    with pytest.raises(ValueError, match="min_overlap"):
        genesets.Enricher(_tiny(), UNIVERSE, min_overlap=0)


def test_collection_names_keep_the_collections_own_names() -> None:
    # PROGENy's own (older) symbol stays; an Ensembl id becomes GO's official symbol (STAT1)
    progeny_only = sorted(genesets.load("progeny").genes() - genesets.load("go_bp").genes())[0]
    names = genesets.collection_names([progeny_only, "ENSG00000115415", "NOT_A_GENE"], "go_bp")
    assert names[1:] == ["STAT1", "NOT_A_GENE"]
    assert genesets.collection_names([progeny_only], "progeny") == [progeny_only]
