"""What an evaluation protocol is asked to run: `ProtocolConfig` (classes, splits, models)."""

from __future__ import annotations

from dataclasses import dataclass

from training.evaluation.baselines import baseline_names
from training.nn.config import TrainConfig
from training.preprocess.select import GeneSelection
from training.protocol.methods import method, with_references
from training.protocol.pretraining import EncoderShape
from training.train import defaults


@dataclass(frozen=True)
class ProtocolConfig:
    """What the evaluation runs.

    Parameters
    ----------
    label_column:
        obs column with the classes.
    min_cells:
        Only classes with at least this many rows are evaluated.
    shots:
        Labelled rows per class of the few-shot curves.
    repeats:
        Seeded repeats per k (each with its own test split and pretraining); with ``lobo``,
        how many times each batch is held out (other seeds each time).
    folds:
        Folds of the stratified cross-validation (0 skips it).
    test_fraction:
        Share of each evaluated class held out as the few-shot test set.
    encoder, hidden, latent:
        The pretrained encoder's kind (``ae``, ``dae``, ``vae``) and widths.
    methods:
        Registered methods to run (`training.protocol.methods`); a method's reference (the
        same without rows without a label) is added when missing.
    baselines:
        scikit-learn baselines to run.
    protocol:
        ``few_shot`` (few-shot curves and CV) or ``lobo`` (leave one batch out).
    batch_column:
        obs column naming each row's batch (``lobo``; adaptation aligns these batches).
    input_scale:
        The scale of the matrices' values.
    seed:
        Seeds every split, draw and training.
    select:
        Optional gene selection, fitted with the preprocessing.
    device:
        Where the networks train.
    """

    label_column: str = "bulk_labels"
    min_cells: int = 30
    shots: tuple[int, ...] = (5, 10, 25)
    repeats: int = 10
    folds: int = 5
    test_fraction: float = 0.2
    encoder: str = "dae"
    hidden: tuple[int, ...] = defaults.ENCODER_HIDDEN
    latent: int = defaults.ENCODER_LATENT
    methods: tuple[str, ...] = ("frozen", "scratch")
    baselines: tuple[str, ...] = tuple(baseline_names("classification"))
    protocol: str = "few_shot"
    batch_column: str | None = None
    input_scale: str = "log"
    pretrain: TrainConfig = defaults.PRETRAIN
    finetune: TrainConfig = defaults.FINETUNE
    seed: int = 0
    select: GeneSelection | None = None
    device: str = "cpu"
    explain: bool = True

    def __post_init__(self) -> None:
        for name in self.methods:
            method(name)  # ValueError for an unknown one
        if self.protocol not in ("few_shot", "lobo"):
            raise ValueError(f"protocol must be few_shot or lobo, got {self.protocol!r}")
        if self.protocol == "lobo" and not self.batch_column:
            raise ValueError("leave-one-batch-out needs a batch column")

    @property
    def shape(self) -> EncoderShape:
        """The encoder architecture."""
        return EncoderShape(self.encoder, self.hidden, self.latent)

    @property
    def models(self) -> tuple[str, ...]:
        """The methods run (references added), then the baselines."""
        return (*with_references(self.methods), *self.baselines)
