"""Principal components in numpy, for the picture of a request's samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Projection:
    """Each sample's first two principal-component scores and the variance share of each."""

    coords: npt.NDArray[np.float64]  # samples × 2
    explained: tuple[float, float]


def pca2(x: npt.NDArray[np.floating]) -> Projection:
    """The rows of `x` on its first two principal components (zeros where there are fewer)."""
    values = np.asarray(x, dtype=np.float64)
    n = values.shape[0]
    coords = np.zeros((n, 2))
    if n < 2:
        return Projection(coords, (0.0, 0.0))
    centred = values - values.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, s.size)
    # a component's sign is arbitrary: make its largest loading positive, so pictures repeat
    signs = np.sign(vt[np.arange(k), np.abs(vt[:k]).argmax(axis=1)])
    signs[signs == 0] = 1.0
    coords[:, :k] = u[:, :k] * s[:k] * signs
    variance = s**2
    total = float(variance.sum())
    shares = [float(v / total) if total > 0 else 0.0 for v in variance[:k]] + [0.0] * (2 - k)
    return Projection(coords, (shares[0], shares[1]))
