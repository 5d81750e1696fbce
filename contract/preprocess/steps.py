"""Per-sample preprocessing steps in numpy: the service applies them, training fuses their twins.

Each step stores and applies its fitted parameters (fitting is in `select.py` / `pipeline.py`).
The torch twins that export into ONNX live in `training.preprocess.fused`, matched to each step
by type: nothing in this package imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from contract.preprocess import normalise

Array = npt.NDArray[np.float32]
Scalar = float | int | str | bool | None


class Step(Protocol):
    """One fitted step: scalar params go to model.json, arrays to the npz file."""

    name: ClassVar[str]

    def transform(self, X: Array) -> Array:
        """Apply the step to a float32 samples × genes array."""
        ...

    def params(self) -> dict[str, Scalar]:
        """JSON-safe scalar parameters."""
        ...

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        """Fitted per-gene arrays."""
        ...


def _f32(values: npt.NDArray[Any]) -> Array:
    return np.asarray(values, dtype=np.float32)


@dataclass(frozen=True)
class NormalizeTotal:
    """Scale each sample to the same total (library size; target 1e6 is CPM)."""

    target_sum: float
    name: ClassVar[str] = "normalize_total"

    def transform(self, X: Array) -> Array:
        totals = np.maximum(X.sum(axis=1, keepdims=True, dtype=np.float32), np.float32(1e-12))
        return _f32(X / totals * np.float32(self.target_sum))

    def params(self) -> dict[str, Scalar]:
        return {"target_sum": self.target_sum}

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {}


@dataclass(frozen=True)
class Log1p:
    """Natural log1p (scanpy's convention)."""

    name: ClassVar[str] = "log1p"

    def transform(self, X: Array) -> Array:
        return np.log1p(X, dtype=np.float32)

    def params(self) -> dict[str, Scalar]:
        return {}

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {}


@dataclass(frozen=True)
class Log2p1:
    """log2(1 + x) (the usual log-CPM / log-TPM convention)."""

    name: ClassVar[str] = "log2p1"

    def transform(self, X: Array) -> Array:
        return _f32(np.log1p(X, dtype=np.float32) / np.float32(np.log(2.0)))

    def params(self) -> dict[str, Scalar]:
        return {}

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {}


@dataclass(frozen=True, eq=False)
class PerLength:
    """TPM (rescaled to 1e6 per sample) or FPKM (per kb, per million counts) from gene lengths."""

    lengths: Array
    unit: str  # "tpm" or "fpkm"
    name: ClassVar[str] = "per_length"

    def transform(self, X: Array) -> Array:
        if self.unit == "tpm":
            return _f32(normalise.tpm(X, self.lengths))
        return _f32(normalise.fpkm(X, self.lengths))

    def params(self) -> dict[str, Scalar]:
        return {"unit": self.unit}

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"lengths": self.lengths}


@dataclass(frozen=True, eq=False)
class MedianOfRatios:
    """DESeq2 size-factor normalisation against the stored training reference (per sample)."""

    logmeans: npt.NDArray[np.float64]  # mean log count of each usable gene
    usable: npt.NDArray[np.int64]  # column indices of the genes without zeros in training
    name: ClassVar[str] = "median_of_ratios"

    def factors(self, X: Array) -> npt.NDArray[np.float64]:
        """Each sample's size factor."""
        with np.errstate(divide="ignore"):
            logs = np.log(np.asarray(X, dtype=np.float64)[:, self.usable])
        return np.asarray(np.exp(np.median(logs - self.logmeans, axis=1)))

    def transform(self, X: Array) -> Array:
        return _f32(np.asarray(X, dtype=np.float64) / self.factors(X)[:, None])

    def params(self) -> dict[str, Scalar]:
        return {}

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"logmeans": self.logmeans, "usable": self.usable}


@dataclass(frozen=True)
class VST:
    """DESeq2's variance-stabilising transform (parametric trend, or one mean dispersion)."""

    a0: float
    a1: float  # 0 with a0 = mean dispersion: the "mean" fit type
    name: ClassVar[str] = "vst"

    def transform(self, X: Array) -> Array:
        if self.a1 == 0.0:
            return _f32(normalise.vst_mean(X, self.a0))
        return _f32(normalise.vst_parametric(X, self.a0, self.a1))

    def params(self) -> dict[str, Scalar]:
        return {"a0": self.a0, "a1": self.a1}

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
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

    def params(self) -> dict[str, Scalar]:
        return {"clip": self.clip}

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"mean": self.mean, "scale": self.scale}


@dataclass(frozen=True, eq=False)
class SelectGenes:
    """Keep the given columns (variance, highly variable genes, or a named gene list)."""

    indices: npt.NDArray[np.int64]
    how: str
    name: ClassVar[str] = "select_genes"

    def transform(self, X: Array) -> Array:
        return np.ascontiguousarray(X[:, self.indices])

    def params(self) -> dict[str, Scalar]:
        return {"how": self.how, "n_genes": len(self.indices)}

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"indices": self.indices}


@dataclass(frozen=True, eq=False)
class PCA:
    """Project centred values on the leading principal axes (components: k × genes)."""

    mean: Array
    components: Array
    name: ClassVar[str] = "pca"

    def transform(self, X: Array) -> Array:
        return _f32((X - self.mean) @ self.components.T)

    def params(self) -> dict[str, Scalar]:
        return {"n_components": int(self.components.shape[0])}

    def arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"mean": self.mean, "components": self.components}


def step_from_params(
    name: str, params: dict[str, Scalar], arrays: dict[str, npt.NDArray[Any]]
) -> Step:
    """Rebuild a step saved by `params()` and `arrays()`."""
    simple: dict[str, Step] = {Log1p.name: Log1p(), Log2p1.name: Log2p1()}
    if name in simple:
        return simple[name]
    if name == NormalizeTotal.name:
        return NormalizeTotal(float(params["target_sum"]))  # type: ignore[arg-type]
    if name == Standardize.name:
        clip = params.get("clip")
        return Standardize(arrays["mean"], arrays["scale"], None if clip is None else float(clip))
    if name == PerLength.name:
        return PerLength(arrays["lengths"], str(params["unit"]))
    if name == MedianOfRatios.name:
        return MedianOfRatios(arrays["logmeans"], arrays["usable"])
    if name == VST.name:
        return VST(float(params["a0"]), float(params["a1"]))  # type: ignore[arg-type]
    if name == SelectGenes.name:
        return SelectGenes(arrays["indices"], str(params["how"]))
    if name == PCA.name:
        return PCA(arrays["mean"], arrays["components"])
    raise ValueError(f"unknown preprocessing step {name!r}")
