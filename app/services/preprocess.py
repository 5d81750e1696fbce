"""Preprocess expression data: detect the scale, QC, then a model's pipeline or a named recipe."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.errors import InvalidExpressionData, InvalidRequest
from app.inference.registry import ModelRegistry
from app.inference.routing import Viewer
from app.schemas.preprocess import PreprocessOptions, PreprocessOut, SampleValues, ScaleOut
from app.services.predict import gene_overlap
from contract.align import MAX_LISTED, align
from contract.card import InputScale
from contract.genes import harmonise
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PARAMS_JSON, PreprocessPipeline
from contract.preprocess.qc import run_qc
from contract.scale import detect_scale, require_scale


def _refuse_non_finite(out: np.ndarray, sample_ids: list[str]) -> None:
    """Steps that made NaN or ±Inf of a sample's values were given values they cannot take."""
    finite = np.isfinite(out)
    if finite.all():
        return
    samples = [sample_ids[i] for i in np.flatnonzero(~finite.all(axis=1))]
    raise InvalidExpressionData(
        f"the steps made NaN or infinite values of {len(samples)} sample(s), whose values they "
        "cannot take (e.g. log1p of a value below -1, or a sample whose values sum to 0): "
        + ", ".join(samples[:MAX_LISTED]),
        samples=samples[:MAX_LISTED],
    )


@dataclass(frozen=True)
class Preprocessed:
    """The JSON answer and the output matrix (for file answers)."""

    answer: PreprocessOut
    matrix: ExpressionMatrix


def preprocess(
    *,
    matrix: ExpressionMatrix,
    options: PreprocessOptions,
    registry: ModelRegistry,
    viewer: Viewer,
    request_id: str,
    min_overlap: float,
) -> Preprocessed:
    """Run QC and the chosen pipeline on `matrix`; every decision is in the answer."""
    if (options.model is None) == (options.steps is None):
        raise InvalidRequest("name exactly one of 'model' (its fitted pipeline) or 'steps'")
    try:
        report = detect_scale(matrix.X)
    except ValueError as exc:
        raise InvalidExpressionData(f"{exc}: every value is missing") from exc
    scale = options.input_scale or InputScale(report.scale)
    folded = harmonise(matrix.X, matrix.gene_ids, scale.value)
    matrix = ExpressionMatrix(X=folded.values, sample_ids=matrix.sample_ids,
                              gene_ids=folded.genes, obs=matrix.obs)  # fmt: skip
    try:
        qc = run_qc(matrix, scale.value, max_missing=options.max_missing, n_mads=options.n_mads)
    except ValueError as exc:
        raise InvalidExpressionData(str(exc)) from exc
    kept = qc.kept
    batch = kept.labels("batch") if "batch" in kept.obs.columns else None
    overlap = None
    if options.model is not None:
        model = registry.get(options.model, options.version, viewer=viewer)
        if not (model.folder / PARAMS_JSON).is_file():
            raise InvalidRequest(f"{model.card.name} v{model.card.version} has no preprocessing")
        pipeline = PreprocessPipeline.load(model.folder)
        require_scale(matrix.X, pipeline.input_scale, options.input_scale, report)
        alignment = align(model.index, kept.gene_ids, min_overlap=min_overlap)
        X = alignment.apply(kept.X, model.index.fill)
        source = {"model": model.card.name, "version": model.card.version}
        overlap = gene_overlap(alignment, folded)
    else:
        try:
            recipe = [s.model_dump(exclude_none=True) for s in options.steps or []]
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # see below
                pipeline = PreprocessPipeline.fit_recipe(kept, scale, recipe)
        except (ValueError, KeyError) as exc:
            raise InvalidRequest(f"cannot fit the steps: {exc}") from exc
        X, source = kept.X, {"fitted_on": "this request's samples after QC"}
    try:
        # log1p of a value below -1, a sample whose library size is 0, ...: refused by name
        # below rather than warned about
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out, notes = pipeline.transform_with_notes(X, batch=batch, obs=kept.obs)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc
    _refuse_non_finite(np.asarray(out), kept.sample_ids)
    names = pipeline.output_names()
    result = ExpressionMatrix(X=out, sample_ids=kept.sample_ids, gene_ids=names, obs=kept.obs)
    answer = PreprocessOut(
        request_id=request_id,
        pipeline={**source, "steps": [s.name for s in pipeline.to_card().steps]},
        input_scale=ScaleOut(
            detected=report.scale,
            reason=report.reason,
            declared=None if options.input_scale is None else options.input_scale.value,
            used=scale.value,
        ),
        gene_overlap=overlap,
        gene_warning=folded.warning(MAX_LISTED),
        qc=qc.to_dict(),
        batch_notes=notes,
        features=names,
        samples=[
            SampleValues(id=s, values=[float(v) for v in row])
            for s, row in zip(result.sample_ids, np.asarray(out), strict=True)
        ],
    )
    return Preprocessed(answer, result)
