from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from contract.card import (
    HEAD_FILE,
    ONNX_FILE,
    InputScale,
    ModelCard,
    ModelKind,
    TrainingData,
)
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.export.card import CardInfo
from training.export.graphs import ClassifierGraph, export_encoder
from training.export.heads import export_classifier, export_regressor
from training.export.onnx import ExportVerificationError, export_onnx, verify_onnx
from training.export.store import model_ref, resolve_version
from training.nn.config import TrainConfig
from training.nn.encoders import AutoencoderConfig, DenseAutoencoder
from training.nn.heads import ClassifierHead, ClassifierHeadConfig, RegressorHeadConfig
from training.preprocess.fused import pipeline_module
from training.train.apply import predict_values
from training.train.finetune import finetune_classifier, finetune_regressor
from training.train.pretrain import pretrain

pytestmark = pytest.mark.slow

Trained = tuple[DenseAutoencoder, ClassifierHead, list[str], PreprocessPipeline]


@pytest.fixture(scope="module")
def trained(counts: ExpressionMatrix) -> Trained:
    pipe = PreprocessPipeline.fit(counts, "counts")
    cfg = AutoencoderConfig(n_genes=counts.shape[1], hidden=(16,), latent=4)
    quick = TrainConfig(epochs=3, batch_size=64, val_fraction=0.2, patience=2)
    ae, _ = pretrain(counts, pipe, cfg, quick, progress=False)
    result = finetune_classifier(
        ae.encoder,
        pipe,
        counts,
        "label",
        ClassifierHeadConfig(n_in=4, n_classes=3),
        quick,
        progress=False,
    )
    return ae, result.head, result.labels, pipe


def _info(counts: ExpressionMatrix) -> CardInfo:
    data = TrainingData(
        name="synthetic",
        fingerprint=counts.fingerprint(),
        n_samples=counts.shape[0],
        n_genes=counts.shape[1],
        heldout_sample_ids=["cell_00000"],
    )
    return CardInfo(description="test model", training_data=data, extra={"note": 1})


def test_encoder_then_classifier(
    tmp_path: Path, counts: ExpressionMatrix, trained: Trained
) -> None:
    ae, head, labels, pipe = trained
    enc_dir = export_encoder(
        ae, pipe, name="enc", models_dir=tmp_path, info=_info(counts), reference=counts.X
    )
    assert enc_dir == tmp_path / "enc" / "1"
    card = ModelCard.read(enc_dir)
    assert card.kind is ModelKind.encoder
    assert card.version == 1
    assert card.input_scale is InputScale.counts
    assert card.verify_files(enc_dir) == []
    assert set(card.files) == {
        "model.onnx",
        "preprocess.npz",
        "preprocess.json",
        "weights.safetensors",
        "config.json",
    }
    assert card.panel.ids == counts.gene_ids
    assert card.panel.fill_values == pipe.fill_values
    assert [(t.name, t.shape) for t in card.inputs] == [("expression", ["batch", 60])]
    assert [(t.name, t.shape) for t in card.outputs] == [("embedding", ["batch", 4])]
    assert card.preprocessing == pipe.to_card()
    assert card.parent is None
    assert card.created_at.utcoffset() == timedelta(0)  # UTC
    assert {"torch", "onnx", "onnxruntime", "numpy", "genexfer"} <= set(card.library_versions)

    clf_dir = export_classifier(
        ae,
        head,
        pipe,
        labels,
        name="clf",
        models_dir=tmp_path,
        info=_info(counts),
        reference=counts.X,
        parent=model_ref(enc_dir),
    )
    clf = ModelCard.read(clf_dir)
    assert clf.kind is ModelKind.classifier
    assert clf.labels == labels
    assert clf.parent is not None
    assert clf.parent.name == "enc"
    assert clf.parent.version == 1
    assert clf.parent.sha256 == card.files[ONNX_FILE]
    assert [t.name for t in clf.outputs] == ["logits", "probabilities"]

    model = onnx.load(str(clf_dir / ONNX_FILE))
    onnx.checker.check_model(model, full_check=True)
    assert not list(clf_dir.glob("*.data"))
    assert model.opset_import[0].version >= 17
    session = ort.InferenceSession(str(clf_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
    logits, proba = session.run(None, {"expression": counts.X[:7]})
    graph = ClassifierGraph(pipeline_module(pipe), ae.encoder, head).eval()
    with torch.no_grad():
        want_logits, _ = graph(torch.from_numpy(counts.X[:7]))
    np.testing.assert_allclose(logits, want_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)

    # the head alone: the encoder's embeddings in, the fused graph's outputs out
    assert clf.head is not None
    assert [(t.name, t.shape) for t in clf.head.inputs] == [("embedding", ["batch", 4])]
    assert clf.head.outputs == clf.outputs
    assert clf.verify_files(clf_dir) == []
    onnx.checker.check_model(onnx.load(str(clf_dir / HEAD_FILE)), full_check=True)
    encoder = ort.InferenceSession(str(enc_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
    head_only = ort.InferenceSession(str(clf_dir / HEAD_FILE), providers=["CPUExecutionProvider"])
    (embedding,) = encoder.run(None, {"expression": counts.X[:7]})
    head_logits, head_proba = head_only.run(None, {"embedding": embedding})
    np.testing.assert_allclose(head_logits, logits, atol=1e-4)
    np.testing.assert_allclose(head_proba, proba, atol=1e-5)

    # the explanation graph beside it: integrated gradients against the training mean
    assert clf.explain is not None
    assert (clf.explain.steps, clf.explain.baseline) == (32, "training_mean")
    assert {"explain.onnx", "baseline.npy"} <= set(clf.files)
    np.testing.assert_array_equal(np.load(clf_dir / "baseline.npy"), pipe.input_mean)
    explain = ort.InferenceSession(
        str(clf_dir / "explain.onnx"), providers=["CPUExecutionProvider"]
    )
    target = logits.argmax(1)
    (attributions,) = explain.run(None, {"expression": counts.X[:7], "target": target})
    assert attributions.shape == (7, 60)
    # completeness, up to the Riemann sum's error: they add up to logit(x) − logit(x0)
    (at_baseline, _) = session.run(None, {"expression": pipe.input_mean[None, :]})
    gap = logits[np.arange(7), target] - at_baseline[0, target]
    np.testing.assert_allclose(attributions.sum(1), gap, rtol=0.05, atol=0.05)
    assert card.explain is None  # an encoder has no class to explain


def test_regressor_export(tmp_path: Path, counts: ExpressionMatrix, trained: Trained) -> None:
    ae, _, _, pipe = trained
    obs = counts.obs.assign(score=100 + 10 * pipe.transform(counts.X)[:, 0])
    matrix = ExpressionMatrix(counts.X, counts.sample_ids, counts.gene_ids, obs)
    quick = TrainConfig(epochs=3, batch_size=64, val_fraction=0.2, patience=2)
    result = finetune_regressor(
        ae.encoder, pipe, matrix, "score", RegressorHeadConfig(n_in=4), quick, progress=False
    )
    folder = export_regressor(
        ae,
        result.head,
        pipe,
        ["score"],
        name="reg",
        models_dir=tmp_path,
        info=_info(counts),
        reference=counts.X,
        parent=None,
    )
    card = ModelCard.read(folder)
    assert card.kind is ModelKind.regressor
    assert card.labels == ["score"]
    assert [(t.name, t.shape) for t in card.outputs] == [("prediction", ["batch", 1])]
    assert card.head is not None
    assert card.head.file in card.files
    session = ort.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    (served,) = session.run(None, {"expression": counts.X[:20]})
    want = predict_values(ae.encoder, result.head, pipe, matrix.take(np.arange(20)))
    np.testing.assert_allclose(served[:, 0], want, atol=1e-3)  # target scale ~100
    with pytest.raises(ValueError, match="2 target names for a head with 1 outputs"):
        export_regressor(
            ae,
            result.head,
            pipe,
            ["a", "b"],
            name="reg",
            models_dir=tmp_path,
            info=_info(counts),
            reference=counts.X,
            parent=None,
        )


def test_versions_count_up_and_leave_no_staging(
    tmp_path: Path, counts: ExpressionMatrix, trained: Trained
) -> None:
    ae, _, _, pipe = trained
    (tmp_path / "enc" / ".tmp-leftover").mkdir(parents=True)  # a crashed run's debris
    (tmp_path / "enc" / "notes").mkdir()
    folders = [
        export_encoder(
            ae, pipe, name="enc", models_dir=tmp_path, info=_info(counts), reference=counts.X
        )
        for _ in range(2)
    ]
    assert [f.name for f in folders] == ["1", "2"]
    assert sorted(p.name for p in (tmp_path / "enc").iterdir()) == [
        ".tmp-leftover",
        "1",
        "2",
        "notes",
    ]
    # same weights → same graph bytes: re-exports are reproducible
    assert (folders[0] / ONNX_FILE).read_bytes() == (folders[1] / ONNX_FILE).read_bytes()
    assert resolve_version(tmp_path, "enc") == folders[1]
    assert resolve_version(tmp_path, "enc:1") == folders[0]
    with pytest.raises(ValueError, match="no version '3'"):
        resolve_version(tmp_path, "enc:3")
    with pytest.raises(ValueError, match="model name"):
        export_encoder(
            ae, pipe, name="Bad Name", models_dir=tmp_path, info=_info(counts), reference=counts.X
        )


def test_parity_failure_raises(tmp_path: Path, trained: Trained) -> None:
    ae, head, _, pipe = trained
    graph = ClassifierGraph(pipeline_module(pipe), ae.encoder, head).eval()
    path = tmp_path / "m.onnx"
    export_onnx(graph, pipe.n_genes, path, ["logits", "probabilities"])
    x = np.abs(np.random.default_rng(0).normal(size=(3, pipe.n_genes))).astype(np.float32)
    assert verify_onnx(path, graph, ["logits", "probabilities"], [x]) <= 1e-4
    with torch.no_grad():
        head.layers[-1].bias.add_(1.0)  # the torch side drifts from the exported graph
    try:
        with pytest.raises(ExportVerificationError, match="differs from a float64 torch reference"):
            verify_onnx(path, graph, ["logits", "probabilities"], [x])
    finally:
        with torch.no_grad():
            head.layers[-1].bias.sub_(1.0)
    with pytest.raises(ExportVerificationError, match="graph outputs"):
        verify_onnx(path, graph, ["a", "b"], [x])
