"""Domain adaptation on the embedding while fine-tuning: adversarial (DANN) or multi-kernel MMD.

A domain is a batch or lab named by an obs column, or, without one, "labelled" (source) vs
"unlabelled" (target). Each optimiser step draws a minibatch balanced over domains from every
training row, labelled or not, and adds one term to the supervised loss:

- ``dann`` (Ganin et al. 2016, JMLR 17:59): a domain discriminator on the embedding behind a
  gradient-reversal layer. The discriminator learns to tell the domains apart; the encoder gets
  its gradient reversed and scaled by λ·(2 / (1 + exp(-10 p)) - 1), the paper's schedule over the
  training progress p, so early steps (a random discriminator) barely move it.
- ``mmd`` (Long et al. 2015, DAN): λ·ramp(p) times the squared maximum mean discrepancy
  between the embeddings of each domain and the rest, averaged over domains, with a sum of
  Gaussian kernels at 1/4, 1/2, 1, 2 and 4 times the median pairwise squared distance of the
  minibatch (the median heuristic, recomputed per step, not differentiated).

Both align what the encoder outputs, so they need a trainable encoder: `FinetuneOptions` refuses
them with the ``frozen`` strategy. Neither knows the classes: where batch and class are
confounded, aligning the batches also removes class signal (measured in docs/training.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from contract.vocab import Adaptation

KERNEL_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
DISCRIMINATOR_HIDDEN = 64


def ramp(progress: float) -> float:
    """Ganin et al.'s schedule: 0 at the start of training, rising to about 1 by mid-training."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float) -> torch.Tensor:
    """Identity forward; the gradient flowing back is multiplied by -coeff."""
    out: torch.Tensor = _Reverse.apply(x, coeff)  # type: ignore[no-untyped-call]
    return out


@dataclass(frozen=True)
class Domains:
    """Preprocessed rows (labelled and unlabelled) with the domain of each, for adaptation."""

    x: torch.Tensor
    codes: torch.Tensor
    names: list[str]

    @classmethod
    def of(cls, parts: Sequence[tuple[torch.Tensor, Sequence[str]]]) -> Domains:
        """Stack (rows, domain names) parts; ValueError unless there are two domains or more."""
        names = sorted({str(d) for _, domains in parts for d in domains})
        if len(names) < 2:
            raise ValueError(
                f"domain adaptation needs two domains or more, got {names}: give unlabelled "
                "rows from the new domain, or a domain column naming several batches"
            )
        code = {n: i for i, n in enumerate(names)}
        codes = [code[str(d)] for _, domains in parts for d in domains]
        x = torch.cat([rows for rows, _ in parts])
        return cls(x, torch.tensor(codes, dtype=torch.long), names)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n row indices, each domain equally likely whatever its size."""
        counts = torch.bincount(self.codes, minlength=len(self.names)).double()
        weights = (1.0 / counts)[self.codes]
        return torch.multinomial(weights, n, replacement=True, generator=generator)


def mmd2(z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Multi-kernel squared MMD between each domain's rows and the rest, averaged over domains."""
    z = z.float()
    sq = torch.cdist(z, z).square()
    off = sq[~torch.eye(len(z), dtype=torch.bool, device=z.device)]
    sigma2 = off.median().detach().clamp(min=1e-6) if off.numel() else z.new_tensor(1.0)
    kernel = sum(torch.exp(-sq / (2.0 * sigma2 * s)) for s in KERNEL_SCALES) / len(KERNEL_SCALES)
    assert isinstance(kernel, torch.Tensor)
    terms = []
    for d in torch.unique(codes):
        inside = codes == d
        if inside.sum() < 2 or (~inside).sum() < 2:
            continue
        a, b = inside.nonzero().squeeze(1), (~inside).nonzero().squeeze(1)
        k_aa = kernel[a][:, a].mean()
        k_bb = kernel[b][:, b].mean()
        k_ab = kernel[a][:, b].mean()
        terms.append(k_aa + k_bb - 2 * k_ab)
    return torch.stack(terms).mean() if terms else z.sum() * 0.0


class DomainAlignment:
    """The adaptation term of one fine-tuning run (a `training.train.loop.Regulariser`).

    Parameters
    ----------
    method:
        ``dann`` or ``mmd``.
    encoder:
        The encoder being fine-tuned (its output is aligned).
    domains:
        Every training row with its domain.
    latent:
        Embedding width (the discriminator's input).
    weight:
        λ: the reversed gradient's scale (dann) or the MMD term's weight (mmd).
    batch_size, seed:
        Rows drawn per step, and the seed of the draws and the discriminator's initialisation.
    device:
        Where training runs.
    """

    def __init__(
        self,
        method: Adaptation,
        encoder: nn.Module,
        domains: Domains,
        *,
        latent: int,
        weight: float,
        batch_size: int,
        seed: int,
        device: torch.device,
    ) -> None:
        self.method, self.encoder, self.domains, self.weight = method, encoder, domains, weight
        self.batch_size, self.device = max(batch_size, 2 * len(domains.names)), device
        self.generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.discriminator = nn.Sequential(
                nn.Linear(latent, DISCRIMINATOR_HIDDEN),
                nn.ReLU(),
                nn.Linear(DISCRIMINATOR_HIDDEN, len(domains.names)),
            ).to(device)

    def parameters(self) -> list[nn.Parameter]:
        """What the optimiser must also train (the discriminator's weights; none for MMD)."""
        return list(self.discriminator.parameters()) if self.method == "dann" else []

    def __call__(self, progress: float) -> torch.Tensor:
        idx = self.domains.sample(self.batch_size, self.generator)
        z = self.encoder(self.domains.x[idx].to(self.device))
        codes = self.domains.codes[idx].to(self.device)
        if self.method == "dann":
            logits = self.discriminator(reverse_gradient(z, self.weight * ramp(progress)))
            return nn.functional.cross_entropy(logits, codes)
        return self.weight * ramp(progress) * mmd2(z, codes)
