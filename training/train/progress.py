"""A hook into every training loop, for callers that watch or stop training (e.g. a job runner).

Set with `watching(hook)`; `train_loop` calls `hook.batch()` after every minibatch and
`hook.epoch(...)` after every epoch. Either may raise to stop training (e.g. on cancellation); the
exception propagates to whoever started the training. A context variable keeps the hook out of
every signature between the job runner and the loop.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Protocol

from contract.vocab import INNER_CV_STAGE


class TrainingHook(Protocol):
    """What a training loop reports to its watcher."""

    def batch(self) -> None:
        """Called after every minibatch; raise to stop."""

    def epoch(
        self, description: str, epoch: int, max_epochs: int, train_loss: float, val_loss: float
    ) -> None:
        """Called after every epoch (0-based) with its losses; raise to stop."""


_hook: contextvars.ContextVar[TrainingHook | None] = contextvars.ContextVar(
    "training_hook", default=None
)


@contextlib.contextmanager
def watching(hook: TrainingHook) -> Iterator[None]:
    """Report every training loop run inside this block to `hook`."""
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)


def current() -> TrainingHook | None:
    """The hook in effect, if any."""
    return _hook.get()


class _InnerStages:
    """Forwards to a hook with every stage's name prefixed by `INNER_CV_STAGE`."""

    def __init__(self, hook: TrainingHook) -> None:
        self.hook = hook

    def batch(self) -> None:
        self.hook.batch()

    def epoch(
        self, description: str, epoch: int, max_epochs: int, train_loss: float, val_loss: float
    ) -> None:
        self.hook.epoch(INNER_CV_STAGE + description, epoch, max_epochs, train_loss, val_loss)


@contextlib.contextmanager
def inner_stages() -> Iterator[None]:
    """Inside this block the hook in effect (if any) hears every stage as `INNER_CV_STAGE` +
    its name: trainings that are not the published model's (the choice's inner cross-validation,
    a tuning study) show as progress and can be stopped, and a watcher keeps them off the
    published model's loss curve by that prefix."""
    hook = _hook.get()
    if hook is None:
        yield
        return
    with watching(_InnerStages(hook)):
        yield
