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


@dataclass(frozen=True)
class AutoencoderConfig:
    """Shape of a DenseAutoencoder.

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
    input_dropout:
        Dropout on the input itself, making it a denoising autoencoder (training only).
    activation:
        One of ``relu``, ``gelu``, ``elu``, ``silu``.
    """

    n_genes: int
    hidden: tuple[int, ...] = (256,)
    latent: int = 64
    dropout: float = 0.1
    input_dropout: float = 0.0
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.n_genes < 1 or self.latent < 1 or any(h < 1 for h in self.hidden):
            raise ValueError("n_genes, latent and hidden widths must be positive")
        if not (0.0 <= self.dropout < 1.0 and 0.0 <= self.input_dropout < 1.0):
            raise ValueError("dropout rates must be in [0, 1)")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}")


def mlp(widths: list[int], activation: str, dropout: float) -> list[nn.Module]:
    """Linear layers between consecutive widths; activation + dropout after all but the last."""
    layers: list[nn.Module] = []
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
        head = [nn.Dropout(config.input_dropout)] if config.input_dropout > 0 else []
        self.encoder = nn.Sequential(*head, *mlp(widths, config.activation, config.dropout))
        self.decoder = nn.Sequential(*mlp(widths[::-1], config.activation, config.dropout))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding of preprocessed input, shape (batch, latent)."""
        out: torch.Tensor = self.encoder(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of preprocessed input, shape (batch, n_genes)."""
        out: torch.Tensor = self.decoder(self.encoder(x))
        return out
