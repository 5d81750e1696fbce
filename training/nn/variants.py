"""Denoising (masking-noise) and variational autoencoders, and what all encoders share."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from training.nn.encoders import AutoencoderConfig, DenseAutoencoder, EncoderShape, mlp


@dataclass(frozen=True)
class DenoisingAutoencoderConfig(EncoderShape):
    """Shape of a DenoisingAutoencoder: the `EncoderShape` fields plus the masking rate.

    Parameters
    ----------
    mask_rate:
        Share of input genes set to 0 (the standardised mean) per sample during training; the
        loss asks for the clean values back, of the masked genes and the others alike.
    """

    mask_rate: float = 0.3

    def check(self) -> None:
        if not (0.0 <= self.dropout < 1.0 and 0.0 < self.mask_rate < 1.0):
            raise ValueError("dropout must be in [0, 1) and mask_rate in (0, 1)")


class DenoisingAutoencoder(nn.Module):
    """Masks input genes at random while training and learns to restore them."""

    def __init__(self, config: DenoisingAutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.n_genes, *config.hidden, config.latent]
        self.encoder = nn.Sequential(*mlp(widths, config.activation, config.dropout))
        self.decoder = nn.Sequential(*mlp(widths[::-1], config.activation, config.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction, shape (batch, n_genes); masked first in training mode."""
        if self.training:
            # masking noise (Vincent et al. 2008): unlike dropout it does not rescale the rest,
            # so the encoder sees the same value distribution at training and inference time
            keep = torch.rand_like(x) >= self.config.mask_rate
            x = x * keep
        out: torch.Tensor = self.decoder(self.encoder(x))
        return out

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared error against the clean input."""
        return nn.functional.mse_loss(self(x), x)


@dataclass(frozen=True)
class VariationalAutoencoderConfig(EncoderShape):
    """Shape of a VariationalAutoencoder: the `EncoderShape` fields plus the KL weight.

    It needs at least one hidden layer; the latent is a Gaussian whose mean is the embedding.

    Parameters
    ----------
    beta:
        Weight of the KL term against the per-gene reconstruction error (beta-VAE).
    """

    beta: float = 1.0

    def check(self) -> None:
        if not self.hidden:
            raise ValueError("a variational autoencoder needs at least one hidden layer")
        if not 0.0 <= self.dropout < 1.0 or self.beta < 0:
            raise ValueError("dropout must be in [0, 1) and beta >= 0")


class GaussianEncoder(nn.Module):
    """Trunk MLP then a linear map to the latent mean (the embedding) and log-variance."""

    def __init__(self, config: VariationalAutoencoderConfig) -> None:
        super().__init__()
        widths = [config.n_genes, *config.hidden]
        trunk = mlp([*widths, 1], config.activation, config.dropout)[:-1]  # drop the 1-wide layer
        self.trunk = nn.Sequential(*trunk)
        self.mu = nn.Linear(config.hidden[-1], config.latent)
        self.logvar = nn.Linear(config.hidden[-1], config.latent)

    def stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent mean and log-variance, each (batch, latent)."""
        h = self.trunk(x)
        return self.mu(h), self.logvar(h).clamp(-10.0, 10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding: the latent mean, deterministic."""
        out: torch.Tensor = self.mu(self.trunk(x))
        return out


class VariationalAutoencoder(nn.Module):
    """Gaussian encoder, reparameterised sample, mirrored decoder (Kingma & Welling 2014)."""

    def __init__(self, config: VariationalAutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = GaussianEncoder(config)
        widths = [config.latent, *config.hidden[::-1], config.n_genes]
        self.decoder = nn.Sequential(*mlp(widths, config.activation, config.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction from the latent mean (eval) or a latent sample (training)."""
        mu, logvar = self.encoder.stats(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        out: torch.Tensor = self.decoder(z)
        return out

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Per-gene mean squared error plus beta × KL(q(z|x) ‖ N(0, I)) per gene."""
        mu, logvar = self.encoder.stats(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        recon = nn.functional.mse_loss(self.decoder(z), x)
        kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))
        # KL is a sum over latent dims per sample; divide by genes to match the per-gene MSE
        return recon + self.config.beta * kl / self.config.n_genes


Autoencoder = DenseAutoencoder | DenoisingAutoencoder | VariationalAutoencoder
AnyAutoencoderConfig = AutoencoderConfig | DenoisingAutoencoderConfig | VariationalAutoencoderConfig


def build_autoencoder(config: AnyAutoencoderConfig) -> Autoencoder:
    """The autoencoder a config describes, freshly initialised."""
    if isinstance(config, VariationalAutoencoderConfig):
        return VariationalAutoencoder(config)
    if isinstance(config, DenoisingAutoencoderConfig):
        return DenoisingAutoencoder(config)
    return DenseAutoencoder(config)


def autoencoder_loss(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """The self-supervised objective of any autoencoder on a preprocessed batch."""
    if isinstance(model, DenseAutoencoder):
        return nn.functional.mse_loss(model(x), x)
    return model.loss(x)


def encoder_layers(encoder: nn.Module) -> list[nn.Linear]:
    """The encoder's linear layers from input to embedding (what layer-wise unfreezing counts)."""
    if isinstance(encoder, GaussianEncoder):
        return [*(m for m in encoder.trunk if isinstance(m, nn.Linear)), encoder.mu]
    return [m for m in encoder.modules() if isinstance(m, nn.Linear)]
