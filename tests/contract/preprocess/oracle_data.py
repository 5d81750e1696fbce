"""Real RNA-seq counts shipped inside inmoose (a test-only dependency): pasilla and airway."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest


def pasilla(n_genes: int | None = 2000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pasilla gene counts (7 samples × genes) and their annotation (condition, library type)."""
    inmoose = pytest.importorskip("inmoose")
    folder = Path(inmoose.__file__).parent / "data" / "pasilla"
    counts = pd.read_csv(folder / "pasilla_gene_counts.tsv", sep="\t", index_col=0).T
    annotation = pd.read_csv(folder / "pasilla_sample_annotation.csv", index_col=0)
    annotation.index = annotation.index.str.removesuffix("fb")
    annotation = annotation.loc[counts.index, ["condition", "type"]]
    # genes expressed in every sample, every k-th: the whole range of expression levels, so a
    # dispersion trend can be fitted on the subset
    expressed = counts.loc[:, (counts > 0).all(axis=0)]
    step = 1 if n_genes is None else max(1, expressed.shape[1] // n_genes)
    return expressed.iloc[:, ::step].iloc[:, :n_genes], annotation
