"""Writing a version folder's card: what a model is, its files' sha256, then atomic publication."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from contract import idmap
from contract.card import (
    CARD_FILE,
    ONNX_FILE,
    ExplainGraph,
    GenePanel,
    HeadGraph,
    InputTransform,
    Metric,
    ModelCard,
    ModelKind,
    ModelRef,
    ModelTask,
    Selection,
    TensorSpec,
    TrainingData,
    sha256_file,
)
from contract.modality import ModalityInput
from contract.preprocess.pipeline import PreprocessPipeline
from contract.preprocess.steps import Array
from training.export.onnx import INPUT_NAME
from training.export.store import publish


@dataclass(frozen=True)
class CardInfo:
    """What the card says about a model beyond its graph.

    Parameters
    ----------
    description:
        What the model is and what it was trained on, in plain words.
    training_data:
        Name, fingerprint, size and held-out sample ids of the training data.
    metrics:
        Measured results, each with its protocol.
    extra:
        JSON-safe metadata saved in the checkpoint's config.json (training configs, history).
    job:
        The id of the service's fine-tuning job publishing this version, if any: the card
        names it, and publication keeps one version per job (`training.export.store.publish`).
    selection:
        The inner-CV comparison the model won or was compared in (`training.choice`).
    """

    description: str
    training_data: TrainingData
    metrics: Sequence[Metric] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    job: str | None = None
    selection: Selection | None = None


def publish_version(
    staging: Path,
    written: Sequence[Path],
    *,
    name: str,
    kind: ModelKind,
    pipeline: PreprocessPipeline,
    outputs: list[TensorSpec],
    info: CardInfo,
    labels: list[str] | None = None,
    parent: ModelRef | None = None,
    head: HeadGraph | None = None,
    extra_versions: Mapping[str, str] | None = None,
    input_transforms: Sequence[InputTransform] | None = None,
    explain: ExplainGraph | None = None,
    tasks: Sequence[ModelTask] = (),
    modalities: Sequence[ModalityInput] | None = None,
) -> Path:
    """Save the preprocessing, hash the staged files, write their card and publish the folder.

    Parameters
    ----------
    staging:
        The staging folder (from `staging_folder`) holding the version's files.
    written:
        Those files; each is listed with its sha256 in the card, with the preprocessing's.
    name, kind, outputs, labels, parent, head:
        As the card has them.
    pipeline:
        The fitted preprocessing the graph starts with (panel, input scale, fill values); its
        files (preprocess.json, preprocess.npz, which the card names) are written here.
    info:
        Card text, training data and metrics.
    extra_versions:
        Library versions beyond the common ones (e.g. scikit-learn for a baseline).
    input_transforms:
        Other scales the model accepts and the steps that made its input scale from each (how
        the training data were made); None: the parent's, for a head on an encoder (same
        input, same preprocessing), else none.
    tasks:
        A multi-task model's tasks (kind ``multitask``); none for every other kind.
    modalities:
        A multi-omics model's added inputs, after ``expression`` (`contract.modality`).
    """
    transforms = (
        list(input_transforms)
        if input_transforms is not None
        else parent_transforms(staging.parent.parent, parent)
    )
    added = list(modalities or [])
    written = [*written, *pipeline.save(staging)]
    for path in written:
        path.chmod(0o644)  # some writers create 0600 files; the server may run as another user
    files = {p.name: sha256_file(p) for p in sorted(written)}

    def write_card(version: int) -> None:
        ModelCard(
            name=name,
            version=version,
            kind=kind,
            description=info.description,
            created_at=datetime.now(UTC),
            input_scale=pipeline.input_scale,
            input_transforms=transforms,
            panel=GenePanel(
                ids=pipeline.gene_ids,
                fill_values=pipeline.fill_values,
                species=idmap.species(pipeline.gene_ids),
                id_type=idmap.id_type(pipeline.gene_ids),
            ),
            inputs=[
                TensorSpec(name=INPUT_NAME, shape=["batch", pipeline.n_genes]),
                *(TensorSpec(name=m.name, shape=["batch", m.n_features]) for m in added),
            ],
            outputs=outputs,
            labels=labels,
            tasks=list(tasks),
            head=head,
            explain=explain,
            preprocessing=pipeline.to_card(),
            training_data=info.training_data,
            metrics=list(info.metrics),
            parent=parent,
            job=info.job,
            selection=info.selection,
            modalities=added or None,
            library_versions={**library_versions(), **(extra_versions or {})},
            files=files,
        ).write(staging)

    return publish(staging, write_card, job=info.job)


def parent_transforms(models_dir: Path, parent: ModelRef | None) -> list[InputTransform]:
    """The input transforms of a head's parent encoder, read from its card in `models_dir`
    (checked to be the very graph by its sha256); none when it is not there."""
    if parent is None:
        return []
    folder = models_dir / parent.name / str(parent.version)
    if not (folder / CARD_FILE).is_file():
        return []
    card = ModelCard.read(folder)
    return list(card.input_transforms) if card.files.get(ONNX_FILE) == parent.sha256 else []


def parity_inputs(pipeline: PreprocessPipeline, reference: Array) -> list[Array]:
    """Random plausible inputs, real ones and a batch of one, for the ONNX parity check."""
    if reference.ndim != 2 or reference.shape[1] != pipeline.n_genes or len(reference) == 0:
        raise ValueError(f"reference must be (n ≥ 1, {pipeline.n_genes}), got {reference.shape}")
    rng = np.random.default_rng(0)
    # random but plausible input-scale values: non-negative, sparse, around the training means
    shape = (16, pipeline.n_genes)
    dense = rng.exponential(pipeline.input_mean + 0.1, size=shape) * (rng.random(shape) < 0.5)
    return [
        dense.astype(np.float32),
        np.ascontiguousarray(reference[:64], dtype=np.float32),
        np.ascontiguousarray(reference[:1], dtype=np.float32),  # a batch of one: dynamic axis
    ]


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shaped the exported files."""
    versions = {"numpy": np.__version__}
    for dist in ("torch", "onnx", "onnxruntime", "onnxscript", "safetensors", "genexfer"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions
