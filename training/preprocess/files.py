"""The work behind `genexfer preprocess`: files in; matrix, pipeline, QC JSON and report out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from contract.align import align_matrix
from contract.genes import harmonise_matrix
from contract.io.readers import attach_obs, read_matrix, read_obs
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from contract.preprocess.qc import run_qc
from contract.scale import detect_scale
from training.preprocess.report import write_report

_WRITERS = {"csv": ",", "tsv": "\t"}


def preprocess_files(
    *,
    inputs: Sequence[Path],
    out: Path,
    steps: list[dict[str, Any]] | None,
    model_dir: Path | None,
    input_scale: str | None,
    orientation: str,
    obs_path: Path | None,
    batch_column: str | None,
    max_missing: float,
    n_mads: float,
    fmt: str,
    gene_lengths: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Run the whole command; returns the summary it also writes to qc.json."""
    bar = tqdm(total=len(inputs) + 4, desc="preprocess", unit="stage")
    parts = []
    for path in inputs:
        bar.set_postfix_str(f"reading {path.name}")
        parts.append(_read(path, orientation))
        bar.update()
    scale = input_scale or detect_scale(np.vstack([p.X for p in parts])).scale
    matrix = _combine(parts, inputs, scale)
    if obs_path is not None:
        matrix = attach_obs(matrix, read_obs(obs_path))
    batch_source = batch_column or "file"
    if batch_column is not None:
        matrix = _with_batch(matrix, matrix.labels(batch_column))
    bar.set_postfix_str("QC")
    qc = run_qc(matrix, scale, max_missing=max_missing, n_mads=n_mads)
    kept = qc.kept
    bar.update()
    bar.set_postfix_str("fitting" if model_dir is None else "loading the model's pipeline")
    if model_dir is not None:
        pipeline = PreprocessPipeline.load(model_dir)
        kept, _ = align_matrix(kept, pipeline.panel, pipeline.input_scale)
    else:
        pipeline = PreprocessPipeline.fit_recipe(
            kept, scale, steps or [], gene_lengths=gene_lengths
        )
    bar.update()
    bar.set_postfix_str("transforming")
    batch = kept.labels("batch")
    result, notes = pipeline.transform_with_notes(kept.X, batch=batch, obs=kept.obs)
    before, after, titles = _pca_inputs(pipeline, kept, batch, result, scale)
    bar.update()
    bar.set_postfix_str("writing")
    out.mkdir(parents=True, exist_ok=True)
    written = _write(out, fmt, result, kept.sample_ids, pipeline.output_names())
    pipeline.save(out / "pipeline")
    summary = {
        "inputs": [str(p) for p in inputs],
        "batch_from": batch_source,
        "input_scale": scale,
        "pipeline": [s.name for s in pipeline.to_card().steps],
        "output": str(written),
        "shape": list(result.shape),
        "batch_notes": notes,
        "qc": {k: v for k, v in qc.to_dict().items() if k != "metrics"},
    }
    (out / "qc.json").write_text(json.dumps({**summary, "qc": qc.to_dict()}, indent=1) + "\n")
    write_report(out, qc, batch, before, after, titles, summary)
    bar.update()
    bar.close()
    return summary


def _read(path: Path, orientation: str) -> ExpressionMatrix:
    name = path.name.lower()
    if path.is_dir() or name.endswith(".h5ad"):
        return read_matrix(path)
    if name.endswith((".gct", ".gct.gz")):
        return read_matrix(path, allow_missing=True)
    return read_matrix(path, orientation=orientation, allow_missing=True)


def _combine(parts: list[ExpressionMatrix], inputs: Sequence[Path], scale: str) -> ExpressionMatrix:
    """Harmonise each file's genes, keep the genes all files share, label batches by file."""
    folded = [harmonise_matrix(p, scale)[0] for p in parts]
    common = set(folded[0].gene_ids).intersection(*(f.gene_ids for f in folded[1:]))
    genes = [g for g in folded[0].gene_ids if g in common]
    if not genes:
        raise ValueError("the input files share no gene ids")
    blocks, obs = [], []
    for part, path in zip(folded, inputs, strict=True):
        column = {g: j for j, g in enumerate(part.gene_ids)}
        blocks.append(part.X[:, [column[g] for g in genes]])
        frame = part.obs.copy()
        frame["batch"] = frame["batch"].astype(str) if "batch" in frame else path.name
        obs.append(frame)
    ids = [s for p in folded for s in p.sample_ids]
    merged = pd.concat(obs, axis=0)
    merged.index = pd.Index(ids)
    return ExpressionMatrix(X=np.vstack(blocks), sample_ids=ids, gene_ids=genes, obs=merged)


def _with_batch(matrix: ExpressionMatrix, batch: list[str]) -> ExpressionMatrix:
    obs = matrix.obs.assign(batch=batch)
    return ExpressionMatrix(X=matrix.X, sample_ids=matrix.sample_ids,
                            gene_ids=matrix.gene_ids, obs=obs)  # fmt: skip


def _pca_inputs(
    pipeline: PreprocessPipeline,
    kept: ExpressionMatrix,
    batch: list[str],
    result: np.ndarray[Any, Any],
    scale: str,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], tuple[str, str]]:
    if pipeline.combat is None:
        start = np.log1p(np.maximum(kept.X, 0)) if scale in ("counts", "normalized") else kept.X
        return start, result, ("PCA of the input (log1p)", "PCA after the pipeline")
    pre = kept.X
    for step in pipeline.steps[: pipeline.combat_at]:
        pre = step.transform(pre)
    post, _ = pipeline.apply_combat(pre, batch, kept.obs)
    return pre, post, ("PCA before ComBat", "PCA after ComBat")


def _write(
    out: Path, fmt: str, values: np.ndarray[Any, Any], samples: list[str], names: list[str]
) -> Path:
    frame = pd.DataFrame(values, index=pd.Index(samples, name="sample"), columns=names)
    path = out / f"matrix.{fmt}"
    if fmt in _WRITERS:
        frame.to_csv(path, sep=_WRITERS[fmt], float_format="%.7g")
    elif fmt == "parquet":
        frame.to_parquet(path)
    else:
        import anndata

        anndata.AnnData(X=values, obs=pd.DataFrame(index=samples),
                        var=pd.DataFrame(index=names)).write_h5ad(path)  # fmt: skip
    return path
