"""Gene names of another id type reach a panel through the human gene table, in contract.align."""

from __future__ import annotations

import numpy as np
import pytest

from contract import idmap
from contract.align import PanelIndex, align, align_matrix, match, to_panel
from contract.card import GenePanel, InputScale
from contract.errors import GeneOverlapError
from contract.matrix import ExpressionMatrix

# real human genes: symbols on the panel
PANEL = ["TP53", "CD4", "ATP5IF1", "MS4A1", "CD14"]


def _panel(ids: list[str] = PANEL, **fields: object) -> GenePanel:
    return GenePanel(ids=ids, fill_values=[0.0] * len(ids), **fields)  # type: ignore[arg-type]


def test_other_id_types_match_through_the_table_after_the_direct_match() -> None:
    index = PanelIndex.of(_panel())
    genes = [
        "ENSG00000141510.17",  # TP53, versioned Ensembl
        "920",  # CD4 as an Entrez id
        "atpif1",  # ATP5IF1's previous symbol, lower-case
        "ms4a1",  # a symbol in any case: matched directly
        "NOT_A_GENE",
    ]
    found = match(index, genes)
    assert (found.direct, found.via_table, found.matched) == (1, 3, 4)
    assert found.source.tolist() == [0, 1, 2, 3, -1]
    assert found.unused_input_genes == ["NOT_A_GENE"]
    assert found.ambiguous == []


def test_a_direct_match_wins_and_a_second_table_name_for_it_is_ambiguous() -> None:
    index = PanelIndex.of(_panel())
    found = match(index, ["ENSG00000141510", "TP53", "7157"])
    assert found.source[0] == 1  # TP53 itself, though the Ensembl id came first
    assert (found.direct, found.via_table) == (1, 0)
    assert found.ambiguous == [
        "ENSG00000141510 (is TP53, already matched by TP53)",
        "7157 (is TP53, already matched by TP53)",
    ]
    assert found.unused_input_genes == ["ENSG00000141510", "7157"]


def test_an_alias_of_several_genes_is_reported_never_guessed() -> None:
    # A20 is an alias of TNFAIP3 and of IGKV1-27
    index = PanelIndex.of(_panel(["TNFAIP3", "CD4"]))
    found = match(index, ["A20", "CD4"])
    assert found.source.tolist() == [-1, 1]
    assert found.ambiguous == ["A20 (may be TNFAIP3)"]


def test_non_human_panels_do_not_use_the_human_table() -> None:
    mouse = PanelIndex.of(_panel(["Trp53", "Cd4"], species="Mus musculus"))
    assert mouse.table is None
    found = match(mouse, ["ENSG00000141510", "cd4"])
    assert (found.direct, found.via_table) == (1, 0)


def test_the_overlap_error_counts_both_ways_and_lists_the_ambiguous() -> None:
    index = PanelIndex.of(_panel())
    with pytest.raises(GeneOverlapError) as caught:
        align(index, ["ENSG00000141510", "A20", "zzz"], min_overlap=0.5)
    extra = caught.value.extra
    assert (extra["matched"], extra["matched_directly"], extra["matched_via_table"]) == (1, 0, 1)
    assert "1 through the human gene table" in caught.value.detail


def test_alignment_and_training_alignment_take_the_same_path() -> None:
    values = np.arange(8, dtype=np.float32).reshape(2, 4) / 10
    genes = ["ENSG00000141510", "920", "ms4a1", "ENSG00000170458"]  # the last: CD14
    done = to_panel(values, genes, PanelIndex.of(_panel()), InputScale.log, min_overlap=0.5)
    assert done.values[:, [0, 1, 3, 4]].tolist() == values.tolist()
    assert (done.alignment.matched_directly, done.alignment.matched_via_table) == (1, 3)
    assert done.alignment.missing_genes == ["ATP5IF1"]
    matrix = ExpressionMatrix(values, ["a", "b"], genes)
    aligned, _ = align_matrix(matrix, _panel(), InputScale.log)
    assert aligned.gene_ids == PANEL
    assert aligned.X.tolist() == done.values.tolist()


def test_lookups_are_remembered_per_panel() -> None:
    index = PanelIndex.of(_panel())
    assert index.table is not None
    first = match(index, ["920", "ENSG00000141510"])
    assert {"920", "ENSG00000141510"} <= set(index.table._memo)
    assert match(index, ["920", "ENSG00000141510"]).source.tolist() == first.source.tolist()


def test_species_and_id_type_of_a_panel() -> None:
    assert idmap.species(PANEL) == idmap.SPECIES
    assert idmap.id_type(PANEL) == "symbol"
    assert idmap.species(["Trp53", "Cd4", "Actb", "Ms4a1"]) is None  # mouse-cased symbols
    assert idmap.species(["ENSMUSG00000059552", "ENSMUSG00000023274"]) is None
    assert idmap.species(["C1orf228", "TP53", "CD4"]) == idmap.SPECIES  # 'orf' is human
    assert idmap.id_type(["ENSG00000141510", "ENSG00000010610"]) == "ensembl"
