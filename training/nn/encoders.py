"""Dense autoencoder over preprocessed expression; its encoder is what transfers to new data."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


def check_activation(activation: str) -> None:
    """ValueError unless `activation` names one of ACTIVATIONS."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")


@dataclass(frozen=True)
class EncoderShape:
    """What every autoencoder config has; each kind adds its own regulariser and its bounds.

    Parameters
    ----------
    n_genes:
        Input (and reconstruction) width: the gene panel size.
    hidden:
        Widths of the encoder's hidden layers; the decoder mirrors them.
    latent:
        Embedding width.
    dropout:
        Dropout after each hidden activation (training only).
    activation:
        One of ``relu``, ``gelu``, ``elu``, ``silu``.
    """

    n_genes: int
    hidden: tuple[int, ...] = (256,)
    latent: int = 64
    dropout: float = 0.1
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.n_genes < 1 or self.latent < 1 or any(h < 1 for h in self.hidden):
            raise ValueError("n_genes, latent and hidden widths must be positive")
        self.check()
        check_activation(self.activation)

    def check(self) -> None:
        """ValueError where this kind's own options are out of bounds."""


@dataclass(frozen=True)
class AutoencoderConfig(EncoderShape):
    """Shape of a DenseAutoencoder: the `EncoderShape` fields plus input dropout.

    Parameters
    ----------
    input_dropout:
        Dropout on the input itself, making it a denoising autoencoder (training only).
    """

    input_dropout: float = 0.0

    def check(self) -> None:
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.input_dropout < 1.0):
            raise ValueError("dropout rates must be in [0, 1)")


def mlp(
    widths: list[int], activation: str, dropout: float, input_dropout: float = 0.0
) -> list[nn.Module]:
    """Linear layers between consecutive widths; activation + dropout after all but the last.

    `input_dropout` > 0 puts a dropout on the input in front of the first layer.
    """
    layers: list[nn.Module] = [nn.Dropout(input_dropout)] if input_dropout > 0 else []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return layers


class DenseAutoencoder(nn.Module):
    """Encoder MLP to a linear latent code, and a mirrored decoder back to the genes."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.n_genes, *config.hidden, config.latent]
        self.encoder = nn.Sequential(
            *mlp(widths, config.activation, config.dropout, config.input_dropout)
        )
        self.decoder = nn.Sequential(*mlp(widths[::-1], config.activation, config.dropout))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding of preprocessed input, shape (batch, latent)."""
        out: torch.Tensor = self.encoder(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of preprocessed input, shape (batch, n_genes)."""
        out: torch.Tensor = self.decoder(self.encoder(x))
        return out
