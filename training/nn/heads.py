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


@dataclass(frozen=True)
class MultiTaskHeadConfig:
    """Shape of a MultiTaskHead: one classifier or regressor head per task on one embedding.

    Flat (no nested configs) so a checkpoint rebuilds it like any other head.

    Parameters
    ----------
    n_in:
        Embedding width (the encoder's latent size).
    tasks:
        Task names (the obs columns), in output order.
    kinds:
        ``classification`` or ``regression``, one per task.
    widths:
        Each task's output width: its number of classes, or 1 for a regression target.
    hidden, dropout, activation:
        As for `ClassifierHeadConfig`, shared by every task's head.
    """

    n_in: int
    tasks: tuple[str, ...]
    kinds: tuple[str, ...]
    widths: tuple[int, ...]
    hidden: tuple[int, ...] = ()
    dropout: float = 0.0
    activation: str = "relu"

    def __post_init__(self) -> None:
        if not self.tasks or not len(self.tasks) == len(self.kinds) == len(self.widths):
            raise ValueError("tasks, kinds and widths need one entry per task, at least one")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"task names must be unique, got {list(self.tasks)}")
        for kind in self.kinds:
            if kind not in ("classification", "regression"):
                raise ValueError(f"a task is classification or regression, not {kind!r}")
        self.heads()  # each head's own bounds

    def heads(self) -> list[ClassifierHeadConfig | RegressorHeadConfig]:
        """Each task's head config, in task order."""
        return [
            ClassifierHeadConfig(self.n_in, w, self.hidden, self.dropout, self.activation)
            if kind == "classification"
            else RegressorHeadConfig(self.n_in, w, self.hidden, self.dropout, self.activation)
            for kind, w in zip(self.kinds, self.widths, strict=True)
        ]

    @property
    def n_out(self) -> int:
        """The concatenated outputs' width."""
        return sum(self.widths)

    def slices(self) -> list[slice]:
        """Where each task's outputs sit in the concatenated output."""
        ends = [sum(self.widths[: i + 1]) for i in range(len(self.widths))]
        return [slice(end - w, end) for end, w in zip(ends, self.widths, strict=True)]


class MultiTaskHead(nn.Module):
    """A head per task on one shared embedding; outputs concatenated in task order, shape
    (batch, config.n_out) (`MultiTaskHeadConfig.slices` says which columns are whose)."""

    def __init__(self, config: MultiTaskHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.heads = nn.ModuleList(
            ClassifierHead(c) if isinstance(c, ClassifierHeadConfig) else RegressorHead(c)
            for c in config.heads()
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Every task's outputs side by side."""
        return torch.cat([head(z) for head in self.heads], dim=1)
