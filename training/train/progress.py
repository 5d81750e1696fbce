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


class _BatchesOnly:
    """Forwards `batch()` (cancellation checks) to a hook, and drops its epochs."""

    def __init__(self, hook: TrainingHook) -> None:
        self.hook = hook

    def batch(self) -> None:
        self.hook.batch()

    def epoch(
        self, description: str, epoch: int, max_epochs: int, train_loss: float, val_loss: float
    ) -> None:
        return None


@contextlib.contextmanager
def batches_only() -> Iterator[None]:
    """Inside this block the hook in effect (if any) hears only `batch()`: trainings that are
    not the published model's (inner cross-validation) can be stopped but draw no curve."""
    hook = _hook.get()
    if hook is None:
        yield
        return
    with watching(_BatchesOnly(hook)):
        yield
