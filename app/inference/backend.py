"""The inference engine behind a small protocol: registry and services never see ONNX Runtime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from contract.card import ModelCard

Array = npt.NDArray[np.float32]


class InferenceBackend(Protocol):
    """Runs one model version: float32 (batch, n_genes) in panel order → named outputs."""

    @property
    def providers(self) -> list[str]:
        """Execution providers really in use, best first."""
        ...

    @property
    def requested_providers(self) -> list[str]:
        """Execution providers the settings asked for."""
        ...

    def run(self, x: Array) -> dict[str, Array]:
        """Compute every output for a batch."""
        ...

    def close(self) -> None:
        """Release the session's resources."""
        ...


BackendFactory = Callable[[Path, ModelCard], InferenceBackend]


class Explainer(Protocol):
    """A version's explanation graph: (batch, n_genes) in panel order and (batch,) class indices
    → (batch, n_genes) attributions to those classes' logits."""

    def attributions(self, x: Array, target: npt.NDArray[np.int64]) -> Array:
        """Each gene's attribution to the logit of `target`, per sample."""
        ...

    def close(self) -> None:
        """Release the session's resources."""
        ...


ExplainerFactory = Callable[[Path, ModelCard], Explainer | None]
