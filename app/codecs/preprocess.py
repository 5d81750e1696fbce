"""Expression data in and out of POST /v1/preprocess: records, uploaded files, encoded answers.

Uploads are written to a private temporary file (the HTTP layer has already capped their size)
and parsed by the training readers: CSV/TSV (+gz), Parquet, h5ad (HDF5; anndata never
unpickles), GCT. Nothing uploaded is executed; the file is deleted when parsing ends.
"""

from __future__ import annotations

import io
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from app.errors import InvalidExpressionData, InvalidRequest, PayloadTooLarge
from app.schemas.preprocess import PreprocessIn, PreprocessOptions
from contract.io.readers import read_matrix
from contract.matrix import ExpressionMatrix

MAX_LISTED = 50
UPLOAD_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz", ".parquet",
                   ".h5ad", ".gct", ".gct.gz")  # fmt: skip
MEDIA_TYPES = {
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "parquet": "application/vnd.apache.parquet",
    "h5ad": "application/x-hdf5",
}


def from_records(body: PreprocessIn, max_samples: int) -> ExpressionMatrix:
    """A matrix from records; nulls become missing values for QC, ±inf is refused by name."""
    ids = [s.id for s in body.samples]
    _check_count(len(ids), max_samples)
    dupes = sorted(s for s, n in Counter(ids).items() if n > 1)
    if dupes:
        raise InvalidExpressionData(f"duplicate sample ids: {dupes[:MAX_LISTED]}", samples=dupes)
    wrong = [s.id for s in body.samples if len(s.values) != len(body.genes)]
    if wrong:
        raise InvalidExpressionData(
            f"{len(wrong)} sample(s) do not have one value per gene ({len(body.genes)} genes): "
            f"{wrong[:MAX_LISTED]}",
            samples=wrong[:MAX_LISTED],
        )
    values = np.array(
        [[np.nan if v is None else v for v in s.values] for s in body.samples], dtype=np.float64
    )
    too_big = np.abs(np.nan_to_num(values, nan=0.0)) > np.finfo(np.float32).max  # ±inf too
    infinite = [ids[i] for i in np.flatnonzero(too_big.any(axis=1))]
    if infinite:
        raise InvalidExpressionData(
            f"infinite values (or beyond float32) in samples {infinite[:MAX_LISTED]}",
            samples=infinite[:MAX_LISTED],
        )
    obs = pd.DataFrame(index=pd.Index(ids))
    if body.batch is not None:
        if len(body.batch) != len(ids):
            raise InvalidRequest(f"batch has {len(body.batch)} labels for {len(ids)} samples")
        obs["batch"] = body.batch
    try:
        return ExpressionMatrix(X=values.astype(np.float32), sample_ids=ids,
                                gene_ids=list(body.genes), obs=obs)  # fmt: skip
    except ValueError as exc:  # duplicate gene ids: named in the message
        raise InvalidExpressionData(str(exc)) from exc


def from_upload(
    data: bytes, filename: str, options: PreprocessOptions, max_samples: int
) -> tuple[ExpressionMatrix, str]:
    """A matrix from an uploaded file and its format (csv, tsv, parquet, h5ad, gct)."""
    name = Path(filename).name.lower()
    suffix = next((s for s in sorted(UPLOAD_SUFFIXES, key=len, reverse=True)
                   if name.endswith(s)), None)  # fmt: skip
    if suffix is None:
        raise InvalidRequest(
            f"cannot read {filename!r}: the file name must end in one of {list(UPLOAD_SUFFIXES)}"
        )
    fmt = suffix.strip(".").removesuffix(".gz").replace("txt", "tsv")
    kwargs: dict[str, object] = {"allow_missing": True} if fmt != "h5ad" else {}
    if fmt in ("csv", "tsv", "parquet"):
        kwargs["orientation"] = options.orientation
        if options.batch_column:
            kwargs["obs_columns"] = [options.batch_column]
    with tempfile.TemporaryDirectory(prefix="genexfer-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        try:
            matrix = read_matrix(path, **kwargs)
        except (ValueError, OSError) as exc:
            message = str(exc).replace(str(path), filename)
            raise InvalidExpressionData(f"cannot read {filename!r}: {message}") from exc
    _check_count(matrix.shape[0], max_samples)
    if options.batch_column and options.batch_column in matrix.obs.columns:
        obs = matrix.obs.assign(batch=matrix.obs[options.batch_column].astype(str))
        matrix = ExpressionMatrix(X=matrix.X, sample_ids=matrix.sample_ids,
                                  gene_ids=matrix.gene_ids, obs=obs)  # fmt: skip
    elif options.batch_column:
        raise InvalidRequest(f"the upload has no metadata column {options.batch_column!r}")
    return matrix, fmt


def encode(matrix: ExpressionMatrix, fmt: str) -> tuple[bytes, str]:
    """The matrix (samples as rows) as csv, tsv, parquet or h5ad bytes, with its media type."""
    frame = pd.DataFrame(matrix.X, index=pd.Index(matrix.sample_ids, name="sample"),
                         columns=matrix.gene_ids)  # fmt: skip
    if fmt in ("csv", "tsv"):
        text = frame.to_csv(sep="," if fmt == "csv" else "\t", float_format="%.7g")
        return text.encode(), MEDIA_TYPES[fmt]
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        return buffer.getvalue(), MEDIA_TYPES[fmt]
    if fmt == "h5ad":
        import anndata  # deferred: only this answer format needs it

        adata = anndata.AnnData(X=matrix.X, obs=matrix.obs.astype(str),
                                var=pd.DataFrame(index=matrix.gene_ids))  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="genexfer-out-") as folder:
            path = Path(folder) / "out.h5ad"
            adata.write_h5ad(path)
            return path.read_bytes(), MEDIA_TYPES[fmt]
    raise InvalidRequest(f"cannot answer as {fmt!r}; choose json, csv, tsv, parquet or h5ad")


def _check_count(n: int, max_samples: int) -> None:
    if n > max_samples:
        raise PayloadTooLarge(
            f"{n} samples in one request; at most {max_samples} are accepted",
            max_samples=max_samples,
        )
