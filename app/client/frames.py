"""What the client sends and gets back: expression in from pandas, AnnData or numpy; answers out as
DataFrames. Requests travel as npz (values float32, gene names, sample ids; loaded by the
server without pickle), chunked by rows so that no request is larger than it need be."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

Matrix = npt.NDArray[np.float32]


class AnnDataLike(Protocol):
    """What the client reads of an AnnData: X (dense or sparse), obs_names, var_names."""

    @property
    def X(self) -> Any: ...  # noqa: N802 (AnnData's own name)

    @property
    def obs_names(self) -> Any: ...

    @property
    def var_names(self) -> Any: ...


Expression = pd.DataFrame | AnnDataLike | npt.NDArray[Any]


@dataclass(frozen=True)
class Samples:
    """Rows to send: a row source that yields dense float32 blocks, gene names, sample ids."""

    source: Any  # a 2-D array, a DataFrame's values or an AnnData's (maybe sparse) X
    genes: list[str]
    sample_ids: list[str]

    @property
    def n(self) -> int:
        return len(self.sample_ids)

    def block(self, start: int, stop: int) -> Matrix:
        """Rows start:stop as a dense float32 array (a sparse block is densified alone)."""
        rows = self.source[start:stop]
        if hasattr(rows, "toarray"):
            rows = rows.toarray()
        return np.ascontiguousarray(rows, dtype=np.float32)


def samples_of(
    data: Expression,
    genes: Sequence[str] | None = None,
    sample_ids: Sequence[str] | None = None,
) -> Samples:
    """Read a DataFrame (samples × genes, the index holds the sample ids), an AnnData (obs ×
    var) or a 2-D numpy array with `genes` (and optionally `sample_ids`, else 0, 1, …)."""
    if isinstance(data, pd.DataFrame):
        numeric = data.select_dtypes("number")
        if numeric.shape[1] != data.shape[1]:
            extra = [str(c) for c in data.columns if c not in numeric.columns]
            raise ValueError(f"columns {extra[:10]} are not numbers; pass gene columns only")
        names = [str(g) for g in data.columns] if genes is None else list(genes)
        ids = [str(s) for s in data.index] if sample_ids is None else list(sample_ids)
        return _checked(Samples(numeric.to_numpy(dtype=np.float32), names, ids))
    if hasattr(data, "obs_names") and hasattr(data, "var_names") and hasattr(data, "X"):
        names = [str(g) for g in data.var_names] if genes is None else list(genes)
        ids = [str(s) for s in data.obs_names] if sample_ids is None else list(sample_ids)
        return _checked(Samples(data.X, names, ids))
    array = np.asarray(data)
    if array.ndim != 2:
        raise ValueError(f"expected a samples × genes matrix, got shape {array.shape}")
    if genes is None:
        raise ValueError("a numpy matrix needs genes=[...], one name per column")
    ids = [str(i) for i in range(array.shape[0])] if sample_ids is None else list(sample_ids)
    return _checked(Samples(array, list(genes), ids))


def _checked(samples: Samples) -> Samples:
    shape = samples.source.shape
    if shape != (samples.n, len(samples.genes)):
        raise ValueError(
            f"{shape[0]} × {shape[1]} values for {samples.n} sample ids and "
            f"{len(samples.genes)} gene names"
        )
    return samples


def chunks(samples: Samples, rows: int, max_bytes: int) -> Iterator[tuple[int, int]]:
    """(start, stop) row ranges of at most `rows` rows and about `max_bytes` of values each."""
    per_row = max(1, len(samples.genes) * 4)
    step = max(1, min(rows, max_bytes // per_row))
    for start in range(0, samples.n, step):
        yield start, min(start + step, samples.n)


def npz_body(samples: Samples, start: int, stop: int) -> bytes:
    """One chunk as an npz archive of plain arrays (no object arrays: nothing to unpickle)."""
    sink = io.BytesIO()
    np.savez(
        sink,
        values=samples.block(start, stop),
        genes=np.asarray(samples.genes, dtype=str),
        sample_ids=np.asarray(samples.sample_ids[start:stop], dtype=str),
    )
    return sink.getvalue()


def answer_frame(task: str, answers: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows of every chunk's answer as one DataFrame indexed by sample id.

    classify: `label` then one `p_<class>` column per class; regress: one column per target;
    embed: `e0`, `e1`, …; a multi-task model (classify or regress alike): per classification
    task `<task>.label` and `<task>.p_<class>`, per regression task a column named after it.
    `attrs` keeps each chunk's `gene_overlap`, the `model` and the `transform_applied`.
    """
    if answers and "tasks" in answers[0]:
        return _with_attrs(_tasks_frame(answers), answers)
    key = "embeddings" if task == "embed" else "predictions"
    records = [row for answer in answers for row in answer[key]]
    ids = pd.Index([r["id"] for r in records], name="sample_id")
    if task == "classify":
        frame = pd.DataFrame({"label": [r["label"] for r in records]}, index=ids)
        probs = pd.DataFrame([r["probabilities"] for r in records], index=ids)
        frame = frame.join(probs.add_prefix("p_"))
    elif task == "regress":
        frame = pd.DataFrame([r["values"] for r in records], index=ids)
    else:
        width = len(records[0]["embedding"]) if records else 0
        values = np.asarray([r["embedding"] for r in records], dtype=np.float32)
        frame = pd.DataFrame(values.reshape(len(records), width), index=ids)
        frame.columns = [f"e{k}" for k in range(width)]
    return _with_attrs(frame, answers)


def _with_attrs(frame: pd.DataFrame, answers: list[dict[str, Any]]) -> pd.DataFrame:
    if answers:
        frame.attrs["model"] = answers[-1]["model"]
        frame.attrs["gene_overlap"] = [a["gene_overlap"] for a in answers]
        frame.attrs["transform_applied"] = sorted(
            {str(a.get("transform_applied")) for a in answers if a.get("transform_applied")}
        )
        frame.attrs["request_ids"] = [a["request_id"] for a in answers]
    return frame


def _tasks_frame(answers: list[dict[str, Any]]) -> pd.DataFrame:
    """Multi-task answers as one row per sample, a column group per task."""
    parts: list[pd.DataFrame] = []
    for name in answers[0]["tasks"]:
        records = [r for a in answers for r in a["tasks"][name]["predictions"]]
        ids = pd.Index([r["id"] for r in records], name="sample_id")
        if answers[0]["tasks"][name]["kind"] == "classification":
            part = pd.DataFrame({f"{name}.label": [r["label"] for r in records]}, index=ids)
            probs = pd.DataFrame([r["probabilities"] for r in records], index=ids)
            parts.append(part.join(probs.add_prefix(f"{name}.p_")))
        else:
            parts.append(pd.DataFrame({name: [r["values"][name] for r in records]}, index=ids))
    return pd.concat(parts, axis=1)


def explanation_frame(answers: list[dict[str, Any]]) -> pd.DataFrame:
    """classify?explain= answers as one row per (sample, top gene), indexed by sample id; the
    enriched gene sets, if asked for, by sample id in `attrs["gene_sets"]`."""
    rows, sets = [], {}
    for answer in answers:
        for p in answer["predictions"]:
            explanation = p["explanation"]
            for rank, g in enumerate(explanation["top_genes"], start=1):
                rows.append({"sample_id": p["id"], "label": p["label"], "rank": rank, **g})
            if "gene_sets" in explanation:
                sets[p["id"]] = explanation["gene_sets"]
    columns = ["sample_id", "label", "rank", "gene", "panel_gene", "attribution", "in_input"]
    frame = pd.DataFrame(rows, columns=columns).set_index("sample_id")
    if answers:
        frame.attrs["model"] = answers[-1]["model"]
        frame.attrs["request_ids"] = [a["request_id"] for a in answers]
    frame.attrs["gene_sets"] = sets
    return frame


def predictions_frame(found: list[dict[str, Any]]) -> pd.DataFrame:
    """Past predictions, one row per (call, sample): the call's fields, then the label and each
    class probability (`p_<class>`), or each target's value."""
    rows = []
    for p in found:
        output = p.get("output") or {}
        row = {k: v for k, v in p.items() if k != "output"}
        row["label"] = output.get("label")
        row |= {f"p_{c}": v for c, v in output.get("probabilities", {}).items()}
        row |= dict(output.get("values", {}))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def table_upload(
    samples: Samples, labels: pd.Series | pd.DataFrame | None
) -> tuple[bytes, list[str]]:
    """A dataset as Parquet (sample ids as the index, gene columns, label columns as text) and
    the names of its label columns."""
    table = pd.DataFrame(
        samples.block(0, samples.n),
        index=pd.Index(samples.sample_ids, name="sample_id"),
        columns=samples.genes,
    )
    names: list[str] = []
    if labels is not None:
        frame = labels.to_frame() if isinstance(labels, pd.Series) else labels
        frame = frame.rename(columns={None: "label"}) if None in frame.columns else frame
        frame.index = frame.index.astype(str)
        missing = sorted(set(samples.sample_ids) - set(frame.index))
        if missing:
            raise ValueError(f"labels lack {len(missing)} sample(s): {missing[:10]}")
        names = [str(c) for c in frame.columns]
        clash = sorted(set(names) & set(samples.genes))
        if clash:
            raise ValueError(f"label columns {clash} have the names of genes")
        for column in frame.columns:
            table[str(column)] = frame.loc[samples.sample_ids, column].astype(str).to_numpy()
    sink = io.BytesIO()
    table.to_parquet(sink)
    return sink.getvalue(), names
