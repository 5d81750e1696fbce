"""The demo: the pbmc68k-encoder and pbmc68k-celltype models committed under models/."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from app.inference.card import InputScale
from training import defaults
from training.config import TrainConfig
from training.data.readers import load_pbmc68k_reduced
from training.nn.encoders import AutoencoderConfig
from training.tuning import HeadRun, finetune_and_export
from training.workflows import EncoderRun, hold_out, pretrain_and_export

ENCODER_NAME = "pbmc68k-encoder"
CLASSIFIER_NAME = "pbmc68k-celltype"
LABEL_COLUMN = "bulk_labels"
DATASET = "pbmc68k_reduced (scanpy.datasets.pbmc68k_reduced(), log-normalised .raw.X)"


@dataclass(frozen=True)
class DemoResult:
    """The two published models and the wall-clock time of the whole run."""

    encoder: EncoderRun
    classifier: HeadRun
    seconds: float


def run_demo(
    models_dir: Path,
    *,
    seed: int = 0,
    pretrain_cfg: TrainConfig | None = None,
    finetune_cfg: TrainConfig | None = None,
    progress: bool | None = None,
) -> DemoResult:
    """Train and publish the demo encoder and cell-type classifier on pbmc68k_reduced.

    Parameters
    ----------
    models_dir:
        Model store to publish into (new versions of both names).
    seed:
        Seeds the 80/20 stratified split and both trainings; 0 reproduces the committed models.
    pretrain_cfg, finetune_cfg:
        Override the default optimisation settings (tests use shorter runs); their seeds are
        replaced by `seed`.
    progress:
        Progress bars: ``True``/``False``, or ``None`` for "only on a terminal".
    """
    start = time.perf_counter()
    matrix = load_pbmc68k_reduced()
    dataset = hold_out(
        DATASET, matrix, test_fraction=defaults.TEST_FRACTION, seed=seed, stratify_by=LABEL_COLUMN
    )
    n_train, n_genes = dataset.train.shape
    pre = dataclasses.replace(pretrain_cfg or defaults.PRETRAIN, seed=seed)
    fine = dataclasses.replace(finetune_cfg or defaults.FINETUNE, seed=seed)
    model_cfg = AutoencoderConfig(
        n_genes=n_genes,
        hidden=defaults.ENCODER_HIDDEN,
        latent=defaults.ENCODER_LATENT,
        dropout=defaults.ENCODER_DROPOUT,
        input_dropout=defaults.ENCODER_INPUT_DROPOUT,
        activation=defaults.ACTIVATION,
    )
    shape = " → ".join(str(w) for w in (n_genes, *model_cfg.hidden, model_cfg.latent))
    encoder = pretrain_and_export(
        dataset,
        input_scale=InputScale.log,
        model_cfg=model_cfg,
        train_cfg=pre,
        name=ENCODER_NAME,
        models_dir=models_dir,
        description=(
            f"Demo encoder: a denoising dense autoencoder ({shape}) pretrained to reconstruct "
            f"standardised log-normalised expression of {n_train} peripheral blood mononuclear "
            f"cells, the stratified 80% training split of scanpy's bundled pbmc68k_reduced "
            f"(700 cells, {n_genes} highly variable genes, .raw.X). Far too little data for a "
            "general-purpose encoder; it exists to exercise the pipeline end to end."
        ),
        clip=defaults.CLIP,
        progress=progress,
    )
    classifier = finetune_and_export(
        dataset,
        encoder_folder=encoder.folder,
        label_column=LABEL_COLUMN,
        head_hidden=defaults.HEAD_HIDDEN,
        head_dropout=defaults.HEAD_DROPOUT,
        train_cfg=fine,
        name=CLASSIFIER_NAME,
        models_dir=models_dir,
        description=(
            f"Demo classifier of the 10 'bulk_labels' cell types of pbmc68k_reduced: a linear "
            f"head on the frozen {ENCODER_NAME} embedding, trained with class-weighted "
            f"cross-entropy on the same {n_train} training cells. The labels come from bulk "
            "sorting and are noisy (about a third of the cells are 'Dendritic'); some classes "
            "have only a handful of cells, so the held-out scores are rough. Not for real use."
        ),
        progress=progress,
    )
    return DemoResult(encoder, classifier, time.perf_counter() - start)
