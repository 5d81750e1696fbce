"""Serving a scikit-learn baseline like a neural head: preprocessing → estimator in one ONNX graph.

The preprocessing graph comes from the same torch module the neural export fuses; the estimator
graph from skl2onnx; `onnx.compose` joins them on the ``features`` edge, so the service sees the
usual ``expression`` input and a classifier's ``probabilities`` or a regressor's ``prediction``
output and needs no new code. A logistic-regression or MLP classifier also gets ``explain.onnx``
(integrated gradients through the same preprocessing, `training.export.explain`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from sklearn.base import is_classifier
from torch import nn

from contract.card import ONNX_FILE, ExplainGraph, ModelKind, ModelRef, TensorSpec
from contract.preprocess.pipeline import PreprocessPipeline
from contract.preprocess.steps import Array
from training.export.card import CardInfo, parity_inputs, publish_version
from training.export.explain import UnsupportedExplanation, explanation_or_none, sklearn_layers
from training.export.graphs import EncoderGraph
from training.export.onnx import (
    INPUT_NAME,
    OPSET,
    PARITY_ATOL,
    ExportVerificationError,
    check_parity,
    export_onnx,
)
from training.export.store import check_model_name, staging_folder
from training.preprocess.fused import pipeline_module

log = logging.getLogger(__name__)

FEATURES = "features"
PROBABILITIES = "probabilities"
PREDICTION = "prediction"
PARAMS_FILE = "baseline.json"


def baseline_to_onnx(model: Any, pipeline: PreprocessPipeline) -> onnx.ModelProto:
    """One graph: input-scale ``expression`` → preprocessing → estimator → its one output.

    The output is ``probabilities`` (n, classes) for a classifier, ``prediction`` (n, 1) for a
    regressor.
    """
    from skl2onnx import to_onnx  # deferred: only exports need it
    from skl2onnx.common.data_types import FloatTensorType

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pre.onnx"
        # wrapped so the graph's input is named `expression` like every other exported model
        wrapped = EncoderGraph(pipeline_module(pipeline), nn.Identity())
        export_onnx(wrapped, pipeline.n_genes, path, [FEATURES])
        pre = onnx.load(str(path))
    example = np.zeros((1, pipeline.n_genes), dtype=np.float32)
    opset = {"": OPSET, "ai.onnx.ml": 3}
    if is_classifier(model):
        output = PROBABILITIES
        options = {id(model): {"zipmap": False}}
        estimator = to_onnx(model, example, target_opset=opset, options=options)
    else:
        output = PREDICTION
        final = [(PREDICTION, FloatTensorType([None, 1]))]
        estimator = to_onnx(model, example, target_opset=opset, final_types=final)
    estimator_input = estimator.graph.input[0].name
    # prefix the estimator's internal names so they cannot collide with the torch graph's
    estimator = onnx.compose.add_prefix(estimator, "est_", rename_outputs=False)
    pre.ir_version = estimator.ir_version = min(pre.ir_version, estimator.ir_version)
    return onnx.compose.merge_models(
        pre,
        estimator,
        io_map=[(FEATURES, "est_" + estimator_input)],
        outputs=[output],
    )


def verify_baseline_onnx(
    graph: onnx.ModelProto, model: Any, pipeline: PreprocessPipeline, inputs: Sequence[Array]
) -> float:
    """onnx.checker plus ONNX Runtime vs scikit-learn parity; returns the largest difference."""
    try:
        onnx.checker.check_model(graph, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportVerificationError(f"onnx.checker rejected the baseline graph: {exc}") from exc
    first = graph.graph.input[0].type.tensor_type.shape.dim[0]
    if [i.name for i in graph.graph.input] != [INPUT_NAME] or not first.dim_param:
        raise ExportVerificationError("the baseline graph lacks a dynamic 'expression' input")
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    classifier = is_classifier(model)
    worst = 0.0
    for batch in inputs:
        features = pipeline.transform(batch)
        if classifier:
            output, want, atol = PROBABILITIES, model.predict_proba(features), PARITY_ATOL
        else:
            # the graph computes in float32, scikit-learn in float64: on a target of scale s
            # rounding alone differs by ~1e-7·s, so the tolerance scales with the target
            want = np.asarray(model.predict(features), dtype=np.float64).reshape(len(batch), 1)
            output, atol = PREDICTION, PARITY_ATOL * max(1.0, float(np.max(np.abs(want))))
        (have,) = session.run([output], {INPUT_NAME: batch})
        what = f"baseline {output} differ from scikit-learn"
        worst = max(worst, check_parity(want, have, atol, what, len(batch)))
    return worst


def export_baseline(
    model: Any,
    pipeline: PreprocessPipeline,
    *,
    baseline: str,
    name: str,
    models_dir: Path,
    info: CardInfo,
    reference: Array,
    parent: ModelRef | None = None,
) -> Path:
    """Publish a fitted scikit-learn classifier or regressor as a servable version; returns it.

    Parameters
    ----------
    model:
        A fitted classifier (``predict_proba``, ``classes_``) or single-target regressor
        (``predict``) from `training.evaluation.baselines`.
    pipeline:
        The preprocessing its features came from, fused in front of it.
    baseline:
        Its name in `training.evaluation.baselines` (recorded in baseline.json).
    name, models_dir:
        Where to publish (``models_dir/name/<next version>``).
    info:
        Card text, training data and metrics; a regressor's target is named after
        ``info.training_data.label_column``.
    reference:
        Real input-scale samples (panel order) for the parity check.
    parent:
        The encoder whose preprocessing it uses, if any (the card names it, and takes its
        input transforms).
    """
    check_model_name(name)
    if is_classifier(model):
        kind, labels = ModelKind.classifier, [str(c) for c in model.classes_]
        outputs = [TensorSpec(name=PROBABILITIES, shape=["batch", len(labels)])]
    else:
        kind, labels = ModelKind.regressor, [info.training_data.label_column or "target"]
        outputs = [TensorSpec(name=PREDICTION, shape=["batch", 1])]
    graph = baseline_to_onnx(model, pipeline)
    parity = parity_inputs(pipeline, reference)
    verify_baseline_onnx(graph, model, pipeline, parity)
    params = {k: repr(v) for k, v in sorted(model.get_params().items())}
    with staging_folder(models_dir / name) as staging:
        onnx_path = staging / ONNX_FILE
        onnx.save(graph, str(onnx_path))
        params_path = staging / PARAMS_FILE
        document = {
            "baseline": baseline,
            "estimator": type(model).__name__,
            "params": params,
            "extra": dict(info.extra),
        }
        params_path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
        written, explain = [onnx_path, params_path], None
        if kind is ModelKind.classifier:
            files, explain = _explanation(staging, model, pipeline, parity)
            written += files
        return publish_version(
            staging,
            written,
            name=name,
            kind=kind,
            pipeline=pipeline,
            outputs=outputs,
            info=info,
            labels=labels,
            parent=parent,
            explain=explain,
            extra_versions={
                "scikit-learn": _version("scikit-learn"),
                "skl2onnx": _version("skl2onnx"),
            },
        )


def _explanation(
    staging: Path, model: Any, pipeline: PreprocessPipeline, parity: Sequence[Array]
) -> tuple[list[Path], ExplainGraph | None]:
    """Integrated gradients of a logistic-regression or MLP baseline (exact for a linear model
    behind linear preprocessing); nothing for the estimators without an input gradient."""
    try:
        layers = sklearn_layers(model)
    except UnsupportedExplanation as exc:
        log.info("baseline exported without an explanation graph: %s", exc)
        return [], None
    return explanation_or_none(
        staging, [pipeline_module(pipeline), *layers], pipeline.input_mean, parity
    )


def _version(dist: str) -> str:
    import importlib.metadata

    return importlib.metadata.version(dist)
