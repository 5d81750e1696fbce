from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contract.matrix import ExpressionMatrix
from training.multiomics.data import (
    MultiOmics,
    make_multiomics,
    read_h5mu,
    read_tables,
    write_h5mu,
)


def test_synthetic_is_seeded_and_misses_modalities(omics: MultiOmics) -> None:
    again = make_multiomics(160, n_genes=40, n_cpgs=24, n_proteins=10, separation=1.5, seed=3)
    assert np.array_equal(again.expression.X, omics.expression.X)
    share = omics.presence()
    assert 0.7 < share["methylation"] < 0.9
    assert 0.6 < share["protein"] < 0.8
    beta = omics.modalities["methylation"].X
    assert beta.min() > 0
    assert beta.max() < 1
    dense = omics.dense("protein")
    missing = np.isnan(dense).all(axis=1)
    assert missing.sum() == 160 - omics.modalities["protein"].shape[0]
    assert not np.isnan(dense[~missing]).any()


def test_h5mu_round_trip_keeps_missing_samples(omics: MultiOmics, tmp_path: Path) -> None:
    back = read_h5mu(write_h5mu(omics, tmp_path / "x.h5mu"))
    assert back.names == ["methylation", "protein"]
    assert back.expression.labels("label") == omics.expression.labels("label")
    assert back.modalities["protein"].sample_ids == omics.modalities["protein"].sample_ids
    np.testing.assert_array_equal(back.dense("methylation"), omics.dense("methylation"))


def test_h5mu_without_rna_is_refused(omics: MultiOmics, tmp_path: Path) -> None:
    path = write_h5mu(omics, tmp_path / "x.h5mu")
    with pytest.raises(ValueError, match="no 'expr' modality"):
        read_h5mu(path, expression="expr")


def test_tables_per_modality(omics: MultiOmics, tmp_path: Path) -> None:
    e = omics.expression
    table = pd.DataFrame(e.X, index=pd.Index(e.sample_ids, name="sample"), columns=e.gene_ids)
    table["label"] = e.labels("label")
    table.to_csv(tmp_path / "rna.csv")
    p = omics.modalities["protein"]
    pd.DataFrame(p.X, index=pd.Index(p.sample_ids, name="sample"), columns=p.gene_ids).to_csv(
        tmp_path / "protein.csv"
    )
    data = read_tables(tmp_path / "rna.csv", {"protein": tmp_path / "protein.csv"})
    np.testing.assert_allclose(data.dense("protein"), omics.dense("protein"), rtol=1e-6)
    assert data.expression.labels("label") == e.labels("label")


def _matrix(ids: list[str], values: float = 0.5) -> ExpressionMatrix:
    return ExpressionMatrix(X=np.full((len(ids), 2), values, np.float32), sample_ids=ids,
                            gene_ids=["a", "b"])  # fmt: skip


def test_bad_modalities_are_refused(omics: MultiOmics) -> None:
    e = omics.expression
    with pytest.raises(ValueError, match="modality name 'expression'"):
        MultiOmics(e, {"expression": _matrix(e.sample_ids[:3])})
    with pytest.raises(ValueError, match="1 samples without expression"):
        MultiOmics(e, {"protein": _matrix(["nobody"])})
    with pytest.raises(ValueError, match="non-finite"):
        MultiOmics(e, {"protein": _matrix(e.sample_ids[:3], np.nan)})
    with pytest.raises(ValueError, match="at least one modality"):
        MultiOmics(e, {})
