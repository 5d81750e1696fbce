"""What every model gets on one split: its encoder, the baselines' pipeline, the rows both ways.

The encoder is pretrained on the split's pool (never its withheld rows); the baselines'
preprocessing is fitted on the same pool; the rows without a label reach a method with their
labels hidden; a method that needs such rows is skipped, with a note, where a split has none.
"""

from __future__ import annotations

import dataclasses

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.preprocess.select import fit_pipeline
from training.protocol.config import ProtocolConfig
from training.protocol.designs import IntArray, Split
from training.protocol.methods import Fit, Inputs, Rows, baseline_fit, method, with_references
from training.protocol.pretraining import Pretrained, Pretraining
from training.train import defaults


def split_encoder(
    pretraining: Pretraining, pool: ExpressionMatrix, cfg: ProtocolConfig, index: int
) -> Pretrained:
    """The encoder of split `index`, pretrained (or loaded) for the rows of `pool`."""
    return pretraining.for_pool(
        pool,
        cfg.shape,
        cfg.pretrain,
        scale=cfg.input_scale,
        select=cfg.select,
        seed=cfg.seed + index,
    )


def baseline_pipeline(
    pretraining: Pretraining, pretrained: Pretrained, pool: ExpressionMatrix, cfg: ProtocolConfig
) -> PreprocessPipeline:
    """The baselines' preprocessing, fitted on `pool` on the target's own genes."""
    # pretraining on the pool fits the very pipeline the baselines would: share it
    if pretraining.kind == "target":
        return pretrained.pipeline
    return fit_pipeline(pool, cfg.input_scale, clip=defaults.CLIP, select=cfg.select)


def hide_labels(matrix: ExpressionMatrix, column: str) -> ExpressionMatrix:
    """The rows without their labels: what a method may learn from without a label."""
    obs = matrix.obs.drop(columns=[column], errors="ignore")
    return ExpressionMatrix(
        X=matrix.X, sample_ids=matrix.sample_ids, gene_ids=matrix.gene_ids, obs=obs
    )


def split_inputs(
    cfg: ProtocolConfig,
    split: Split,
    matrix: ExpressionMatrix,
    encoded: ExpressionMatrix,
    pretrained: Pretrained,
    plain: PreprocessPipeline,
    train_idx: IntArray,
    unl_idx: IntArray | None,
) -> Inputs:
    """One draw's `Inputs`: its labelled rows, the split's test rows, its rows without a label."""
    unlabelled = None
    if unl_idx is not None and len(unl_idx):
        unlabelled = hide_labels(encoded.take(unl_idx), cfg.label_column)
    return Inputs(
        classes=split.classes,
        label_column=cfg.label_column,
        encoded=Rows(
            pretrained.pipeline, encoded.take(train_idx), encoded.take(split.test), unlabelled
        ),
        plain=Rows(plain, matrix.take(train_idx), matrix.take(split.test), None),
        encoder=pretrained.encoder,
        latent=pretrained.latent,
        shape=cfg.shape,
        finetune=dataclasses.replace(cfg.finetune, seed=cfg.seed + split.index),
        domain_column=cfg.batch_column if split.protocol == "lobo" else None,
        device=cfg.device,
    )


def model_fits(
    cfg: ProtocolConfig, inputs: Inputs, split: Split, notes: list[str]
) -> dict[str, Fit]:
    """Model → its fit for these inputs: the methods (references added), then the baselines.

    A method that needs rows without a label is skipped where `inputs` has none; why is added
    to `notes` (once).
    """
    fits: dict[str, Fit] = {}
    for name in with_references(cfg.methods):
        m = method(name)
        if m.unlabelled and inputs.encoded.unlabelled is None:
            note = f"{name} skipped on the {split.protocol} splits: no rows without a label there"
            if note not in notes:
                notes.append(note)
            continue
        fits[name] = m.fit
    fits.update({name: baseline_fit(name) for name in cfg.baselines})
    return fits
