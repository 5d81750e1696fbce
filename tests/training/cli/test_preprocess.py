from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.cli import main
from contract.preprocess.pipeline import PreprocessPipeline
from tests.factories import REPO
from training.data.pbmc68k import load_pbmc68k_reduced


def _batch_file(path: Path, seed: int, shift: float, n: int = 10) -> Path:
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(0).gamma(2.0, 30.0, 80) * shift
    X = rng.poisson(means, size=(n, 80)).astype(float)
    ids = [f"{path.stem}_{i}" for i in range(n)]
    frame = pd.DataFrame(X, index=ids, columns=[f"ENSG{j:011d}.1" for j in range(80)])
    if seed == 1:
        frame.iloc[0, :50] = np.nan  # a broken sample in the first file
    frame.T.rename_axis("gene").to_csv(path)  # genes as rows, versioned Ensembl ids
    return path


def test_two_files_are_qced_batch_corrected_and_reported(tmp_path: Path) -> None:
    a = _batch_file(tmp_path / "lab_a.csv", 1, 1.0)
    b = _batch_file(tmp_path / "lab_b.csv", 2, 3.0)
    steps = json.dumps([{"step": "cpm"}, {"step": "log2p1"}, {"step": "combat"},
                        {"step": "select_variance", "n": 20}])  # fmt: skip
    out = tmp_path / "out"
    assert main(["preprocess", str(a), str(b), "--steps", steps, "--out", str(out)]) == 0
    qc = json.loads((out / "qc.json").read_text())
    assert qc["input_scale"] == "counts"
    assert qc["qc"]["dropped"][0]["sample"] == "lab_a_0"
    assert qc["pipeline"] == ["normalize_total", "log2p1", "combat", "select_genes"]
    matrix = pd.read_csv(out / "matrix.csv", index_col=0)
    assert matrix.shape == (19, 20)
    assert all(g.startswith("ENSG") for g in matrix.columns)
    assert not any("." in g for g in matrix.columns)  # version suffixes stripped
    assert (out / "qc_report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "qc_report.html").read_text()
    assert "lab_a_0" in page
    assert "62.5% of genes missing" in page
    loaded = PreprocessPipeline.load(out / "pipeline")
    assert loaded.combat is not None
    assert loaded.combat.batches == ["lab_a.csv", "lab_b.csv"]


def test_a_models_pipeline_is_applied_to_a_file(tmp_path: Path) -> None:
    cells = load_pbmc68k_reduced().take(np.arange(30))
    path = tmp_path / "cells.tsv"
    pd.DataFrame(cells.X, index=cells.sample_ids, columns=cells.gene_ids).to_csv(path, sep="\t")
    model = REPO / "models" / "pbmc68k-encoder" / "1"
    out = tmp_path / "out"
    args = ["preprocess", str(path), "--model-dir", str(model), "--out", str(out),
            "--format", "parquet"]  # fmt: skip
    assert main(args) == 0
    result = pd.read_parquet(out / "matrix.parquet")
    expected = PreprocessPipeline.load(model).transform(cells.X)
    np.testing.assert_allclose(result.to_numpy(), expected, rtol=1e-6, atol=1e-6)


def test_tpm_with_gene_lengths_from_a_file(tmp_path: Path) -> None:
    a = _batch_file(tmp_path / "a.csv", 2, 1.0)
    lengths = tmp_path / "lengths.csv"
    lengths.write_text("gene,length\n" + "".join(f"ENSG{j:011d},{1000 + j}\n" for j in range(80)))
    out = tmp_path / "out"
    steps = '[{"step": "tpm"}]'
    args = [
        "preprocess",
        str(a),
        "--steps",
        steps,
        "--gene-lengths",
        str(lengths),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    matrix = pd.read_csv(out / "matrix.csv", index_col=0)
    np.testing.assert_allclose(matrix.sum(axis=1), 1e6, rtol=1e-5)
    raw = pd.read_csv(a, index_col=0).T.to_numpy()
    rate = raw[0] / (1000 + np.arange(80))
    np.testing.assert_allclose(matrix.iloc[0], rate / rate.sum() * 1e6, rtol=1e-5)


def test_bad_steps_are_refused_with_a_message(tmp_path: Path) -> None:
    a = _batch_file(tmp_path / "a.csv", 2, 1.0)
    with pytest.raises(SystemExit, match="--steps is not valid JSON"):
        main(["preprocess", str(a), "--steps", "[{", "--out", str(tmp_path / "o")])
