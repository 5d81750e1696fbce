from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from contract.card import ModelCard, TrainingData
from contract.preprocess.pipeline import PreprocessPipeline
from training.export.card import CardInfo
from training.export.onnx import ExportVerificationError
from training.export.store import model_ref
from training.multiomics.data import MultiOmics
from training.multiomics.export import (
    export_multiomics_classifier,
    modality_inputs,
    parity_batches,
    verify_multi,
)
from training.multiomics.finetune import MultiOmicsResult, predict_proba

pytestmark = pytest.mark.slow

Trained = tuple[MultiOmicsResult, MultiOmics, PreprocessPipeline]


def _info(data: MultiOmics) -> CardInfo:
    e = data.expression
    td = TrainingData(name="omics", fingerprint=e.fingerprint(), n_samples=e.shape[0],
                      n_genes=e.shape[1], label_column="label")  # fmt: skip
    return CardInfo(description="multi-omics test", training_data=td)


def test_export_round_trip(omics_trained: Trained, omics_encoder: Path, tmp_path: Path) -> None:
    result, data, pipe = omics_trained
    parent = model_ref(omics_encoder / "omics-enc" / "1")
    folder = export_multiomics_classifier(
        result, pipe, name="omics-clf", models_dir=tmp_path, info=_info(data),
        reference=data, parent=parent,
    )  # fmt: skip
    card = ModelCard.read(folder)
    assert card.verify_files(folder) == []
    assert [i.name for i in card.inputs] == ["expression", "methylation", "protein"]
    assert card.modalities is not None
    methylation, protein = card.modalities
    assert methylation.transform == "logit"
    assert protein.features == data.modalities["protein"].gene_ids
    assert protein.missing == "nan_row"
    assert card.labels == result.labels
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {
        "expression": data.expression.X,
        "methylation": data.dense("methylation"),
        "protein": data.dense("protein"),
    }
    (probs,) = session.run(["probabilities"], feed)
    np.testing.assert_allclose(probs, predict_proba(result, pipe, data), atol=1e-4)
    # a missing modality in ONNX: the NaN row is the flag at 0, whatever else is sent
    feed["protein"] = np.full_like(feed["protein"], np.nan)
    (without,) = session.run(["probabilities"], feed)
    np.testing.assert_allclose(
        without,
        predict_proba(result, pipe, _no_protein(data)),
        atol=1e-4,
    )


def _no_protein(data: MultiOmics) -> MultiOmics:
    p = data.modalities["protein"]
    return MultiOmics(
        data.expression, {**data.modalities, "protein": p.take(np.zeros(p.shape[0], bool))}
    )


def test_verification_catches_a_wrong_graph(omics_trained: Trained, tmp_path: Path) -> None:
    result, data, pipe = omics_trained
    folder = export_multiomics_classifier(
        result, pipe, name="omics-clf", models_dir=tmp_path, info=_info(data),
        reference=data, parent=None,
    )  # fmt: skip
    batches = parity_batches(pipe, modality_inputs(result), data)
    graph = copy.deepcopy(result.graph(pipe))  # the fixture's network stays as trained
    with torch.no_grad():
        next(graph.core.head.parameters()).add_(0.5)
    with pytest.raises(ExportVerificationError, match="differs from a float64 torch reference"):
        verify_multi(folder / "model.onnx", graph, ["logits", "probabilities"], batches)
    renamed = [{("rna" if k == "expression" else k): v for k, v in b.items()} for b in batches]
    with pytest.raises(ExportVerificationError, match="graph inputs are"):
        verify_multi(
            folder / "model.onnx", result.graph(pipe), ["logits", "probabilities"], renamed
        )
