"""The public datasets kept in datasets/ and pbmc68k_reduced with simulated batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contract.matrix import ExpressionMatrix
from training.data.public import (
    DATASETS,
    load_all_leukaemia,
    load_bladderbatch,
    load_pbmc68k_shifted,
)

# sha256 of values and ids as built by tools/build_datasets.py; a rebuild that changes the data
# must change these on purpose
FINGERPRINTS = {
    "bladderbatch": "5b20ae4cf0f149ff99d30b5d04a1683f00d7ef8337f065804325bc4ee75df5a9",
    "all_leukaemia": "bcea924f82ac248dc6c1c47b3059c22a86c1e3a3aaea985cc1dfec052ca247d9",
}


@pytest.fixture(scope="module")
def bladder() -> ExpressionMatrix:
    return load_bladderbatch()


@pytest.fixture(scope="module")
def leukaemia() -> ExpressionMatrix:
    return load_all_leukaemia()


@pytest.mark.parametrize("name", ["bladderbatch", "all_leukaemia"])
def test_files_stay_small(name: str) -> None:
    for path in (DATASETS / name).iterdir():
        assert path.stat().st_size < 4_000_000, path


def test_bladderbatch(bladder: ExpressionMatrix) -> None:
    assert bladder.shape == (57, 5000)
    assert bladder.X.dtype == np.float32
    assert bladder.sample_ids[0] == "GSM71019"
    assert all(g.endswith("_at") and not g.startswith("AFFX") for g in bladder.gene_ids)
    # RMA values are log2 intensities
    assert bladder.X.min() > 2.0
    assert bladder.X.max() < 15.0
    counts = bladder.obs["cancer"].value_counts().to_dict()
    assert counts == {"Cancer": 40, "Biopsy": 9, "Normal": 8}
    assert bladder.obs["batch"].value_counts().sort_index().to_dict() == {
        "1": 11, "2": 18, "3": 4, "4": 5, "5": 19,
    }  # fmt: skip
    assert set(bladder.labels("outcome")) == {"Normal", "Biopsy", "mTCC", "sTCC+CIS", "sTCC-CIS"}
    assert bladder.fingerprint() == FINGERPRINTS["bladderbatch"]


def test_all_leukaemia(leukaemia: ExpressionMatrix) -> None:
    assert leukaemia.shape == (128, 5000)
    assert leukaemia.X.dtype == np.float32
    assert np.isfinite(leukaemia.X).all()
    assert leukaemia.sample_ids[:2] == ["01005", "01010"]  # leading zeros kept: ids are strings
    assert not any(g.startswith("AFFX") for g in leukaemia.gene_ids)
    bt = leukaemia.obs["BT"].value_counts().to_dict()
    assert bt == {
        "B": 5, "B1": 19, "B2": 36, "B3": 23, "B4": 12,
        "T": 5, "T1": 1, "T2": 15, "T3": 10, "T4": 2,
    }  # fmt: skip
    assert leukaemia.obs["lineage"].value_counts().to_dict() == {"B": 95, "T": 33}
    assert (leukaemia.obs["lineage"] == leukaemia.obs["BT"].str[0]).all()
    assert leukaemia.obs["mol_biol"].value_counts()["BCR/ABL"] == 37
    assert "NA" in set(leukaemia.labels("remission"))  # missing values are the string "NA"
    assert leukaemia.fingerprint() == FINGERPRINTS["all_leukaemia"]


def test_missing_files_say_where_they_come_from(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tools/build_datasets\.py"):
        load_bladderbatch(root=tmp_path)
    (tmp_path / "all_leukaemia").mkdir()
    (tmp_path / "all_leukaemia" / "expression.parquet").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"samples\.tsv"):
        load_all_leukaemia(root=tmp_path)


def test_pbmc68k_shifted() -> None:
    shifted = load_pbmc68k_shifted(n_batches=3, strength=1.0, seed=4)
    assert shifted.shape == (700, 765)
    assert set(shifted.labels("batch")) == {"batch_0", "batch_1", "batch_2"}
    per_batch = shifted.obs.groupby("batch")["bulk_labels"].nunique()
    assert (per_batch == 10).all()  # stratified: every cell type in every batch
    again = load_pbmc68k_shifted(n_batches=3, strength=1.0, seed=4)
    assert again.fingerprint() == shifted.fingerprint()
    plain = load_pbmc68k_shifted(n_batches=3, strength=0.0, seed=4)
    assert plain.labels("batch") == shifted.labels("batch")
    assert not np.array_equal(plain.X, shifted.X)
