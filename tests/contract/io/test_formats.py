from __future__ import annotations

import gzip
from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from contract.io.checks import detect_orientation
from contract.io.readers import read_10x, read_csv, read_gct, read_h5ad, read_matrix, read_parquet

X = np.array([[1.0, 0.0, 2.5], [0.0, 3.0, 1.0]], dtype=np.float32)
ENSG = ["ENSG00000141510.17", "ENSG00000012048.23", "ENSG00000139618.16"]


def test_orientation_from_ids_then_from_sizes() -> None:
    assert detect_orientation(ENSG, ["a", "b"])[0] == "genes_as_rows"
    assert detect_orientation(["GSM1", "GSM2"], ["TP53", "BRCA1", "BRCA2"])[0] == "samples_as_rows"
    assert detect_orientation(["AAACCTGAGAAGGCCT-1"], ENSG)[0] == "samples_as_rows"
    orientation, why = detect_orientation(["A", "B", "C"], ["x", "y"])
    assert orientation == "genes_as_rows"
    assert "more rows than columns" in why


def test_auto_orientation_reads_genes_as_rows_gz(tmp_path: Path) -> None:
    # 3 Ensembl rows × 2 samples: transposed to samples × genes
    path = tmp_path / "m.tsv.gz"
    lines = [
        "gene\ts1\ts2",
        *(f"{g}\t{a:g}\t{b:g}" for g, a, b in zip(ENSG, X[0], X[1], strict=True)),
    ]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    m = read_matrix(path)
    assert m.sample_ids == ["s1", "s2"]
    assert m.gene_ids == ENSG
    np.testing.assert_array_equal(m.X, X)
    # the explicit override wins over detection
    flipped = read_csv(path, orientation="samples_as_rows")
    assert flipped.sample_ids == ENSG
    with pytest.raises(ValueError, match="orientation must be auto"):
        read_csv(path, orientation="sideways")  # type: ignore[arg-type]


def test_missing_values_kept_only_when_allowed(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("id,g1,g2,g3\ns1,1,,3\ns2,4,5,6\n")
    with pytest.raises(ValueError, match=r"missing values in 1 sample rows.*\['s1'\]"):
        read_csv(path)
    m = read_csv(path, allow_missing=True)
    assert np.isnan(m.X[0, 1])
    assert m.X[1].tolist() == [4.0, 5.0, 6.0]
    path.write_text("id,g1,g2,g3\ns1,1,inf,3\ns2,4,5,6\n")
    with pytest.raises(ValueError, match=r"infinite values.*\['s1'\]"):
        read_csv(path, allow_missing=True)


def _gct(path: Path, dims: str = "3\t2", first: str = "#1.2") -> Path:
    rows = [
        f"{g}\tdesc {g}\t{a:g}\t{b:g}" for g, a, b in zip(["A", "B", "C"], X[0], X[1], strict=True)
    ]
    path.write_text("\n".join([first, dims, "Name\tDescription\tS1\tS2", *rows]) + "\n")
    return path


def test_gct(tmp_path: Path) -> None:
    m = read_matrix(_gct(tmp_path / "m.gct"))
    assert (m.sample_ids, m.gene_ids) == (["S1", "S2"], ["A", "B", "C"])
    np.testing.assert_array_equal(m.X, X)
    with pytest.raises(ValueError, match=r"announces 4 genes × 2 samples.*3 × 2"):
        read_gct(_gct(tmp_path / "bad.gct", dims="4\t2"))
    with pytest.raises(ValueError, match=r"not a GCT 1\.2 file"):
        read_gct(_gct(tmp_path / "old.gct", first="#1.3"))


def test_parquet_with_index_or_id_column(tmp_path: Path) -> None:
    frame = pd.DataFrame(X, index=["s1", "s2"], columns=["g1", "g2", "g3"])
    frame["batch"] = ["b1", "b2"]
    frame.to_parquet(tmp_path / "a.parquet")
    m = read_parquet(tmp_path / "a.parquet", obs_columns=["batch"])
    assert (m.sample_ids, m.gene_ids) == (["s1", "s2"], ["g1", "g2", "g3"])
    assert m.labels("batch") == ["b1", "b2"]
    np.testing.assert_array_equal(m.X, X)
    frame.drop(columns="batch").T.reset_index(names="gene").to_parquet(tmp_path / "b.parquet")
    genes_rows = read_matrix(tmp_path / "b.parquet", orientation="genes_as_rows")
    np.testing.assert_array_equal(genes_rows.X, X)
    pd.DataFrame({"id": ["s1"], "g1": ["x"]}).to_parquet(tmp_path / "c.parquet")
    with pytest.raises(ValueError, match=r"non-numeric columns \['g1'\]"):
        read_parquet(tmp_path / "c.parquet")


def _tenx(folder: Path, *, gz: bool, types: bool) -> Path:
    folder.mkdir()
    counts = sp.coo_matrix(np.array([[1, 0, 7], [0, 2, 0], [3, 0, 0]], dtype=np.int64))  # 3 × 3
    suffix = ".gz" if gz else ""
    with (gzip.open if gz else open)(folder / f"matrix.mtx{suffix}", "wb") as fh:
        scipy.io.mmwrite(fh, counts)
    kinds = ["Gene Expression", "Gene Expression", "Antibody Capture"]
    features = [f"ENSG{i:011d}\tG{i}" + (f"\t{k}" if types else "") for i, k in enumerate(kinds)]
    name = "features.tsv" if types else "genes.tsv"
    for file, lines in ((name, features), ("barcodes.tsv", ["AAAC-1", "AAAG-1", "AAAT-1"])):
        data = ("\n".join(lines) + "\n").encode()
        (folder / f"{file}{suffix}").write_bytes(gzip.compress(data) if gz else data)
    return folder


def test_10x_folder_v3_gz_and_v2(tmp_path: Path) -> None:
    m = read_matrix(_tenx(tmp_path / "v3", gz=True, types=True))
    assert m.sample_ids == ["AAAC-1", "AAAG-1", "AAAT-1"]
    assert m.gene_ids == ["ENSG00000000000", "ENSG00000000001"]  # antibody row dropped
    np.testing.assert_array_equal(m.X, [[1, 0], [0, 2], [7, 0]])
    v2 = read_10x(_tenx(tmp_path / "v2", gz=False, types=False), gene_column="gene_symbols")
    assert v2.gene_ids == ["G0", "G1", "G2"]
    only = read_10x(tmp_path / "v2", gene_column="gene_symbols", genes=["G2", "G0"])
    np.testing.assert_array_equal(only.X, [[3, 1], [0, 0], [0, 7]])
    (tmp_path / "v2" / "barcodes.tsv").write_text("AAAC-1\n")
    with pytest.raises(ValueError, match="3 features × 3 cells but there are 3 features and 1"):
        read_10x(tmp_path / "v2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no matrix\.mtx"):
        read_10x(tmp_path / "empty")


def test_h5ad_sparse_subset_before_densifying(tmp_path: Path) -> None:
    adata = anndata.AnnData(X=sp.csr_matrix(X), var=pd.DataFrame(index=["g1", "g2", "g3"]))
    adata.obs_names = ["s1", "s2"]
    adata.write_h5ad(tmp_path / "a.h5ad")
    m = read_h5ad(tmp_path / "a.h5ad", genes=["g3", "g1"])
    np.testing.assert_array_equal(m.X, X[:, [2, 0]])
    with pytest.raises(ValueError, match=r"lacks 1 requested genes.*'g9'"):
        read_h5ad(tmp_path / "a.h5ad", genes=["g1", "g9"])
