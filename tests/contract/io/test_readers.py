from __future__ import annotations

import gzip
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from contract.align import align_matrix
from contract.card import GenePanel, InputScale
from contract.io.readers import attach_obs, read_csv, read_h5ad, read_matrix, read_obs
from contract.matrix import ExpressionMatrix
from training.data.pbmc68k import load_pbmc68k_reduced
from training.data.synthetic import make_synthetic

X = np.array([[1.0, 0.0, 2.5], [0.0, 3.0, 1.0]], dtype=np.float32)
SAMPLES = ["s1", "s2"]
GENES = ["g1", "g2", "g3"]


def _h5ad(tmp_path: Path) -> Path:
    adata = anndata.AnnData(
        X=sp.csr_matrix(X),
        obs=pd.DataFrame({"label": ["a", "b"]}, index=SAMPLES),
        var=pd.DataFrame(index=GENES),
    )
    adata.layers["counts"] = X * 10
    adata.raw = anndata.AnnData(
        X=np.hstack([X, X[:, :1]]) + 1, obs=adata.obs, var=pd.DataFrame(index=[*GENES, "g4"])
    )
    path = tmp_path / "toy.h5ad"
    adata.write_h5ad(path)
    return path


def test_h5ad_x_raw_and_layer(tmp_path: Path) -> None:
    path = _h5ad(tmp_path)
    m = read_h5ad(path)
    assert m.X.dtype == np.float32
    assert np.array_equal(m.X, X)
    assert m.sample_ids == SAMPLES
    assert m.gene_ids == GENES
    assert m.labels("label") == ["a", "b"]
    raw = read_matrix(path, layer="raw")
    assert raw.gene_ids == [*GENES, "g4"]
    assert raw.X[0, 0] == 2.0
    assert np.array_equal(read_h5ad(path, layer="counts").X, X * 10)
    with pytest.raises(ValueError, match=r"no layer 'nope'.*counts"):
        read_h5ad(path, layer="nope")


def test_h5ad_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5ad"
    bad.write_text("not hdf5")
    with pytest.raises(ValueError, match=r"bad\.h5ad: not a readable \.h5ad"):
        read_h5ad(bad)
    plain = tmp_path / "plain.h5ad"
    anndata.AnnData(X=X).write_h5ad(plain)
    with pytest.raises(ValueError, match=r"has no \.raw"):
        read_h5ad(plain, layer="raw")


def test_csv_both_orientations(tmp_path: Path) -> None:
    rows = tmp_path / "rows.csv"
    pd.DataFrame(X, index=SAMPLES, columns=GENES).to_csv(rows)
    cols = tmp_path / "cols.csv"
    pd.DataFrame(X.T, index=GENES, columns=SAMPLES).to_csv(cols)
    a = read_csv(rows)
    b = read_matrix(cols, orientation="genes_as_rows")
    for m in (a, b):
        assert m.sample_ids == SAMPLES
        assert m.gene_ids == GENES
        assert np.array_equal(m.X, X)


def test_tsv_gz_keeps_string_ids(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("id\t001\t002\n007\t1\t2\n008\t3\t4.5\n")
    m = read_matrix(path)
    assert m.sample_ids == ["007", "008"]
    assert m.gene_ids == ["001", "002"]
    assert m.X.tolist() == [[1.0, 2.0], [3.0, 4.5]]


def test_csv_obs_columns(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("id,g1,kind,g2\ns1,1,x,2\ns2,3,y,4\n")
    m = read_csv(path, obs_columns=["kind"])
    assert m.gene_ids == ["g1", "g2"]
    assert m.labels("kind") == ["x", "y"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,g1,g2\ns1,1,2\ns1,3,4\n", r"duplicate sample ids \['s1'\]"),
        ("id,g1,g1\ns1,1,2\ns2,3,4\n", "duplicate gene ids"),
        ("id,g1,g2\ns1,1,2\ns2,x,4\ns3,5,oops\n", r"non-numeric.*2 sample rows.*\['s2', 's3'\]"),
        ("id,g1,g2\ns1,1,\ns2,3,4\n", r"missing values.*\['s1'\]"),
        ("id,g1,g2\ns1,1,inf\ns2,3,4\n", r"infinite or NaN.*\['s1'\]"),
        ("id\n", "no data"),
    ],
)
def test_csv_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_csv(path, orientation="samples_as_rows")


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unsupported file type '\.xlsx'"):
        read_matrix(tmp_path / "m.xlsx")
    with pytest.raises(ValueError, match="not a readable table"):
        read_csv(tmp_path / "absent.csv")


def test_pbmc68k_reduced() -> None:
    m = load_pbmc68k_reduced()
    assert m.shape == (700, 765)
    assert m.X.dtype == np.float32
    assert m.X.min() >= 0
    assert 5 < m.X.max() < 10  # log-normalised, not z-scored
    labels = m.labels("bulk_labels")
    assert len(set(labels)) == 10
    assert all(isinstance(v, str) for v in labels)


def test_attach_obs_and_align(tmp_path: Path) -> None:
    m = ExpressionMatrix(X=X, sample_ids=SAMPLES, gene_ids=GENES)
    meta = pd.DataFrame({"label": ["B", "A", "C"]}, index=["s2", "s1", "s9"])
    assert attach_obs(m, meta).labels("label") == ["A", "B"]
    with pytest.raises(ValueError, match="lacks 1 samples"):
        attach_obs(m, meta.drop(index="s1"))
    path = tmp_path / "meta.tsv"
    path.write_text("cell\tlabel\tdonor\ns2\tB\t7\ns1\tA\t\n")
    both = attach_obs(m, read_obs(path))
    assert both.labels("label") == ["A", "B"]
    assert both.labels("donor") == ["", "7"]
    panel = GenePanel(ids=["g3", "gX", "g1"], fill_values=[7.0, 8.0, 9.0])
    aligned, done = align_matrix(m, panel, InputScale.log)
    assert done.alignment.missing_genes == ["gX"]
    assert aligned.gene_ids == ["g3", "gX", "g1"]
    assert aligned.X.tolist() == [[2.5, 8.0, 1.0], [1.0, 8.0, 0.0]]
    with pytest.raises(ValueError, match="1 of the model's 3 genes"):
        align_matrix(m, GenePanel(ids=["g1", "a", "b"], fill_values=[0.0] * 3), InputScale.log)


def test_synthetic_is_seeded() -> None:
    a, b = make_synthetic(50, 20, seed=3), make_synthetic(50, 20, seed=3)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != make_synthetic(50, 20, seed=4).fingerprint()
    assert np.array_equal(a.X, np.round(a.X))
    assert a.X.min() >= 0
    assert set(a.obs.columns) == {"label", "batch"}
