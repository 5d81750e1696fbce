"""The integrated-gradients graph (training.export.explain) against captum, and its export."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from captum.attr import IntegratedGradients as CaptumIG
from torch import nn

from contract.card import BASELINE_FILE, EXPLAIN_FILE, ONNX_FILE, ModelCard, TrainingData
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.evaluation.baselines import fit_baseline
from training.export.card import CardInfo
from training.export.explain import (
    ATTRIBUTIONS,
    TARGET,
    IntegratedGradients,
    UnsupportedExplanation,
    export_explanation,
    predicted,
    sklearn_layers,
)
from training.export.heads import export_classifier
from training.export.onnx import INPUT_NAME
from training.nn.encoders import AutoencoderConfig, DenseAutoencoder
from training.nn.heads import ClassifierHead, ClassifierHeadConfig
from training.nn.variants import VariationalAutoencoder, VariationalAutoencoderConfig
from training.preprocess.fused import pipeline_module

STEPS = 32


def _captum(
    model: nn.Module, x: np.ndarray, baseline: np.ndarray, target: np.ndarray
) -> np.ndarray:
    ig = CaptumIG(model)
    out = ig.attribute(
        torch.from_numpy(x),
        baselines=torch.from_numpy(baseline).unsqueeze(0),
        target=torch.from_numpy(target),
        n_steps=STEPS,
        method="riemann_middle",
    )
    return np.asarray(out.detach().numpy(), dtype=np.float64)


def _log(counts: ExpressionMatrix) -> ExpressionMatrix:
    return ExpressionMatrix(np.log1p(counts.X), counts.sample_ids, counts.gene_ids, counts.obs)


def _relative(have: np.ndarray, want: np.ndarray) -> float:
    return float(np.max(np.abs(have - want)) / np.max(np.abs(want)))


def _network(
    n_in: int, activation: str, variational: bool, seed: int
) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    encoder: nn.Module
    if variational:
        vae = VariationalAutoencoder(
            VariationalAutoencoderConfig(
                n_genes=n_in, hidden=(24, 12), latent=6, activation=activation
            )
        )
        encoder = vae.encoder
    else:
        config = AutoencoderConfig(
            n_genes=n_in, hidden=(24,), latent=6, activation=activation, input_dropout=0.3
        )
        encoder = DenseAutoencoder(config).encoder
    head = ClassifierHead(
        ClassifierHeadConfig(n_in=6, n_classes=3, hidden=(8,), dropout=0.2, activation=activation)
    )
    return encoder.eval(), head.eval()


@pytest.mark.parametrize(
    ("scale", "activation", "variational"),
    [
        ("counts", "relu", False),
        ("log", "gelu", False),
        ("counts", "elu", True),
        ("log", "silu", True),
    ],
)
def test_graph_matches_captum(
    counts: ExpressionMatrix, scale: str, activation: str, variational: bool
) -> None:
    matrix = counts if scale == "counts" else _log(counts)
    # a tight clip so some genes of some samples sit on it: its 0/1 mask is differentiated too
    pipe = PreprocessPipeline.fit(matrix, scale, clip=1.5)
    pre = pipeline_module(pipe).eval()
    encoder, head = _network(pipe.n_genes, activation, variational, seed=3)
    model = nn.Sequential(pre, encoder, head).eval()
    x = matrix.X[:12].astype(np.float32)
    baseline = pipe.input_mean
    target = predicted(model, x)
    ours = IntegratedGradients([pre, encoder, head], baseline, STEPS).eval()
    with torch.no_grad():
        have = ours(torch.from_numpy(x), torch.from_numpy(target)).numpy().astype(np.float64)
    want = _captum(model, x, baseline, target)
    assert _relative(have, want) <= 1e-3
    with torch.no_grad():  # the same ops give the model's logits
        np.testing.assert_allclose(
            ours.logits(torch.from_numpy(x)).numpy(), model(torch.from_numpy(x)).numpy(), atol=1e-5
        )
    assert not ours.exact  # ReLU etc. and the log are not linear


def test_exported_graph_matches_captum(counts: ExpressionMatrix, tmp_path: Path) -> None:
    pipe = PreprocessPipeline.fit(counts, "counts")
    pre = pipeline_module(pipe).eval()
    encoder, head = _network(pipe.n_genes, "relu", False, seed=5)
    model = nn.Sequential(pre, encoder, head).eval()
    x = counts.X[:20].astype(np.float32)
    written, spec = export_explanation(
        tmp_path, [pre, encoder, head], pipe.input_mean, [x[:4], x[:1]]
    )
    assert [p.name for p in written] == [EXPLAIN_FILE, BASELINE_FILE]
    assert (spec.steps, spec.method, spec.rule, spec.exact) == (
        STEPS,
        "integrated_gradients",
        "riemann_middle",
        False,
    )
    np.testing.assert_array_equal(np.load(tmp_path / BASELINE_FILE), pipe.input_mean)
    session = ort.InferenceSession(str(tmp_path / EXPLAIN_FILE), providers=["CPUExecutionProvider"])
    target = predicted(model, x)
    (have,) = session.run([ATTRIBUTIONS], {INPUT_NAME: x, TARGET: target})
    want = _captum(model, x, pipe.input_mean, target)
    assert _relative(np.asarray(have, np.float64), want) <= 1e-3
    # another class than the predicted one: the target input is honoured
    other = (target + 1) % 3
    (have,) = session.run([ATTRIBUTIONS], {INPUT_NAME: x, TARGET: other})
    assert (
        _relative(np.asarray(have, np.float64), _captum(model, x, pipe.input_mean, other)) <= 1e-3
    )


def test_logistic_baseline_is_exact_through_linear_preprocessing(counts: ExpressionMatrix) -> None:
    log = _log(counts)
    pipe = PreprocessPipeline.fit(log, "log", clip=None)  # standardise only: linear
    features = pipe.transform(log.X)
    labels = log.labels("label")
    for name, n_classes in (("logistic", 3), ("logistic", 2)):
        keep = [i for i, c in enumerate(labels) if n_classes == 3 or c != labels[0]]
        y = [labels[i] for i in keep]
        fitted = fit_baseline(name, features[keep], y)
        pre = pipeline_module(pipe).eval()
        layers = sklearn_layers(fitted)
        ig = IntegratedGradients([pre, *layers], pipe.input_mean, STEPS).eval()
        assert ig.exact
        x = log.X[keep][:10].astype(np.float32)
        # the logits' softmax is scikit-learn's predict_proba
        with torch.no_grad():
            logits = ig.logits(torch.from_numpy(x))
        np.testing.assert_allclose(
            torch.softmax(logits, 1).numpy(), fitted.predict_proba(pipe.transform(x)), atol=1e-5
        )
        target = logits.argmax(1).numpy()
        with torch.no_grad():
            have = ig(torch.from_numpy(x), torch.from_numpy(target)).numpy()
        # exact: (x − x0) ⊙ the class's coefficients divided by the genes' scales
        coef = np.asarray(fitted.coef_)
        if n_classes == 2:
            coef = np.concatenate([-coef / 2, coef / 2])
        scale = pipe.steps[-1].scale
        want = (x - pipe.input_mean) * (coef[target] / scale)
        np.testing.assert_allclose(have, want, rtol=1e-4, atol=1e-6)
        # and completeness: they sum to logit(x) − logit(x0)
        with torch.no_grad():
            at_baseline = ig.logits(torch.from_numpy(pipe.input_mean[None, :]))[0]
        gap = logits.numpy()[np.arange(10), target] - at_baseline.numpy()[target]
        np.testing.assert_allclose(have.sum(1), gap, rtol=1e-4, atol=1e-5)


def test_mlp_baseline_matches_captum(counts: ExpressionMatrix) -> None:
    log = _log(counts)
    pipe = PreprocessPipeline.fit(log, "log")
    fitted = fit_baseline("mlp", pipe.transform(log.X), log.labels("label"))
    pre = pipeline_module(pipe).eval()
    layers = sklearn_layers(fitted)
    model = nn.Sequential(pre, *layers).eval()
    x = log.X[:8].astype(np.float32)
    with torch.no_grad():
        proba = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(proba, fitted.predict_proba(pipe.transform(x)), atol=1e-5)
    target = predicted(model, x)
    ig = IntegratedGradients([pre, *layers], pipe.input_mean, STEPS).eval()
    with torch.no_grad():
        have = ig(torch.from_numpy(x), torch.from_numpy(target)).numpy().astype(np.float64)
    assert _relative(have, _captum(model, x, pipe.input_mean, target)) <= 1e-3


def test_unsupported_layers_and_estimators_are_refused(counts: ExpressionMatrix) -> None:
    pipe = PreprocessPipeline.fit(counts, "counts")
    with pytest.raises(UnsupportedExplanation, match="no input gradient is written for Softplus"):
        IntegratedGradients([pipeline_module(pipe), nn.Softplus()], pipe.input_mean, STEPS)
    vst = PreprocessPipeline.fit_recipe(counts, "counts", [{"step": "vst", "fit_type": "mean"}])
    with pytest.raises(UnsupportedExplanation, match="for VST"):
        IntegratedGradients([pipeline_module(vst)], vst.input_mean, STEPS)
    forest = fit_baseline("random_forest", pipe.transform(counts.X), counts.labels("label"))
    with pytest.raises(
        UnsupportedExplanation, match="RandomForestClassifier has no input gradient"
    ):
        sklearn_layers(forest)
    with pytest.raises(ValueError, match="steps must be at least 2"):
        IntegratedGradients([pipeline_module(pipe)], pipe.input_mean, 1)


def _tool() -> Any:
    spec = importlib.util.spec_from_file_location(
        "add_explanation", Path(__file__).resolve().parents[3] / "tools" / "add_explanation.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_tool_adds_an_explanation_to_an_older_version(
    counts: ExpressionMatrix, tmp_path: Path
) -> None:
    pipe = PreprocessPipeline.fit(counts, "counts")
    torch.manual_seed(0)
    ae = DenseAutoencoder(AutoencoderConfig(n_genes=60, hidden=(16,), latent=4, input_dropout=0.2))
    head = ClassifierHead(ClassifierHeadConfig(n_in=4, n_classes=3))
    data = TrainingData(name="s", fingerprint="f", n_samples=240, n_genes=60)
    folder = export_classifier(ae.eval(), head.eval(), pipe, ["a", "b", "c"], name="old",
                               models_dir=tmp_path, info=CardInfo("t", data),
                               reference=counts.X, parent=None)  # fmt: skip
    fresh = ModelCard.read(folder)
    x = counts.X[:5]
    target = np.array([0, 1, 2, 0, 1])
    run = ort.InferenceSession(str(folder / EXPLAIN_FILE)).run
    (want,) = run(None, {INPUT_NAME: x, TARGET: target})
    # as a version exported before explanations: no graph, no baseline, no record
    (folder / EXPLAIN_FILE).unlink()
    (folder / BASELINE_FILE).unlink()
    files = {k: v for k, v in fresh.files.items() if k not in (EXPLAIN_FILE, BASELINE_FILE)}
    fresh.model_copy(update={"explain": None, "files": files}).write(folder)
    tool = _tool()
    weights = (folder / "weights.safetensors").read_bytes()
    (folder / "weights.safetensors").write_bytes(b"changed")
    with pytest.raises(ValueError, match="does not match its card"):
        tool.add_explanation(folder)
    (folder / "weights.safetensors").write_bytes(weights)
    amended = tool.add_explanation(folder)
    assert amended.explain == fresh.explain
    assert amended.verify_files(folder) == []
    assert ModelCard.read(folder) == amended
    assert amended.files[ONNX_FILE] == fresh.files[ONNX_FILE]  # the model itself is unchanged
    (have,) = ort.InferenceSession(str(folder / EXPLAIN_FILE)).run(
        None, {INPUT_NAME: x, TARGET: target}
    )
    np.testing.assert_allclose(have, want, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="already has an explanation graph"):
        tool.add_explanation(folder)
    assert tool.main([str(folder)]) == 1


@pytest.mark.parametrize(
    "recipe",
    [
        [{"step": "cpm"}, {"step": "log2p1"}, {"step": "select_variance", "n": 30},
         {"step": "standardize", "clip": 2.0}, {"step": "pca", "n_components": 8}],
        [{"step": "tpm"}, {"step": "log1p"}, {"step": "standardize"}],
    ],
    ids=["cpm-select-pca", "tpm"],
)  # fmt: skip
def test_recipe_steps_are_differentiated_as_captum_does(
    counts: ExpressionMatrix, recipe: list[dict[str, Any]]
) -> None:
    lengths = {g: 500.0 + 37.0 * i for i, g in enumerate(counts.gene_ids)}
    pipe = PreprocessPipeline.fit_recipe(counts, "counts", recipe, gene_lengths=lengths)
    pre = pipeline_module(pipe).eval()
    width = len(pipe.output_names())
    encoder, head = _network(width, "relu", False, seed=7)
    model = nn.Sequential(pre, encoder, head).eval()
    x = counts.X[:10].astype(np.float32)
    target = predicted(model, x)
    ours = IntegratedGradients([pre, encoder, head], pipe.input_mean, STEPS).eval()
    with torch.no_grad():
        have = ours(torch.from_numpy(x), torch.from_numpy(target)).numpy().astype(np.float64)
    assert _relative(have, _captum(model, x, pipe.input_mean, target)) <= 1e-3
