"""The shared minibatch loop: seeded, early-stopped on a validation set, best weights kept.

Early stopping guards against stopping at chance: no stop before ``min_epochs``; with a
``chance`` loss (what predicting without the input scores), the patience counts only from the
first epoch that beats it, and only such epochs may become "best". A run whose validation loss
never beats chance keeps its last weights and says so in ``History.notes``: restoring a best
epoch would then hand back a head that has barely trained.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from training.nn.config import TrainConfig
from training.train import progress as watch

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor]
# an extra loss term computed once per optimiser step from the training progress in [0, 1]
# (domain adaptation, unlabelled rows); it draws its own rows and is left out of validation
Regulariser = Callable[[float], torch.Tensor]


@dataclass
class History:
    """Per-epoch losses of one optimisation, where it stopped and what early stopping watched."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    seconds: float = 0.0
    samples_seen: int = 0
    validation: str = "validation split"
    notes: list[str] = field(default_factory=list)

    @property
    def best_val_loss(self) -> float:
        """Validation loss of the kept weights."""
        return self.val_loss[self.best_epoch]

    def summary(self) -> dict[str, Any]:
        """How training went, for model cards and job results."""
        # no wall-clock time: the card's config is hashed and should be reproducible
        return {
            "epochs_run": len(self.val_loss),
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "stopped_early": self.stopped_early,
            "samples_seen": self.samples_seen,
            "validation": self.validation,
            "notes": list(self.notes),
        }


class EarlyStopping:
    """Records each epoch's losses in `history` and keeps the best-validation weights of `model`.

    Parameters
    ----------
    model, history:
        What is trained and where the losses go.
    patience:
        Epochs without a better (eligible) validation loss before stopping.
    min_epochs:
        No stop, and no epoch kept as best, before this many epochs have run.
    chance:
        A validation loss an untrained model reaches (e.g. log k for k balanced classes); only
        epochs below it count, and patience runs from the first of them.
    """

    def __init__(
        self,
        model: nn.Module,
        history: History,
        patience: int,
        *,
        min_epochs: int = 0,
        chance: float | None = None,
    ) -> None:
        self.model, self.history, self.patience = model, history, patience
        self.min_epochs, self.chance = min_epochs, chance
        self.best = float("inf")
        self.state: dict[str, torch.Tensor] = {}

    def end_epoch(self, epoch: int, train_loss: float, val_loss: float) -> bool:
        """Record the epoch; True once `patience` epochs have passed without a better val_loss."""
        self.history.train_loss.append(train_loss)
        self.history.val_loss.append(val_loss)
        eligible = epoch + 1 >= self.min_epochs and (self.chance is None or val_loss < self.chance)
        if eligible and val_loss < self.best:
            self.best, self.history.best_epoch = val_loss, epoch
            self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        elif self.state and epoch - self.history.best_epoch >= self.patience:
            self.history.stopped_early = True
            return True
        return False

    def restore(self, description: str) -> None:
        """Load the kept weights back into the model; without any, keep the last (see module)."""
        if self.state:
            self.model.load_state_dict(self.state)
            return
        last = self.history.val_loss[-1] if self.history.val_loss else float("nan")
        finite = all(torch.isfinite(p).all() for p in self.model.parameters())
        if self.chance is None or not finite or last != last:
            raise RuntimeError(f"{description}: the validation loss was never finite (diverged?)")
        self.history.best_epoch = len(self.history.val_loss) - 1
        self.history.notes.append(
            f"{description}: the validation loss never beat chance ({self.chance:.4g}) after "
            f"epoch {self.min_epochs}; kept the last epoch's weights, not an untrained head"
        )


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global RNG (init, dropout) inside, restoring the caller's state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def train_loop(
    model: nn.Module,
    loss_fn: LossFn,
    train: tuple[torch.Tensor, torch.Tensor | None],
    val: tuple[torch.Tensor, torch.Tensor | None],
    config: TrainConfig,
    *,
    progress: bool | None = None,
    description: str = "training",
    groups: Sequence[dict[str, Any]] | None = None,
    regulariser: Regulariser | None = None,
    device: torch.device | None = None,
    min_epochs: int = 0,
    chance: float | None = None,
) -> History:
    """Optimise `model` with AdamW on minibatches, stop early on validation loss, keep the best.

    Parameters
    ----------
    model:
        Module to train in place; it ends on the CPU in eval mode holding its kept weights.
    loss_fn:
        ``loss_fn(model, x, y)`` → scalar loss; ``y`` is ``None`` for unsupervised training.
    train, val:
        ``(x, y)`` tensors (CPU) for the training and validation samples.
    config:
        Epochs, batch size, optimiser settings, patience and seed (batch order).
    progress:
        Show a tqdm bar: ``True``/``False``, or ``None`` to show it only on a terminal.
    description:
        Label of the progress bar.
    groups:
        AdamW parameter groups (e.g. a lower learning rate for an encoder, a domain
        discriminator); default: every trainable parameter of `model` at ``config.lr``.
    regulariser:
        Called once per step with the training progress in [0, 1]; its value is added to the
        training loss (not to the validation loss). It must live on `device`.
    device:
        Where to train (CPU when ``None``); on CUDA the losses run in float16 autocast with a
        gradient scaler. Batches move there one at a time.
    min_epochs, chance:
        Guards against stopping at chance (see `EarlyStopping`).
    """
    dev = device or torch.device("cpu")
    amp = dev.type == "cuda"
    model.to(dev)
    x_train, y_train = train
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(
        list(groups) if groups is not None else params,
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    order = torch.Generator().manual_seed(config.seed)
    history = History()
    stopping = EarlyStopping(
        model, history, config.patience, min_epochs=min(min_epochs, config.epochs), chance=chance
    )
    start = time.perf_counter()
    bar = tqdm(
        range(config.epochs), desc=description, disable=None if progress is None else not progress
    )
    hook = watch.current()
    n_steps = -(-len(x_train) // config.batch_size)
    for epoch in bar:
        model.train()
        total, seen = 0.0, 0
        permutation = torch.randperm(len(x_train), generator=order)
        for step, first in enumerate(range(0, len(permutation), config.batch_size)):
            idx = permutation[first : first + config.batch_size]
            xb = x_train[idx].to(dev)
            yb = None if y_train is None else y_train[idx].to(dev)
            with torch.autocast(dev.type, dtype=torch.float16, enabled=amp):
                loss = loss_fn(model, xb, yb)
                if regulariser is not None:
                    loss = loss + regulariser((epoch * n_steps + step) / (config.epochs * n_steps))
            optimiser.zero_grad(set_to_none=True)
            torch.autograd.backward(scaler.scale(loss))
            scaler.step(optimiser)
            scaler.update()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            if hook is not None:
                hook.batch()
        val_loss = evaluate_loss(model, loss_fn, val, config.batch_size)
        history.samples_seen += seen
        stop = stopping.end_epoch(epoch, total / seen, val_loss)
        bar.set_postfix(train=f"{total / seen:.4f}", val=f"{val_loss:.4f}")
        if hook is not None:
            hook.epoch(description, epoch, config.epochs, total / seen, val_loss)
        if stop:
            break
    bar.close()
    stopping.restore(description)
    model.cpu().eval()
    history.seconds = time.perf_counter() - start
    return history


@torch.no_grad()
def evaluate_loss(
    model: nn.Module,
    loss_fn: LossFn,
    data: tuple[torch.Tensor, torch.Tensor | None],
    batch_size: int,
) -> float:
    """Mean per-sample loss in eval mode (assumes `loss_fn` averages over its batch)."""
    model.eval()
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    x, y = data
    total = 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(dev)
        yb = None if y is None else y[start : start + batch_size].to(dev)
        total += float(loss_fn(model, xb, yb)) * len(xb)
    return total / max(len(x), 1)
