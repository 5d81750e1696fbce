"""The QC report of `genexfer preprocess`: one PNG of four plots and an HTML page around it.

Plots: library sizes and detected genes per sample (coloured by batch, flagged samples ringed),
and the first two principal components coloured by batch before and after the batch step (or
before and after the whole pipeline when there is no ComBat). matplotlib runs headless (Agg).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.preprocess.qc import QCReport


def pcs(X: npt.NDArray[Any], k: int = 2) -> npt.NDArray[np.float64]:
    """Scores on the first `k` principal components (float64 SVD of the centred values)."""
    centred = np.asarray(X, dtype=np.float64) - np.mean(X, axis=0, dtype=np.float64)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    scores = u[:, :k] * s[:k]
    if scores.shape[1] < k:  # fewer samples or genes than components: pad with zeros
        scores = np.hstack([scores, np.zeros((scores.shape[0], k - scores.shape[1]))])
    return np.asarray(scores)


def write_report(
    folder: Path,
    qc: QCReport,
    batch: Sequence[str],
    before: npt.NDArray[Any],
    after: npt.NDArray[Any],
    titles: tuple[str, str],
    summary: dict[str, Any],
) -> tuple[Path, Path]:
    """Write qc_report.png and qc_report.html into `folder`; returns their paths.

    Parameters
    ----------
    folder:
        Output folder (created if needed).
    qc:
        The QC result; its metrics cover every input sample.
    batch:
        Batch of each kept sample (one colour each).
    before, after:
        Kept samples × features, before and after the batch step (or the pipeline).
    titles:
        Captions of the two PCA panels.
    summary:
        Extra facts for the HTML page (inputs, scale, steps, output file).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    kept = qc.kept.sample_ids
    metrics = qc.metrics.loc[kept]
    levels = list(dict.fromkeys(batch))
    colour = {b: plt.get_cmap("tab10")(i % 10) for i, b in enumerate(levels)}
    colours = [colour[b] for b in batch]
    flagged = np.array([s in {f.sample for f in qc.flagged} for s in kept])
    fig, axes = plt.subplots(2, 2, figsize=(12, 9), dpi=100)
    order = np.arange(len(kept))
    for ax, column, label in (
        (axes[0, 0], "library_size", "library size (sum of values)"),
        (axes[0, 1], "detected_genes", "detected genes (values > 0)"),
    ):
        ax.bar(order, metrics[column].to_numpy(), color=colours, width=1.0)
        ax.scatter(order[flagged], metrics[column].to_numpy()[flagged], marker="o",
                   facecolors="none", edgecolors="red", s=60, label="flagged")  # fmt: skip
        ax.set_title(label)
        ax.set_xlabel("sample")
    for ax, values, title in ((axes[1, 0], before, titles[0]), (axes[1, 1], after, titles[1])):
        scores = pcs(values)
        for b in levels:
            rows = np.array([x == b for x in batch])
            ax.scatter(scores[rows, 0], scores[rows, 1], s=14, color=colour[b], label=b)
        ax.set_title(title)
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
    axes[1, 1].legend(title="batch", fontsize=8, loc="best")
    if flagged.any():
        axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"QC: {len(kept)} samples kept, {len(qc.dropped)} dropped, "
                 f"{len(qc.flagged)} flagged")  # fmt: skip
    fig.tight_layout()
    png = folder / "qc_report.png"
    fig.savefig(png)
    plt.close(fig)
    page = folder / "qc_report.html"
    page.write_text(_html(qc, summary, base64.b64encode(png.read_bytes()).decode()))
    return png, page


def _html(qc: QCReport, summary: dict[str, Any], png64: str) -> str:
    def rows(items: Sequence[Any]) -> str:
        cells = "".join(
            f"<tr><td>{html.escape(i.sample)}</td><td>{html.escape('; '.join(i.reasons))}</td></tr>"
            for i in items
        )
        return cells or "<tr><td colspan=2>none</td></tr>"

    facts = html.escape(json.dumps(summary, indent=1, default=str))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in qc.notes)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>GeneXfer QC report</title>
<style>body{{font-family:sans-serif;max-width:1250px;margin:auto}}td{{padding:2px 8px}}
table{{border-collapse:collapse}}tr:nth-child(even){{background:#eee}}</style></head><body>
<h1>GeneXfer QC report</h1>
<pre>{facts}</pre>
<p>{qc.kept.shape[0]} samples kept of {qc.metrics.shape[0]}; {qc.filled_values} missing values
filled with the gene median; {len(qc.dropped_genes)} genes dropped (missing everywhere).</p>
<ul>{notes}</ul>
<img src="data:image/png;base64,{png64}" alt="QC plots" width="1200">
<h2>Dropped samples</h2><table>{rows(qc.dropped)}</table>
<h2>Flagged samples (kept)</h2><table>{rows(qc.flagged)}</table>
<h2>Per-sample metrics</h2>{qc.metrics.round(4).to_html()}
</body></html>
"""
