"""Datasets: parse an upload, store it under the data directory, describe it, delete it safely."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.codecs import datasets as dataset_io
from app.codecs.datasets import ParsedDataset
from app.db import repository
from app.db.repository import audit
from app.db.repository import datasets as repo
from app.db.repository import jobs as jobs_repo
from app.db.repository.audit import Actor
from app.db.repository.tenancy import Tenancy
from app.db.tables import Dataset
from app.errors import Conflict, InvalidRequest, NotFound
from app.inference.registry import ModelRegistry
from app.inference.routing import Viewer
from contract.align import MAX_LISTED, match
from contract.card import ModelKind
from contract.errors import DataError
from contract.genes import harmonise


def parse_upload(
    *,
    data: bytes,
    filename: str,
    fmt: str | None,
    label_columns: list[str] | None,
    labels: bytes | None,
    labels_filename: str | None,
    max_values: int,
) -> tuple[ParsedDataset, str]:
    """The checked dataset and the format it was read as."""
    fmt = fmt or dataset_io.guess_format(filename)
    if fmt not in dataset_io.FORMATS:
        raise InvalidRequest(f"format must be one of {dataset_io.FORMATS}, got {fmt!r}")
    if fmt == "h5ad":
        parsed = dataset_io.read_h5ad(data, max_values)
    else:
        parsed = dataset_io.read_table(data, fmt, filename, label_columns, max_values=max_values)
    if labels is not None:
        ids, columns = dataset_io.read_labels(labels, labels_filename or "labels.csv")
        parsed = dataset_io.attach_labels(parsed, ids, columns)
    return parsed, fmt


def gene_overlap(
    parsed: ParsedDataset, registry: ModelRegistry, viewer: Viewer
) -> list[dict[str, Any]]:
    """How many of each loaded encoder's panel genes the dataset has: by name (ids, aliases),
    through the human gene table, and which names were ambiguous (as a job will align them)."""
    out = []
    genes = harmonise(np.empty((0, len(parsed.gene_ids)), np.float32), parsed.gene_ids, "log")
    for model in registry.models(viewer=viewer):
        if model.card.kind is not ModelKind.encoder:
            continue
        size = len(model.card.panel.ids)
        try:
            found = match(model.index, genes.genes)
        except DataError as exc:  # two names of one panel gene: a job on it would stop here
            out.append({"model": model.card.name, "version": model.card.version, "error": str(exc)})
            continue
        out.append(
            {
                "model": model.card.name,
                "version": model.card.version,
                "matched": found.matched,
                "panel_size": size,
                "fraction": found.matched / size,
                "matched_directly": found.direct,
                "matched_via_table": found.via_table,
                "ambiguous_genes": found.ambiguous[:MAX_LISTED],
                "n_ambiguous": len(found.ambiguous),
            }
        )
    return out


def store(
    session: Session,
    *,
    parsed: ParsedDataset,
    name: str,
    fmt: str,
    sha256: str,
    data_dir: Path,
    registry: ModelRegistry,
    viewer: Viewer,
    actor: Actor,
) -> Dataset:
    """Write the npz, and its row in the actor's tenant with its audit row."""
    assert actor.tenant is not None  # routes that upload require a key
    folder = data_dir / "datasets"
    folder.mkdir(parents=True, exist_ok=True)
    dataset_id = uuid.uuid4()
    path = folder / f"{dataset_id}.npz"
    dataset_io.save_npz(parsed, path)
    row = Dataset(
        id=dataset_id,
        name=name,
        path=str(path),
        source_format=fmt,
        sha256=sha256,
        n_samples=len(parsed.sample_ids),
        n_genes=len(parsed.gene_ids),
        label_counts={c: dict(Counter(v).most_common()) for c, v in parsed.labels.items()},
        gene_overlap=gene_overlap(parsed, registry, viewer),
        api_key_id=actor.api_key_id,
        tenant=actor.tenant,
    )
    repository.add(session, row)  # the file is written first
    _audit(session, actor, "dataset.create", row, n_samples=row.n_samples, sha256=sha256)
    return row


def get(session: Session, dataset_id: uuid.UUID, *, tenancy: Tenancy) -> Dataset:
    """The dataset, or NotFound (also for another tenant's: existence does not leak)."""
    row = repo.get(session, dataset_id, tenancy=tenancy)
    if row is None:
        raise NotFound(f"no dataset {dataset_id}")
    return row


def listing(session: Session, *, tenancy: Tenancy, limit: int, offset: int) -> Sequence[Dataset]:
    """The tenancy's datasets, newest first."""
    return repo.listing(session, tenancy=tenancy, limit=limit, offset=offset)


def delete(session: Session, dataset_id: uuid.UUID, *, tenancy: Tenancy, actor: Actor) -> None:
    """Delete the row and its file, unless a queued or running job uses it."""
    row = get(session, dataset_id, tenancy=tenancy)
    active = jobs_repo.count_active_using(session, dataset_id)
    if active:
        raise Conflict(f"dataset {dataset_id} is used by {active} queued or running job(s)")
    _audit(session, actor, "dataset.delete", row, sha256=row.sha256)
    repo.delete(session, row, tenancy=tenancy)
    Path(row.path).unlink(missing_ok=True)


def _audit(session: Session, actor: Actor, action: str, row: Dataset, **detail: object) -> None:
    audit.record(
        session,
        actor,
        action,
        resource_type="dataset",
        resource_id=str(row.id),
        resource_tenant=row.tenant,
        name=row.name,
        **detail,
    )
