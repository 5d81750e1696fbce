"""Verified export of a multi-omics classifier: one ONNX graph, one named input per modality.

Inputs: ``expression`` (the encoder's panel, its input scale, as every model) then each added
modality by name, raw values, a NaN row where a sample lacks it (`contract.modality`). Outputs:
``logits`` and ``probabilities``. Verified like `training.export.onnx.verify_onnx`: the checker,
the signature, then ONNX Runtime within `PARITY_FACTOR` × torch float32's own error of a float64
torch reference, on random and real batches with missing modalities in them and a batch of one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from safetensors.torch import save_file

from contract.card import ModelKind, ModelRef, TensorSpec
from contract.modality import ModalityInput
from contract.preprocess.pipeline import PreprocessPipeline
from contract.preprocess.steps import Array
from training.export.card import CardInfo, parity_inputs, publish_version
from training.export.onnx import (
    BATCH_AXIS,
    INPUT_NAME,
    PARITY_ATOL,
    PARITY_FACTOR,
    ExportVerificationError,
    export_onnx,
)
from training.export.store import check_model_name, staging_folder
from training.multiomics.data import MultiOmics
from training.multiomics.finetune import MultiOmicsResult
from training.multiomics.network import MultiOmicsGraph, exportable

OUTPUTS = ("logits", "probabilities")
WEIGHTS = "multiomics.safetensors"

Batch = dict[str, Array]


def modality_inputs(result: MultiOmicsResult) -> list[ModalityInput]:
    """The card's record of each added modality."""
    return [
        ModalityInput(
            name=s.name,
            features=list(s.features),
            transform="logit" if s.logit else "none",
            preprocessing=["logit_m_value", "standardize"] if s.logit else ["standardize"],
            fill_values=[float(v) for v in s.raw_mean],
            n_train_present=s.n_present,
        )
        for s in result.scalings
    ]


def export_multiomics_classifier(
    result: MultiOmicsResult,
    pipeline: PreprocessPipeline,
    *,
    name: str,
    models_dir: Path,
    info: CardInfo,
    reference: MultiOmics,
    parent: ModelRef | None,
) -> Path:
    """Export ``(expression, *modalities) → (logits, probabilities)`` as a new version.

    Parameters
    ----------
    result:
        The trained network and its modalities' scalings (`finetune_multiomics`).
    pipeline:
        The expression encoder's preprocessing, fused in front of it.
    name, models_dir, info:
        As for `training.export.heads.export_classifier`.
    reference:
        Real samples (expression in panel order, with their modalities) for the parity check.
    parent:
        The published expression encoder.
    """
    check_model_name(name)
    graph = result.graph(pipeline)
    n = len(result.labels)
    outputs = [TensorSpec(name=o, shape=["batch", n]) for o in OUTPUTS]
    added = modality_inputs(result)
    with staging_folder(models_dir / name) as staging:
        path = staging / "model.onnx"
        extra = [(m.name, torch.zeros(2, m.n_features)) for m in added]
        export_onnx(exportable(graph), pipeline.n_genes, path, OUTPUTS, extra_inputs=extra)
        verify_multi(path, graph, OUTPUTS, parity_batches(pipeline, added, reference))
        weights = staging / WEIGHTS
        state = {k: v.detach().cpu().contiguous() for k, v in graph.state_dict().items()}
        save_file(state, str(weights), metadata={"format": "pt"})
        return publish_version(
            staging,
            [path, weights],
            name=name,
            kind=ModelKind.classifier,
            pipeline=pipeline,
            outputs=outputs,
            info=info,
            labels=list(result.labels),
            parent=parent,
            modalities=added,
        )


def parity_batches(
    pipeline: PreprocessPipeline, added: Sequence[ModalityInput], reference: MultiOmics
) -> list[Batch]:
    """Random plausible batches and real ones, each with missing modalities, and one of one."""
    expressions = parity_inputs(pipeline, reference.expression.X)
    rng = np.random.default_rng(0)
    batches: list[Batch] = []
    for k, x in enumerate(expressions):
        batch: Batch = {INPUT_NAME: x}
        for m in added:
            if k == 0:  # random values around the fill values; every 3rd row missing
                fill = np.asarray(m.fill_values)
                values = fill * rng.lognormal(0.0, 0.3, size=(len(x), m.n_features))
                if m.transform == "logit":
                    values = np.clip(values, 1e-4, 1 - 1e-4)
                values[::3] = np.nan
                batch[m.name] = values.astype(np.float32)
            else:
                batch[m.name] = np.ascontiguousarray(reference.dense(m.name)[: len(x)])
        batches.append(batch)
    return batches


def verify_multi(
    path: Path, module: MultiOmicsGraph, output_names: Sequence[str], batches: Sequence[Batch]
) -> float:
    """`verify_onnx` for a graph of several named inputs (the batch dict's keys, in order)."""
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportVerificationError(f"{path}: onnx.checker rejected the graph: {exc}") from exc
    names = list(batches[0])
    inputs = [i.name for i in model.graph.input]
    if inputs != names:
        raise ExportVerificationError(f"graph inputs are {inputs}, expected {names}")
    for i in model.graph.input:
        if i.type.tensor_type.shape.dim[0].dim_param != BATCH_AXIS:
            raise ExportVerificationError(f"input {i.name!r} has no dynamic {BATCH_AXIS!r} axis")
    if [o.name for o in model.graph.output] != list(output_names):
        raise ExportVerificationError(f"graph outputs are {[o.name for o in model.graph.output]}")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module.eval()
    exact = copy.deepcopy(module).double().eval()
    worst = 0.0
    for batch in batches:
        tensors = [torch.from_numpy(batch[k]) for k in names]
        with torch.no_grad():
            single = module(*tensors)
            double = exact(*(t.double() for t in tensors))
        got = session.run(list(output_names), dict(batch))
        for name, want, ref, have in zip(output_names, single, double, got, strict=True):
            own = float(np.max(np.abs(want.numpy().astype(np.float64) - ref.numpy())))
            off = float(np.max(np.abs(np.asarray(have, dtype=np.float64) - ref.numpy())))
            tolerance = max(PARITY_ATOL, PARITY_FACTOR * own)
            if not np.isfinite(off) or off > tolerance:
                raise ExportVerificationError(
                    f"{path}: output {name!r} differs from a float64 torch reference by "
                    f"{off:.3g} (> {tolerance:.3g}) on a batch of {len(batch[names[0]])}"
                )
            worst = max(worst, off)
    return worst


def card_extra(result: MultiOmicsResult, presence: Mapping[str, float]) -> dict[str, object]:
    """What the checkpoint's metadata says about the multi-omics run."""
    return {
        "task": "classification",
        "strategy": result.strategy,
        "modalities": [s.name for s in result.scalings],
        "training_presence": dict(presence),
        "history": result.history.summary(),
    }
