from __future__ import annotations

import numpy as np
import pytest

from contract.align import align_matrix
from contract.card import GenePanel, InputScale
from contract.genes import (
    DuplicateGenesWarning,
    gene_key,
    harmonise,
    harmonise_matrix,
    strip_version,
)
from contract.matrix import ExpressionMatrix


def test_ensembl_versions_are_stripped_and_case_folded() -> None:
    assert strip_version("ENSG00000141510.17") == "ENSG00000141510"
    assert strip_version("ENSMUSG00000020122.15") == "ENSMUSG00000020122"
    assert strip_version("ENSG00000002586.20_PAR_Y") == "ENSG00000002586_PAR_Y"
    assert strip_version(" TP53 ") == "TP53"
    assert strip_version("HLA-A.1") == "HLA-A.1"  # not Ensembl: untouched
    assert gene_key("Cd4") == gene_key("CD4") == "CD4"


def test_duplicates_summed_for_counts_and_averaged_for_logs() -> None:
    values = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.float32)
    genes = ["ENSG00000141510.1", "CD4", "ENSG00000141510.2", "cd4"]
    counts = harmonise(values, genes, "counts")
    assert counts.genes == ["ENSG00000141510", "CD4"]
    np.testing.assert_array_equal(counts.values, [[4, 6], [12, 14]])
    assert counts.duplicates == {
        "ENSG00000141510": ["ENSG00000141510.1", "ENSG00000141510.2"],
        "CD4": ["CD4", "cd4"],
    }
    logs = harmonise(values, genes, "log")
    np.testing.assert_array_equal(logs.values, [[2, 3], [6, 7]])
    warning = logs.warning()
    assert warning is not None
    assert "2 gene(s)" in warning
    assert "CD4 (CD4, cd4)" in warning
    assert harmonise(values, ["a", "b", "c", "d"], "log").warning() is None


def test_matrix_harmonisation_warns_and_panel_alignment_ignores_versions() -> None:
    m = ExpressionMatrix(
        X=np.array([[1, 2, 3]], dtype=np.float32),
        sample_ids=["s"],
        gene_ids=["ENSG00000000001.3", "g2", "G2"],
    )
    with pytest.warns(DuplicateGenesWarning, match=r"G2|g2"):
        folded, info = harmonise_matrix(m, "counts")
    assert folded.gene_ids == ["ENSG00000000001", "g2"]
    assert info.renamed == 1
    panel = GenePanel(ids=["ENSG00000000001"], fill_values=[0.0])
    aligned, done = align_matrix(m.take([0]), panel, InputScale.counts)
    assert aligned.X.tolist() == [[1.0]]
    assert done.alignment.missing_genes == []


def test_an_input_in_panel_order_aligns_to_itself_and_align_matrix_still_copies() -> None:
    import numpy as np

    from contract.align import PanelIndex, align_matrix, to_panel
    from contract.card import GenePanel, InputScale
    from contract.matrix import ExpressionMatrix

    panel = GenePanel(ids=["CD3E", "CD14", "MS4A1"], fill_values=[0.0, 0.0, 0.0])
    index = PanelIndex.of(panel)
    assert index.plain
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    done = to_panel(x, ["CD3E", "CD14", "MS4A1"], index, InputScale.log, min_overlap=0.5)
    assert done.values is x
    assert (done.alignment.matched, done.alignment.missing_genes) == (3, [])
    assert done.folded.genes == ["CD3E", "CD14", "MS4A1"]
    shuffled = to_panel(x, ["CD14", "CD3E", "MS4A1"], index, InputScale.log, min_overlap=0.5)
    assert shuffled.values.tolist() == [[2.0, 1.0, 3.0]]
    matrix = ExpressionMatrix(X=x, sample_ids=["s"], gene_ids=["CD3E", "CD14", "MS4A1"])
    aligned, _ = align_matrix(matrix, panel, InputScale.log)
    assert not np.shares_memory(aligned.X, x)
    versioned = GenePanel(ids=["ENSG00000000003.14", "CD14"], fill_values=[0.0, 0.0])
    assert not PanelIndex.of(versioned).plain  # harmonise strips the version: not the identity
