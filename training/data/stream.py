"""Row sources that read expression from disk one chunk at a time (bounded memory).

A source is a list of chunks (row ranges); a pass over it visits the chunks in a seeded order and
shuffles rows within each chunk, so at most one chunk (plus the one being prefetched) is in
memory. Chunks are the file's natural units: Parquet row groups, fixed row blocks of a
memory-mapped ``.npy`` or of a backed ``.h5ad``.
"""

from __future__ import annotations

import itertools
import mmap
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from contract.matrix import ExpressionMatrix

Block = npt.NDArray[np.float32]
DEFAULT_CHUNK_ROWS = 4096


class RowSource(Protocol):
    """Samples × genes on disk (or in memory), read chunk by chunk."""

    gene_ids: list[str]

    @property
    def n_rows(self) -> int: ...

    @property
    def chunks(self) -> list[tuple[int, int]]: ...

    def read(self, start: int, stop: int) -> Block: ...


def _blocks(n_rows: int, chunk_rows: int) -> list[tuple[int, int]]:
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    return [(s, min(s + chunk_rows, n_rows)) for s in range(0, n_rows, chunk_rows)]


class ArraySource:
    """An in-memory (or memory-mapped) float array split into fixed row blocks."""

    def __init__(
        self, X: npt.NDArray[Any], gene_ids: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS
    ) -> None:
        if X.ndim != 2 or X.shape[1] != len(gene_ids):
            raise ValueError(f"X has shape {X.shape} for {len(gene_ids)} gene ids")
        self.X, self.gene_ids = X, list(gene_ids)
        self._chunks = _blocks(X.shape[0], chunk_rows)

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    @property
    def chunks(self) -> list[tuple[int, int]]:
        return self._chunks

    def read(self, start: int, stop: int) -> Block:
        """Rows [start, stop) as a float32 array in memory."""
        block = np.array(self.X[start:stop], dtype=np.float32, order="C")
        if isinstance(self.X, np.memmap):
            _release(self.X, start, stop)
        return block


def _release(X: np.memmap[Any, Any], start: int, stop: int) -> None:
    # pages of a read-only file mapping stay in the process's resident set until the kernel
    # needs them; dropping them after the copy keeps the RSS at about one chunk, not the file
    mm = getattr(X, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise"):
        return
    row = X.strides[0]
    first = X.offset % mmap.ALLOCATIONGRANULARITY + start * row
    aligned = first - first % mmap.PAGESIZE
    mm.madvise(mmap.MADV_DONTNEED, aligned, min(len(mm), first + (stop - start) * row) - aligned)


def npy_source(
    path: Path, gene_ids: Sequence[str] | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> ArraySource:
    """A memory-mapped 2-D ``.npy`` (never unpickled); gene ids from the argument or
    ``<path>.genes.txt`` (one per line)."""
    try:
        X = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npy array ({exc})") from exc
    if X.ndim != 2 or X.dtype.kind not in "fiu":
        raise ValueError(f"{path}: expected a 2-D numeric array, got {X.dtype} {X.shape}")
    if gene_ids is None:
        sidecar = path.with_name(path.name + ".genes.txt")
        if not sidecar.is_file():
            raise ValueError(f"{path}: gene ids missing; write them to {sidecar.name}")
        gene_ids = sidecar.read_text().split()
    return ArraySource(X, gene_ids, chunk_rows)


class ParquetSource:
    """Samples-as-rows Parquet (one column per gene, optional id column); chunks = row groups."""

    def __init__(self, path: Path, id_column: str | None = None) -> None:
        import pyarrow.parquet as pq  # deferred: only this format needs it

        try:
            self._file = pq.ParquetFile(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable Parquet file ({exc})") from exc
        names = list(self._file.schema_arrow.names)
        if id_column is not None and id_column not in names:
            raise ValueError(f"{path}: no id column {id_column!r}")
        self.gene_ids = [n for n in names if n != id_column]
        meta = self._file.metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self._chunks = [(int(a), int(b)) for a, b in itertools.pairwise(starts)]
        self._group = {c: i for i, c in enumerate(self._chunks)}
        self.path = path

    @property
    def n_rows(self) -> int:
        return self._chunks[-1][1] if self._chunks else 0

    @property
    def chunks(self) -> list[tuple[int, int]]:
        return self._chunks

    def read(self, start: int, stop: int) -> Block:
        """One row group's gene columns as float32 (start/stop must be a chunk)."""
        if (start, stop) not in self._group:
            raise ValueError(f"{self.path}: rows [{start}, {stop}) are not a row group")
        table = self._file.read_row_group(self._group[(start, stop)], columns=self.gene_ids)
        if table.num_rows and any(col.null_count for col in table.columns):
            raise ValueError(f"{self.path}: missing values in rows [{start}, {stop})")
        return np.ascontiguousarray(
            np.column_stack([c.to_numpy() for c in table.columns]), dtype=np.float32
        )


class H5adSource:
    """An ``.h5ad`` opened backed (read-only), so only the rows asked for leave the disk."""

    def __init__(self, path: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> None:
        import anndata  # deferred: heavy import

        try:
            self._adata = anndata.read_h5ad(path, backed="r")
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a readable .h5ad file ({exc})") from exc
        self.gene_ids = [str(g) for g in self._adata.var_names]
        self._chunks = _blocks(self._adata.n_obs, chunk_rows)

    @property
    def n_rows(self) -> int:
        return int(self._adata.n_obs)

    @property
    def chunks(self) -> list[tuple[int, int]]:
        return self._chunks

    def read(self, start: int, stop: int) -> Block:
        """Rows [start, stop) of X, densified."""
        block = self._adata.X[start:stop]
        dense = block.toarray() if hasattr(block, "toarray") else np.asarray(block)
        return np.ascontiguousarray(dense, dtype=np.float32)


def open_source(path: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> RowSource:
    """The streaming source for a ``.npy``, ``.parquet`` or ``.h5ad`` file."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return npy_source(path, chunk_rows=chunk_rows)
    if suffix in (".parquet", ".pq"):
        return ParquetSource(path)
    if suffix == ".h5ad":
        return H5adSource(path, chunk_rows)
    raise ValueError(
        f"{path}: cannot stream {suffix or 'a file without suffix'!r}; use .npy, .parquet or .h5ad"
    )


def sample_rows(source: RowSource, n: int, seed: int, chunks: Sequence[int]) -> ExpressionMatrix:
    """Up to `n` rows drawn from whole random chunks among `chunks` (to fit preprocessing on)."""
    rng = np.random.default_rng(seed)
    blocks: list[Block] = []
    rows = 0
    for i in rng.permutation(np.asarray(chunks)):
        start, stop = source.chunks[int(i)]
        blocks.append(source.read(start, stop))
        rows += stop - start
        if rows >= n:
            break
    X = np.concatenate(blocks)[:n]
    return ExpressionMatrix(
        X=X, sample_ids=[f"row{i}" for i in range(len(X))], gene_ids=list(source.gene_ids)
    )
