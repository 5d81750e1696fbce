"""The fine-tuning options: how much of the encoder learns, and how rows without a label are used.

`FinetuneOptions` names the strategy (``frozen``, ``partial``, ``gradual``, ``full``: see
`training.train.finetune`), the domain adaptation (`training.methods.adapt`) and the
semi-supervision (`training.methods.semisup`) with their settings, and the device; it refuses
combinations that cannot train. Every fine-tuning path takes one, and a fine-tuned version's card
records it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from contract.vocab import (
    ADAPTATIONS,
    SEMI_SUPERVISION,
    STRATEGIES,
    Adaptation,
    SemiSupervision,
    Strategy,
)
from training.nn.device import DEVICES
from training.train import defaults

__all__ = ["FinetuneOptions"]


@dataclass(frozen=True)
class FinetuneOptions:
    """How much of the encoder learns, and how rows without a label are used.

    Parameters
    ----------
    strategy:
        ``frozen``, ``partial``, ``gradual`` or ``full`` (see `training.train.finetune`).
    unfreeze_top:
        ``partial``: how many encoder linear layers, counted from the embedding, train.
    encoder_lr_scale:
        Encoder learning rate as a share of the head's (``partial``, ``gradual``, ``full``).
    adaptation:
        ``none``, ``dann`` (adversarial) or ``mmd``; needs a trainable encoder (not ``frozen``).
    adaptation_weight:
        λ: the reversed gradient's scale (dann) or the MMD term's weight.
    semi_supervised:
        ``none``, ``pseudo_label`` (classification only) or ``consistency``.
    confidence:
        Pseudo-labels only for unlabelled rows whose top probability reaches this.
    semi_weight:
        Weight of the unlabelled rows' term.
    min_epochs:
        No early stop, and no epoch kept as best, before this many epochs (per stage).
    device:
        ``cpu``, ``cuda`` or ``auto``; CUDA trains in float16 mixed precision.
    """

    strategy: Strategy = "frozen"
    unfreeze_top: int = 1
    encoder_lr_scale: float = 0.1
    adaptation: Adaptation = "none"
    adaptation_weight: float = defaults.ADAPTATION_WEIGHT
    semi_supervised: SemiSupervision = "none"
    confidence: float = defaults.CONFIDENCE
    semi_weight: float = defaults.SEMI_WEIGHT
    min_epochs: int = defaults.MIN_EPOCHS
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.unfreeze_top < 1 or not 0.0 < self.encoder_lr_scale <= 1.0:
            raise ValueError("unfreeze_top must be >= 1 and encoder_lr_scale in (0, 1]")
        if self.adaptation not in ADAPTATIONS:
            raise ValueError(f"adaptation must be one of {ADAPTATIONS}, got {self.adaptation!r}")
        if self.adaptation != "none" and self.strategy == "frozen":
            raise ValueError(
                f"adaptation {self.adaptation!r} aligns what the encoder outputs, so the encoder "
                "must train: use strategy partial, gradual or full, not frozen"
            )
        if self.semi_supervised not in SEMI_SUPERVISION:
            raise ValueError(
                f"semi_supervised must be one of {SEMI_SUPERVISION}, got {self.semi_supervised!r}"
            )
        for name in ("adaptation_weight", "semi_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.min_epochs < 0:
            raise ValueError(f"min_epochs must be >= 0, got {self.min_epochs}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
