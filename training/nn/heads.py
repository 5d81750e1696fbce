"""Small heads that sit on an encoder's embedding."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.nn.encoders import check_activation, mlp


def check_head(dropout: float, activation: str) -> None:
    """The bounds every head shares: dropout in [0, 1) and a known activation."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError("dropout must be in [0, 1)")
    check_activation(activation)


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
        check_head(self.dropout, self.activation)

    @property
    def n_out(self) -> int:
        """The head's output width."""
        return self.n_classes


@dataclass(frozen=True)
class RegressorHeadConfig:
    """Shape of a RegressorHead.

    Parameters are those of `ClassifierHeadConfig`, with `n_targets` (default 1), the number of
    continuous outputs, in place of `n_classes`.
    """

    n_in: int
    n_targets: int = 1
    hidden: tuple[int, ...] = ()
    dropout: float = 0.0
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.n_in < 1 or self.n_targets < 1 or any(h < 1 for h in self.hidden):
            raise ValueError("n_in, n_targets and hidden widths must be positive")
        check_head(self.dropout, self.activation)

    @property
    def n_out(self) -> int:
        """The head's output width."""
        return self.n_targets


class MLPHead(nn.Module):
    """MLP (or linear map) from an embedding to `config.n_out` outputs, dropout on the input."""

    def __init__(self, config: ClassifierHeadConfig | RegressorHeadConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.n_in, *config.hidden, config.n_out]
        self.layers = nn.Sequential(*mlp(widths, config.activation, config.dropout, config.dropout))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Outputs, shape (batch, n_out)."""
        out: torch.Tensor = self.layers(z)
        return out


class ClassifierHead(MLPHead):
    """MLP (or linear map) from an embedding to class logits, shape (batch, n_classes)."""

    config: ClassifierHeadConfig

    def __init__(self, config: ClassifierHeadConfig) -> None:
        super().__init__(config)


class RegressorHead(MLPHead):
    """MLP (or linear map) from an embedding to continuous targets (standardised scale)."""

    config: RegressorHeadConfig

    def __init__(self, config: RegressorHeadConfig) -> None:
        super().__init__(config)
