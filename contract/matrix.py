"""ExpressionMatrix: the one in-memory shape of expression data in training (samples × genes)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd


@dataclass(frozen=True)
class ExpressionMatrix:
    """A float32 samples × genes matrix with its sample ids, gene ids and per-sample metadata.

    Parameters
    ----------
    X:
        Dense float32 array of shape (n_samples, n_genes).
    sample_ids:
        One unique id per row.
    gene_ids:
        One unique id per column.
    obs:
        Per-sample metadata (labels, batch, ...), indexed by `sample_ids`.
    """

    X: npt.NDArray[np.float32]
    sample_ids: list[str]
    gene_ids: list[str]
    obs: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __post_init__(self) -> None:
        if self.X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {self.X.shape}")
        if self.X.dtype != np.float32:
            object.__setattr__(self, "X", np.ascontiguousarray(self.X, dtype=np.float32))
        n, g = self.X.shape
        if len(self.sample_ids) != n or len(self.gene_ids) != g:
            raise ValueError(
                f"X is {n}×{g} but there are {len(self.sample_ids)} sample ids "
                f"and {len(self.gene_ids)} gene ids"
            )
        for kind, ids in (("sample", self.sample_ids), ("gene", self.gene_ids)):
            dupes = pd.Index(ids)[pd.Index(ids).duplicated()].unique().tolist()
            if dupes:
                raise ValueError(f"duplicate {kind} ids: {dupes[:20]}")
        if self.obs.empty:
            object.__setattr__(self, "obs", pd.DataFrame(index=pd.Index(self.sample_ids)))
        elif list(self.obs.index.astype(str)) != self.sample_ids:
            raise ValueError("obs must be indexed by sample_ids, in the same order")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.X.shape[0], self.X.shape[1])

    def labels(self, column: str) -> list[str]:
        """The values of an obs column as strings, one per sample."""
        if column not in self.obs.columns:
            raise KeyError(f"no obs column {column!r}; have {list(self.obs.columns)}")
        return [str(v) for v in self.obs[column].tolist()]

    def take(self, rows: npt.ArrayLike) -> ExpressionMatrix:
        """A new matrix with the given rows (indices or boolean mask)."""
        idx = np.arange(self.shape[0])[np.asarray(rows)]
        return ExpressionMatrix(
            X=self.X[idx],
            sample_ids=[self.sample_ids[i] for i in idx],
            gene_ids=list(self.gene_ids),
            obs=self.obs.iloc[idx],
        )

    def fingerprint(self) -> str:
        """sha256 over the values, the sample ids and the gene ids."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.X).tobytes())
        digest.update("\x00".join(self.sample_ids).encode())
        digest.update(b"\x01")
        digest.update("\x00".join(self.gene_ids).encode())
        return digest.hexdigest()
