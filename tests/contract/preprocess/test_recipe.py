from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PARAMS_JSON, PARAMS_NPZ, PreprocessPipeline
from training.data.synthetic import make_synthetic
from training.preprocess.fused import pipeline_module

RECIPE = [
    {"step": "median_of_ratios"},
    {"step": "vst", "fit_type": "mean"},
    {"step": "select_hvg", "n": 30},
    {"step": "standardize", "clip": 8.0},
    {"step": "pca", "n_components": 5},
]


@pytest.fixture(scope="module")
def counts() -> ExpressionMatrix:
    m = make_synthetic(90, 60, n_classes=3, n_batches=3, batch_effect=0.8, seed=3)
    # median-of-ratios needs genes expressed in every sample: shift the counts by one
    return ExpressionMatrix(X=m.X + 1, sample_ids=m.sample_ids, gene_ids=m.gene_ids, obs=m.obs)


def test_recipe_fits_in_order_and_round_trips_bit_for_bit(
    counts: ExpressionMatrix, tmp_path: Path
) -> None:
    pipe = PreprocessPipeline.fit_recipe(counts, "counts", RECIPE)
    assert [s.name for s in pipe.steps] == [
        "median_of_ratios", "vst", "select_genes", "standardize", "pca",
    ]  # fmt: skip
    out = pipe.transform(counts.X)
    assert out.shape == (90, 5)
    assert np.allclose(out.mean(axis=0), 0, atol=1e-4)  # PCA scores of the training data
    pipe.save(tmp_path / "a")
    again = PreprocessPipeline.fit_recipe(counts, "counts", RECIPE)
    again.save(tmp_path / "b")
    for name in (PARAMS_JSON, PARAMS_NPZ):  # refits are reproducible to the byte
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    loaded = PreprocessPipeline.load(tmp_path / "a")
    np.testing.assert_array_equal(loaded.transform(counts.X), out)


def test_numpy_and_onnx_agree_for_the_fused_steps(counts: ExpressionMatrix, tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch
    from torch import nn

    from training.export.onnx import export_onnx

    # the parametric VST formula with a given trend, the mean one is covered above
    recipe = [RECIPE[0], {"step": "vst", "a0": 0.05, "a1": 2.0}, *RECIPE[2:]]
    pipe = PreprocessPipeline.fit_recipe(counts, "counts", recipe)
    torch.manual_seed(0)
    encoder = nn.Linear(5, 3)

    class Fused(nn.Module):  # the exporter names the graph input after this argument
        def __init__(self) -> None:
            super().__init__()
            self.steps = pipeline_module(pipe)

        def forward(self, expression: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = encoder(self.steps(expression))
            return out

    module = Fused()
    export_onnx(module, counts.shape[1], tmp_path / "m.onnx", ["embedding"])
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    held = counts.X[:7] * np.float32(1.5)  # a new depth: size factors come from the graph
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: held})
    with torch.no_grad():
        expected = encoder(torch.from_numpy(pipe.transform(held))).numpy()
    np.testing.assert_allclose(onnx_out, expected, rtol=1e-4, atol=1e-4)


def test_combat_in_a_recipe_adjusts_known_and_new_batches(
    counts: ExpressionMatrix, tmp_path: Path
) -> None:
    recipe = [{"step": "cpm"}, {"step": "log2p1"}, {"step": "combat", "batch": "batch"},
              {"step": "standardize"}]  # fmt: skip
    train = np.array(counts.labels("batch")) != "batch_2"
    pipe = PreprocessPipeline.fit_recipe(counts.take(train), "counts", recipe)
    assert pipe.to_card().fused_in_graph is False
    with pytest.raises(ValueError, match=r"use pipeline_module\(pipeline, start=2\)"):
        pipeline_module(pipe)
    new = counts.take(~train)
    out, notes = pipe.transform_with_notes(new.X, batch=new.labels("batch"))
    assert notes == [
        f"batch_2: new batch of {new.shape[0]} samples: γ, δ² shrunk with the stored prior spreads"
    ]
    # the new batch's centre moves onto the training reference (standardised means ≈ 0)
    uncorrected = PreprocessPipeline.fit_recipe(
        counts.take(train), "counts", [r for r in recipe if r["step"] != "combat"]
    ).transform(new.X)
    assert np.abs(out.mean(axis=0)).mean() < 0.5 * np.abs(uncorrected.mean(axis=0)).mean()
    pipe.save(tmp_path)
    loaded = PreprocessPipeline.load(tmp_path)
    np.testing.assert_array_equal(loaded.transform(new.X, batch=new.labels("batch")), out)
    with pytest.raises(ValueError, match="give each sample's batch"):
        pipe.transform(new.X)


def test_recipe_errors(counts: ExpressionMatrix) -> None:
    with pytest.raises(ValueError, match="unknown preprocessing step 'zscore'"):
        PreprocessPipeline.fit_recipe(counts, "counts", [{"step": "zscore"}])
    with pytest.raises(ValueError, match=r"2 genes are not in the data: \['nope', 'NADA'\]"):
        PreprocessPipeline.fit_recipe(
            counts, "counts", [{"step": "select_genes", "genes": ["nope", "NADA"]}]
        )
    with pytest.raises(ValueError, match=r"non-positive coefficients.*fit_type='mean'"):
        PreprocessPipeline.fit_recipe(
            counts, "counts", [{"step": "median_of_ratios"}, {"step": "vst"}]
        )
    with pytest.raises(ValueError, match="tpm and fpkm need gene lengths"):
        PreprocessPipeline.fit_recipe(counts, "counts", [{"step": "tpm"}])
    lengths = dict.fromkeys(counts.gene_ids[1:], 1000.0)
    with pytest.raises(ValueError, match="no gene length for 1 genes"):
        PreprocessPipeline.fit_recipe(counts, "counts", [{"step": "fpkm"}], gene_lengths=lengths)


def test_service_side_modules_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import app.main, contract.scale, contract.genes\n"
        "import contract.preprocess.pipeline, contract.preprocess.qc, contract.io.readers\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'contract.preprocess.deseq' not in sys.modules, 'the dispersion fits were'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
