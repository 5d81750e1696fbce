"""Frozen configuration dataclasses and their JSON round trip; checkpoints carry them."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

C = TypeVar("C")


@dataclass(frozen=True)
class TrainConfig:
    """How to run one optimisation (pretraining or fine-tuning).

    Parameters
    ----------
    epochs:
        Maximum number of passes over the training samples.
    batch_size:
        Samples per minibatch.
    lr:
        AdamW learning rate.
    weight_decay:
        AdamW decoupled weight decay.
    val_fraction:
        Share of the given samples held out for early stopping (stratified when labels exist).
    patience:
        Epochs without a validation improvement before stopping; the best weights are kept.
    seed:
        Seeds weight initialisation, dropout, the validation split and batch order.
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    patience: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.lr <= 0 or self.weight_decay < 0 or self.patience < 1:
            raise ValueError("lr must be > 0, weight_decay >= 0 and patience >= 1")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return dataclasses.asdict(config)


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Rebuild a config dataclass from `config_to_dict` output, refusing unknown keys."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {unknown}")
    hints = typing.get_type_hints(cls)
    # JSON has no tuples; restore them where the field is declared as one, so the rebuilt
    # config compares equal to (and hashes like) the one that was saved.
    kwargs = {k: _restore_tuples(hints[k], v) for k, v in data.items()}
    return cls(**kwargs)


def _restore_tuples(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return tuple(value)
        return value
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value
