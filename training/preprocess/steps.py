"""Per-sample preprocessing steps: a numpy reference and an identical torch module for each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

Array = npt.NDArray[np.float32]
Scalar = float | int | str | bool | None


class Step(Protocol):
    """One fitted step: scalar params go to model.json, arrays to the npz file."""

    name: ClassVar[str]

    def transform(self, X: Array) -> Array:
        """Apply the step to a float32 samples × genes array."""
        ...

    def torch_module(self) -> nn.Module:
        """An nn.Module doing the same arithmetic, for fusing into the ONNX graph."""
        ...

    def params(self) -> dict[str, Scalar]:
        """JSON-safe scalar parameters."""
        ...

    def arrays(self) -> dict[str, Array]:
        """Fitted per-gene arrays."""
        ...


@dataclass(frozen=True)
class NormalizeTotal:
    """Scale each sample to the same total (library-size normalisation of counts)."""

    target_sum: float
    name: ClassVar[str] = "normalize_total"

    def transform(self, X: Array) -> Array:
        totals = np.maximum(X.sum(axis=1, keepdims=True, dtype=np.float32), np.float32(1e-12))
        out: Array = (X / totals * np.float32(self.target_sum)).astype(np.float32)
        return out

    def torch_module(self) -> nn.Module:
        return _NormalizeTotal(self.target_sum)

    def params(self) -> dict[str, Scalar]:
        return {"target_sum": self.target_sum}

    def arrays(self) -> dict[str, Array]:
        return {}


@dataclass(frozen=True)
class Log1p:
    """Natural log1p."""

    name: ClassVar[str] = "log1p"

    def transform(self, X: Array) -> Array:
        return np.log1p(X, dtype=np.float32)

    def torch_module(self) -> nn.Module:
        return _Log1p()

    def params(self) -> dict[str, Scalar]:
        return {}

    def arrays(self) -> dict[str, Array]:
        return {}


@dataclass(frozen=True, eq=False)
class Standardize:
    """Per-gene (x - mean) / scale, then an optional symmetric clip."""

    mean: Array
    scale: Array
    clip: float | None
    name: ClassVar[str] = "standardize"

    @classmethod
    def fit(cls, X: Array, *, std_floor: float, clip: float | None) -> Standardize:
        """Per-gene mean and std of X; a std at or below `std_floor` becomes 1 (constant gene)."""
        mean = X.mean(axis=0, dtype=np.float64)
        std = X.std(axis=0, dtype=np.float64)
        # a constant gene carries no information; dividing by ~0 would only amplify noise
        scale = np.where(std > std_floor, std, 1.0)
        return cls(mean.astype(np.float32), scale.astype(np.float32), clip)

    def transform(self, X: Array) -> Array:
        Z = (X - self.mean) / self.scale
        if self.clip is not None:
            Z = np.clip(Z, -self.clip, self.clip)
        return Z.astype(np.float32)

    def torch_module(self) -> nn.Module:
        return _Standardize(self.mean, self.scale, self.clip)

    def params(self) -> dict[str, Scalar]:
        return {"clip": self.clip}

    def arrays(self) -> dict[str, Array]:
        return {"mean": self.mean, "scale": self.scale}


def step_from_params(name: str, params: dict[str, Scalar], arrays: dict[str, Array]) -> Step:
    """Rebuild a step saved by `params()` and `arrays()`."""
    if name == NormalizeTotal.name:
        return NormalizeTotal(float(params["target_sum"]))  # type: ignore[arg-type]
    if name == Log1p.name:
        return Log1p()
    if name == Standardize.name:
        clip = params.get("clip")
        return Standardize(arrays["mean"], arrays["scale"], None if clip is None else float(clip))
    raise ValueError(f"unknown preprocessing step {name!r}")


class _NormalizeTotal(nn.Module):
    def __init__(self, target_sum: float) -> None:
        super().__init__()
        self.target_sum = target_sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        totals = torch.clamp(x.sum(dim=1, keepdim=True), min=1e-12)
        return x / totals * self.target_sum


class _Log1p(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x)


class _Standardize(nn.Module):
    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, mean: Array, scale: Array, clip: float | None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean.copy()))
        self.register_buffer("scale", torch.from_numpy(scale.copy()))
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.scale
        return z if self.clip is None else torch.clamp(z, -self.clip, self.clip)
