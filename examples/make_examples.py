"""Regenerate the example files in examples/ from scanpy's bundled pbmc68k_reduced.

Run from the repository root, with the training extra installed (scanpy ships the data; nothing is
downloaded):

    .venv/bin/python examples/make_examples.py

The values are the log-normalised `.raw.X` (765 genes), rounded to 3 decimals, as in
examples/pbmc68k-2cells.json (which this script does not write). Cells to classify come from the
140 cells the demo models held out (`training_data.heldout_sample_ids` in
models/pbmc68k-celltype/1/model.json); the "lab" dataset for fine-tuning comes from the other
cells. The choice is fixed (sorted ids, first cells of fixed classes), so every run writes the
same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
CARD = HERE.parent / "models" / "pbmc68k-celltype" / "1" / "model.json"

# one held-out cell of each of these classes, to classify
QUERY_CLASSES = ("CD14+ Monocyte", "CD19+ B", "CD4+/CD25 T Reg", "CD8+ Cytotoxic T")
# the "lab" dataset: training cells of these classes, at most LAB_PER_CLASS each
LAB_CLASSES = ("CD14+ Monocyte", "CD19+ B", "CD4+/CD25 T Reg", "Dendritic")
LAB_PER_CLASS = 30


def load() -> tuple[pd.DataFrame, pd.DataFrame]:
    """pbmc68k_reduced as (cells × genes log values, obs), both indexed by cell id."""
    import scanpy as sc

    adata = sc.datasets.pbmc68k_reduced()
    x = adata.raw.X
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    values = pd.DataFrame(
        np.round(x.astype(np.float64), 3),
        index=pd.Index([str(c) for c in adata.obs_names], name="cell"),
        columns=[str(g) for g in adata.raw.var_names],
    )
    obs = adata.obs.copy()
    obs.index = values.index
    obs["bulk_labels"] = obs["bulk_labels"].astype(str)
    obs["phase"] = obs["phase"].astype(str)
    return values, obs


def pick(ids: list[str], obs: pd.DataFrame, classes: tuple[str, ...], per_class: int) -> list[str]:
    """The first `per_class` cells (by sorted id) of each class, in class order."""
    chosen: list[str] = []
    for label in classes:
        chosen += [c for c in sorted(ids) if obs.at[c, "bulk_labels"] == label][:per_class]
    return chosen


def write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


def main() -> None:
    values, obs = load()
    card = json.loads(CARD.read_text())
    panel: list[str] = card["panel"]["ids"]
    heldout = set(card["training_data"]["heldout_sample_ids"])
    training = [c for c in values.index if c not in heldout]

    # 4 held-out cells, one of each query class: CSV, npy (panel order), npz (names its genes)
    query = pick(sorted(heldout), obs, QUERY_CLASSES, 1)
    cells = values.loc[query, panel]
    write_text(HERE / "pbmc68k-4cells.csv", cells.to_csv(index_label="cell", float_format="%.3f"))
    with (HERE / "pbmc68k-4cells.npy").open("wb") as fh:
        np.save(fh, cells.to_numpy(np.float32), allow_pickle=False)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        values=cells.to_numpy(np.float32),
        genes=np.array(panel, dtype=np.str_),
        sample_ids=np.array(query, dtype=np.str_),
    )
    (HERE / "pbmc68k-4cells.npz").write_bytes(buffer.getvalue())
    write_text(
        HERE / "pbmc68k-4cells-truth.csv",
        obs.loc[query, ["bulk_labels"]].to_csv(index_label="cell"),
    )

    # the same 4 cells as a KServe v2 JSON inference request (panel order, no gene names)
    infer = {
        "id": "v2-example",
        "inputs": [
            {
                "name": card["inputs"][0]["name"],
                "datatype": "FP32",
                "shape": [len(query), len(panel)],
                "data": [float(v) for v in cells.to_numpy().reshape(-1)],
            }
        ],
        "outputs": [{"name": "probabilities"}],
    }
    write_text(HERE / "pbmc68k-4cells-v2.json", json.dumps(infer) + "\n")

    # POST /v1/preprocess: two held-out cells as records, through the encoder's fitted pipeline
    two = pick(sorted(heldout), obs, ("CD19+ B", "Dendritic"), 1)
    records = {
        "model": "pbmc68k-encoder",
        "genes": panel,
        "samples": [
            {"id": c, "values": values.loc[c, panel].to_numpy(float).tolist()} for c in two
        ],
    }
    write_text(HERE / "preprocess-2cells.json", json.dumps(records) + "\n")

    # a "lab" dataset for fine-tuning: training cells only (never the demo's held-out cells),
    # expression in one gzipped CSV, labels in a separate table
    lab = pick(training, obs, LAB_CLASSES, LAB_PER_CLASS)
    text = values.loc[lab, panel].to_csv(index_label="cell", float_format="%.3f")
    with gzip.GzipFile(HERE / "lab-cells.csv.gz", "wb", mtime=0) as fh:  # mtime 0: same bytes
        fh.write(text.encode())
    labels = pd.DataFrame(
        {
            "cell_type": obs.loc[lab, "bulk_labels"],
            "phase": obs.loc[lab, "phase"],
            "G2M_score": obs.loc[lab, "G2M_score"].astype(float).round(4),
        },
        index=pd.Index(lab, name="cell"),
    )
    write_text(HERE / "lab-labels.csv", labels.to_csv())

    for path in sorted(HERE.iterdir()):
        if path.suffix != ".py":
            print(f"{path.relative_to(HERE.parent)}: {path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
