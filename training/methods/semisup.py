"""Semi-supervised fine-tuning: the rows without a label join the loss.

Each optimiser step draws a minibatch of unlabelled rows. The model's prediction on the clean
rows, made in eval mode without gradients, is the target; a second pass on the same rows with
masking noise (a random ``MASK_RATE`` of the standardised genes set to 0, their training mean, as
the denoising encoder was pretrained) has to agree with it:

- ``pseudo_label`` (Lee 2013, with FixMatch's weak/strong split, Sohn et al. 2020):
  class-weighted cross-entropy against the arg-max class, for the rows whose top probability
  reaches the confidence threshold; divided by the whole minibatch, so the term grows as the
  model grows sure. Classification only.
- ``consistency`` (the Π-model of Laine & Aila 2017, as UDA, Xie et al. 2020): KL divergence
  from the clean class probabilities to the noisy ones; for regression, the squared difference of
  the two predictions.

The term is weighted by ``semi_weight`` × the same ramp as domain adaptation
(`training.methods.adapt.ramp`), so a head that has not learnt anything yet does not teach itself.
"""

from __future__ import annotations

import torch
from torch import nn

from contract.vocab import SemiSupervision
from training.methods.adapt import ramp

MASK_RATE = 0.3


def mask_genes(x: torch.Tensor, rate: float = MASK_RATE) -> torch.Tensor:
    """x with a random share `rate` of its entries set to 0 (global torch RNG)."""
    return x * (torch.rand_like(x) >= rate)


class UnlabelledLoss:
    """The unlabelled rows' term of one fine-tuning run (a `training.train.loop.Regulariser`).

    Parameters
    ----------
    method:
        ``pseudo_label`` or ``consistency``.
    model:
        Encoder and head in one module (preprocessed input → logits or predictions).
    x:
        The preprocessed unlabelled rows (CPU).
    classify:
        Classification (logits) or regression (one standardised prediction).
    class_weight:
        The supervised loss's class weights (pseudo-labels), or ``None``.
    confidence:
        Pseudo-labels only for rows whose top probability reaches this.
    weight:
        Weight of the term (before the ramp).
    batch_size, seed, device:
        Rows drawn per step, the seed of the draws, where training runs.
    """

    def __init__(
        self,
        method: SemiSupervision,
        model: nn.Module,
        x: torch.Tensor,
        *,
        classify: bool,
        class_weight: torch.Tensor | None,
        confidence: float,
        weight: float,
        batch_size: int,
        seed: int,
        device: torch.device,
    ) -> None:
        if method == "pseudo_label" and not classify:
            raise ValueError("pseudo-labels need classes: use consistency for regression")
        self.method, self.model, self.x, self.classify = method, model, x, classify
        self.class_weight = None if class_weight is None else class_weight.to(device)
        self.confidence, self.weight = confidence, weight
        self.batch_size, self.device = batch_size, device
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, progress: float) -> torch.Tensor:
        n = min(self.batch_size, len(self.x))
        idx = torch.randint(len(self.x), (n,), generator=self.generator)
        x = self.x[idx].to(self.device)
        with torch.no_grad():
            self.model.eval()
            clean = self.model(x).float()
            self.model.train()
        noisy = self.model(mask_genes(x)).float()
        if not self.classify:
            term = nn.functional.mse_loss(noisy, clean)
        elif self.method == "consistency":
            target = torch.softmax(clean, dim=1)
            term = nn.functional.kl_div(
                torch.log_softmax(noisy, dim=1), target, reduction="batchmean"
            )
        else:
            top, label = torch.softmax(clean, dim=1).max(dim=1)
            per_row = nn.functional.cross_entropy(
                noisy, label, weight=self.class_weight, reduction="none"
            )
            term = (per_row * (top >= self.confidence)).sum() / n
        return self.weight * ramp(progress) * term
