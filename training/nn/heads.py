"""Small heads that sit on an encoder's embedding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.nn.encoders import ACTIVATIONS, mlp


@dataclass(frozen=True)
class ClassifierHeadConfig:
    """Shape of a ClassifierHead.

    Parameters
    ----------
    n_in:
        Embedding width (the encoder's latent size).
    n_classes:
        Number of labels; the head outputs one logit each.
    hidden:
        Hidden layer widths; empty gives a linear (softmax-regression) head.
    dropout:
        Dropout on the embedding and after each hidden activation (training only).
    activation:
        Hidden activation: ``relu``, ``gelu``, ``elu`` or ``silu``.
    """

    n_in: int
    n_classes: int
    hidden: tuple[int, ...] = ()
    dropout: float = 0.0
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.n_in < 1 or self.n_classes < 2 or any(h < 1 for h in self.hidden):
            raise ValueError("n_in and hidden widths must be positive and n_classes at least 2")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")


class ClassifierHead(nn.Module):
    """MLP (or linear map) from an embedding to class logits."""

    def __init__(self, config: ClassifierHeadConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.n_in, *config.hidden, config.n_classes]
        first = [nn.Dropout(config.dropout)] if config.dropout > 0 else []
        self.layers = nn.Sequential(*first, *mlp(widths, config.activation, config.dropout))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Logits, shape (batch, n_classes)."""
        out: torch.Tensor = self.layers(z)
        return out


@dataclass(frozen=True)
class RegressorHeadConfig:
    """Shape of a RegressorHead.

    Parameters
    ----------
    n_in:
        Embedding width (the encoder's latent size).
    n_targets:
        Number of continuous outputs.
    hidden:
        Hidden layer widths; empty gives a linear head.
    dropout:
        Dropout on the embedding and after each hidden activation (training only).
    activation:
        Hidden activation: ``relu``, ``gelu``, ``elu`` or ``silu``.
    """

    n_in: int
    n_targets: int = 1
    hidden: tuple[int, ...] = ()
    dropout: float = 0.0
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.n_in < 1 or self.n_targets < 1 or any(h < 1 for h in self.hidden):
            raise ValueError("n_in, n_targets and hidden widths must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")


class RegressorHead(nn.Module):
    """MLP (or linear map) from an embedding to continuous targets (standardised scale)."""

    def __init__(self, config: RegressorHeadConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.n_in, *config.hidden, config.n_targets]
        first = [nn.Dropout(config.dropout)] if config.dropout > 0 else []
        self.layers = nn.Sequential(*first, *mlp(widths, config.activation, config.dropout))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Predictions, shape (batch, n_targets)."""
        out: torch.Tensor = self.layers(z)
        return out
