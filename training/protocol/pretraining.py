"""Where the evaluated encoder comes from: the target's own pool, a source, or a published encoder.

The protocol asks for one encoder per split, giving the split's *pool* (the target rows that are
not test rows). What the encoder may see is fixed here, once for every split:

- ``target``: preprocessing and encoder are fitted on the pool, without labels;
- ``source``: on the source data only, once (the pool is never seen);
- ``source+target``: on the source plus the pool's rows, without labels (the "target
  unlabelled" setting), per split;
- ``published``: a published encoder's own weights and preprocessing, as they are.

The target is then aligned to the encoder's gene panel (missing genes filled with the encoder's
training means), and the share of panel genes the target has is reported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from contract.align import align_matrix
from contract.card import ModelCard
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.nn.config import TrainConfig
from training.nn.encoders import AutoencoderConfig
from training.nn.variants import (
    AnyAutoencoderConfig,
    DenoisingAutoencoderConfig,
    VariationalAutoencoderConfig,
)
from training.preprocess.select import GeneSelection, fit_pipeline, output_width
from training.train import defaults
from training.train.apply import stack_rows
from training.train.loop import History
from training.train.pretrain import pretrain

Kind = Literal["target", "source", "source+target", "published"]


@dataclass(frozen=True)
class EncoderShape:
    """The self-supervised encoder the protocol pretrains (and the scratch network's shape)."""

    kind: str = "dae"
    hidden: tuple[int, ...] = defaults.ENCODER_HIDDEN
    latent: int = defaults.ENCODER_LATENT

    def config(self, n_genes: int) -> AnyAutoencoderConfig:
        """The autoencoder config for `n_genes` inputs."""
        common: dict[str, Any] = {"n_genes": n_genes, "hidden": self.hidden, "latent": self.latent}
        if self.kind == "vae":
            return VariationalAutoencoderConfig(**common, dropout=0.1, beta=1.0)
        if self.kind == "dae":
            return DenoisingAutoencoderConfig(**common, dropout=0.1, mask_rate=0.3)
        if self.kind == "ae":
            return AutoencoderConfig(**common, dropout=0.1)
        raise ValueError(f"encoder must be ae, dae or vae, got {self.kind!r}")


@dataclass(frozen=True)
class Pretrained:
    """An encoder, its preprocessing, and what it saw."""

    pipeline: PreprocessPipeline
    encoder: Any  # an nn.Module: the autoencoder's encoder half
    latent: int
    history: History | None
    n_rows: int


@dataclass
class Pretraining:
    """How each split's encoder is made (see the module docstring).

    Parameters
    ----------
    kind:
        ``target``, ``source``, ``source+target`` or ``published``.
    source:
        The source data (``source`` and ``source+target``), on the target's input scale.
    source_name:
        What to call the source in the report.
    folder:
        The published encoder's version folder (``published``).
    """

    kind: Kind = "target"
    source: ExpressionMatrix | None = None
    source_name: str = "source"
    folder: Path | None = None
    _fixed: Pretrained | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind in ("source", "source+target") and self.source is None:
            raise ValueError(f"pretraining on {self.kind!r} needs a source matrix")
        if self.kind == "published" and self.folder is None:
            raise ValueError("a published encoder needs its version folder")
        if self.kind not in ("target", "source", "source+target", "published"):
            raise ValueError(f"unknown pretraining {self.kind!r}")

    @classmethod
    def published(cls, folder: Path) -> Pretraining:
        """A published encoder's version folder, used as it is."""
        return cls("published", folder=folder)

    @property
    def sees_target(self) -> bool:
        """Whether pretraining sees the target's (non-test) rows."""
        return self.kind in ("target", "source+target")

    def describe(self) -> str:
        """What the encoder was pretrained on, for the report's table."""
        if self.kind == "target":
            return "the target's non-test rows, without labels"
        if self.kind == "source":
            assert self.source is not None
            return f"{self.source_name} ({self.source.shape[0]} rows) only"
        if self.kind == "source+target":
            assert self.source is not None
            return (
                f"{self.source_name} ({self.source.shape[0]} rows) + the target's non-test rows, "
                "without labels"
            )
        assert self.folder is not None
        card = ModelCard.read(self.folder)
        data = card.training_data
        seen = "" if data is None else f": {data.name} ({data.n_samples} rows)"
        return f"published encoder {card.name}:{card.version}{seen}"

    def for_pool(
        self,
        pool: ExpressionMatrix,
        shape: EncoderShape,
        train: TrainConfig,
        *,
        scale: str,
        select: GeneSelection | None,
        seed: int,
    ) -> Pretrained:
        """The encoder of a split whose non-test target rows are `pool`."""
        if self.kind == "published":
            if self._fixed is None:
                self._fixed = _load(self.folder)  # type: ignore[arg-type]
            return self._fixed
        if self.kind == "source":
            if self._fixed is None:
                assert self.source is not None
                self._fixed = _fit(self.source, shape, train, scale, select, seed)
            return self._fixed
        if self.kind == "source+target":
            assert self.source is not None
            # the source's genes are the panel: the pool comes in aligned to them
            panel = PreprocessPipeline.fit(self.source, scale, clip=defaults.CLIP)
            aligned, _ = align_matrix(pool, panel.panel, panel.input_scale, min_overlap=0.0)
            # ids may repeat across the two (the same naming scheme): only the rows matter here
            rows = stack_rows(_renamed(self.source, "source"), _renamed(aligned, "target"))
            return _fit(rows, shape, train, scale, select, seed)
        return _fit(pool, shape, train, scale, select, seed)


def _fit(
    rows: ExpressionMatrix,
    shape: EncoderShape,
    train: TrainConfig,
    scale: str,
    select: GeneSelection | None,
    seed: int,
) -> Pretrained:
    pipeline = fit_pipeline(rows, scale, clip=defaults.CLIP, select=select)
    cfg = dataclasses.replace(train, seed=seed)
    model, history = pretrain(
        rows, pipeline, shape.config(output_width(pipeline)), cfg, progress=False
    )
    return Pretrained(pipeline, model.encoder, shape.latent, history, rows.shape[0])


def _renamed(matrix: ExpressionMatrix, prefix: str) -> ExpressionMatrix:
    ids = [f"{prefix}:{s}" for s in matrix.sample_ids]
    obs = matrix.obs.set_axis(ids)
    return ExpressionMatrix(X=matrix.X, sample_ids=ids, gene_ids=matrix.gene_ids, obs=obs)


def _load(folder: Path) -> Pretrained:
    from training.publish.parent import load_autoencoder

    autoencoder = load_autoencoder(folder)
    card = ModelCard.read(folder)
    rows = 0 if card.training_data is None else card.training_data.n_samples
    pipeline = PreprocessPipeline.load(folder)
    return Pretrained(pipeline, autoencoder.encoder, autoencoder.config.latent, None, rows)


def align_to(matrix: ExpressionMatrix, pretrained: Pretrained) -> tuple[ExpressionMatrix, float]:
    """`matrix` in the encoder's panel order, and the share of panel genes it has."""
    pipeline = pretrained.pipeline
    if matrix.gene_ids == pipeline.gene_ids:
        return matrix, 1.0
    aligned, done = align_matrix(matrix, pipeline.panel, pipeline.input_scale)
    return aligned, 1 - len(done.alignment.missing_genes) / pipeline.n_genes
