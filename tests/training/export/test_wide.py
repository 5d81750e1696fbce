"""Wide panels: a 47,192-gene encoder trains, exports and passes verification; gene selection
fused into the graph lets it train on fewer genes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from contract.card import ModelCard
from training.data.synthetic import make_synthetic
from training.evaluation.splits import hold_out
from training.export.onnx import (
    PARITY_ATOL,
    ExportVerificationError,
    check_parity,
    export_onnx,
    verify_onnx,
)
from training.nn.config import TrainConfig
from training.nn.encoders import AutoencoderConfig
from training.nn.variants import DenoisingAutoencoderConfig
from training.preprocess.select import GeneSelection
from training.publish.encoder import pretrain_and_export
from training.train.loop import seeded

WIDE = 47_192  # the field panel whose export failed at 5.5e-4 > 1e-4

pytestmark = pytest.mark.slow


def test_wide_layer_passes_against_float64_and_a_wrong_graph_still_fails(tmp_path: Path) -> None:
    with seeded(0):
        module = nn.Sequential(nn.Linear(WIDE, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
    with torch.no_grad():
        module[0].weight.mul_(400.0)  # trained weights: outputs in the hundreds, as in the field
    path = tmp_path / "wide.onnx"
    export_onnx(module, WIDE, path, ["embedding"])
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(n, WIDE)).clip(-10, 10).astype(np.float32) for n in (1, 32)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = module(torch.from_numpy(inputs[1])).numpy()
    have = session.run(["embedding"], {"expression": inputs[1]})[0]
    # the old check, torch float32 against ONNX Runtime float32 at 1e-4, refuses a correct graph
    with pytest.raises(ExportVerificationError):
        check_parity(want, have, PARITY_ATOL, "embedding", 32)
    assert verify_onnx(path, module, ["embedding"], inputs) > PARITY_ATOL
    with torch.no_grad():
        module[2].bias.add_(0.05)  # a real difference, small against outputs in the hundreds
    with pytest.raises(ExportVerificationError, match="differs from a float64 torch reference"):
        verify_onnx(path, module, ["embedding"], inputs)


def test_a_47k_gene_encoder_trains_and_exports_with_and_without_selection(
    tmp_path: Path,
) -> None:
    matrix = make_synthetic(40, WIDE, seed=0)
    dataset = hold_out("wide", matrix, test_fraction=0.1, seed=0, stratify_by=None)
    quick = TrainConfig(epochs=2, batch_size=16, lr=1e-3, val_fraction=0.2, patience=2)
    whole = pretrain_and_export(
        dataset, input_scale="counts",  # type: ignore[arg-type]
        model_cfg=AutoencoderConfig(n_genes=WIDE, hidden=(8,), latent=4), train_cfg=quick,
        name="wide", models_dir=tmp_path, description="wide", progress=False,
    )  # fmt: skip
    assert ModelCard.read(whole.folder).inputs[0].shape == ["batch", WIDE]
    selected = pretrain_and_export(
        dataset, input_scale="counts",  # type: ignore[arg-type]
        model_cfg=DenoisingAutoencoderConfig(n_genes=500, hidden=(8,), latent=4),
        train_cfg=quick, name="narrow", models_dir=tmp_path, description="narrow",
        select=GeneSelection(500, "dispersion"), progress=False,
    )  # fmt: skip
    card = ModelCard.read(selected.folder)
    # the graph takes the whole panel and keeps the 500 genes inside
    assert card.inputs[0].shape == ["batch", WIDE]
    assert [s.name for s in card.preprocessing.steps] == [
        "normalize_total", "log1p", "select_genes", "standardize",
    ]  # fmt: skip
    assert selected.autoencoder.config.n_genes == 500
    session = ort.InferenceSession(
        str(selected.folder / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    out = session.run(["embedding"], {"expression": dataset.test.X})[0]
    assert out.shape == (dataset.test.shape[0], 4)
