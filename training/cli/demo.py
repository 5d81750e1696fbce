"""`genexfer train demo`: the pbmc68k-encoder and pbmc68k-celltype models under models/."""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from training.cli.shared import command, options
from training.nn.config import TrainConfig
from training.train import defaults

if TYPE_CHECKING:
    from training.publish.chosen import ChosenRun
    from training.publish.encoder import EncoderRun

ENCODER_NAME = "pbmc68k-encoder"
CLASSIFIER_NAME = "pbmc68k-celltype"
LABEL_COLUMN = "bulk_labels"
DATASET = "pbmc68k_reduced (scanpy.datasets.pbmc68k_reduced(), log-normalised .raw.X)"


NAME = "demo"
HELP = "reproduce the committed pbmc68k demo models"
DESCRIPTION = (
    "Train the demo models on scanpy's bundled pbmc68k_reduced (700 PBMCs, log-normalised "
    ".raw.X, labels 'bulk_labels'): a stratified 80/20 split, an encoder pretrained on "
    "the 80% only, a linear head fine-tuned on the frozen encoder, scores on the "
    "held-out 20%. Publishes new versions of pbmc68k-encoder and pbmc68k-celltype "
    "(the classifier's parent is that encoder). Takes seconds on a laptop CPU."
)


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `genexfer train demo`."""
    options.common(parser)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print where it published and how it scored."""
    result = command.guard(
        run_demo, args.models_dir, seed=args.seed, progress=command.progress(args)
    )
    if result is None:
        return 1
    scores = result.classifier.scores
    n_classes = len(result.classifier.labels)
    print(f"encoder     {result.encoder.folder}")
    print(f"classifier  {result.classifier.folder}  ({CLASSIFIER_NAME}, parent = encoder)")
    print(
        f"held-out balanced accuracy {scores['balanced_accuracy']:.3f}, "
        f"macro-F1 {scores['macro_f1']:.3f}, accuracy {scores['accuracy']:.3f} "
        f"on {result.classifier.n_test} held-out cells ({n_classes} classes, chance "
        f"{1 / n_classes:.3f}); {result.seconds:.1f} s in all"
    )
    return 0


@dataclass(frozen=True)
class DemoResult:
    """The two published models and the wall-clock time of the whole run."""

    encoder: EncoderRun
    classifier: ChosenRun
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
    from contract.card import InputScale, InputTransform
    from training.data.pbmc68k import load_pbmc68k_reduced
    from training.evaluation.splits import hold_out
    from training.nn.encoders import AutoencoderConfig
    from training.publish.chosen import choose_and_export
    from training.publish.encoder import pretrain_and_export

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
        # pbmc68k_reduced's .raw.X is log1p of counts scaled to 10,000 per cell (expm1 of each
        # cell's values is a multiple of 1e4 / its library size): counts made alike are welcome
        input_transforms=[InputTransform.library_size_log1p(1e4)],
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
    # the frozen head is what the demo shows; it is compared with logistic regression on the
    # same inner folds, and its card says so when the baseline scores higher
    classifier = choose_and_export(
        dataset,
        strategy="frozen",
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
