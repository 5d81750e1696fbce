"""The shared minibatch loop: seeded, early-stopped on a validation set, best weights kept."""

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


@dataclass
class History:
    """Per-epoch losses of one optimisation and where it stopped."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    seconds: float = 0.0
    samples_seen: int = 0

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
        }


class EarlyStopping:
    """Records each epoch's losses in `history` and keeps the best-validation weights of `model`."""

    def __init__(self, model: nn.Module, history: History, patience: int) -> None:
        self.model, self.history, self.patience = model, history, patience
        self.best = float("inf")
        self.state: dict[str, torch.Tensor] = {}

    def end_epoch(self, epoch: int, train_loss: float, val_loss: float) -> bool:
        """Record the epoch; True once `patience` epochs have passed without a better val_loss."""
        self.history.train_loss.append(train_loss)
        self.history.val_loss.append(val_loss)
        if val_loss < self.best:
            self.best, self.history.best_epoch = val_loss, epoch
            self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        elif epoch - self.history.best_epoch >= self.patience:
            self.history.stopped_early = True
            return True
        return False

    def restore(self, description: str) -> None:
        """Load the kept weights back into the model (an error if no epoch had a finite loss)."""
        if not self.state:
            raise RuntimeError(f"{description}: the validation loss was never finite (diverged?)")
        self.model.load_state_dict(self.state)


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
) -> History:
    """Optimise `model` with AdamW on minibatches, stop early on validation loss, keep the best.

    Parameters
    ----------
    model:
        Module to train in place; it ends in eval mode holding its best-validation weights.
    loss_fn:
        ``loss_fn(model, x, y)`` → scalar loss; ``y`` is ``None`` for unsupervised training.
    train, val:
        ``(x, y)`` tensors for the training and validation samples.
    config:
        Epochs, batch size, optimiser settings, patience and seed (batch order).
    progress:
        Show a tqdm bar: ``True``/``False``, or ``None`` to show it only on a terminal.
    description:
        Label of the progress bar.
    groups:
        AdamW parameter groups (e.g. a lower learning rate for an encoder); default: every
        trainable parameter at ``config.lr``.
    """
    x_train, y_train = train
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(
        list(groups) if groups is not None else params,
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    order = torch.Generator().manual_seed(config.seed)
    history = History()
    stopping = EarlyStopping(model, history, config.patience)
    start = time.perf_counter()
    bar = tqdm(
        range(config.epochs), desc=description, disable=None if progress is None else not progress
    )
    hook = watch.current()
    for epoch in bar:
        model.train()
        total, seen = 0.0, 0
        permutation = torch.randperm(len(x_train), generator=order)
        for first in range(0, len(permutation), config.batch_size):
            idx = permutation[first : first + config.batch_size]
            loss = loss_fn(model, x_train[idx], None if y_train is None else y_train[idx])
            optimiser.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            optimiser.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            if hook is not None:
                hook.batch()
        val_loss = evaluate_loss(model, loss_fn, val, config.batch_size)
        stop = stopping.end_epoch(epoch, total / seen, val_loss)
        bar.set_postfix(train=f"{total / seen:.4f}", val=f"{val_loss:.4f}")
        if hook is not None:
            hook.epoch(description, epoch, config.epochs, total / seen, val_loss)
        if stop:
            break
    bar.close()
    stopping.restore(description)
    model.eval()
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
    x, y = data
    total = 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        yb = None if y is None else y[start : start + batch_size]
        total += float(loss_fn(model, xb, yb)) * len(xb)
    return total / max(len(x), 1)
