"""A multi-input network: the transferred expression encoder, a small encoder per added modality,
fusion by concatenation with presence flags, then the usual head.

Fusion. Each added modality's embedding is multiplied by its presence (0 or 1) and followed by
the presence flag itself: ``[z_expr, z_m1 · p1, p1, z_m2 · p2, p2, …]`` feeds the head. Chosen
over a masked mean (or a product of experts) because (a) the modalities keep their own
coordinates, so the head can weigh methylation unlike protein instead of averaging embeddings
that were never aligned into one space; (b) a zeroed embedding alone would look like "measured,
and average", while the flag lets the head learn a separate offset for "not measured"; (c) a
missing modality then costs exactly nothing in the graph (a `Where` and a multiply), which the
ONNX export keeps exact. During training each present modality is hidden at random for a share
of the rows (``modality_dropout``), so the head also learns to answer without it even where the
training data had it for almost every sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from contract.modality import LOGIT_EPS


@dataclass(frozen=True)
class ModalityScaling:
    """One modality's fitted preprocessing: optional logit (β → M), then per-feature z-score."""

    name: str
    features: list[str]
    logit: bool
    mean: npt.NDArray[np.float32]  # of the (logit-transformed) training values
    sd: npt.NDArray[np.float32]
    raw_mean: npt.NDArray[np.float32]  # of the raw training values: the fill value
    n_present: int

    @classmethod
    def fit(
        cls, name: str, features: list[str], values: npt.NDArray[np.float32], logit: bool
    ) -> ModalityScaling:
        """Fit on a modality's training rows (NaN rows, the missing samples, are skipped)."""
        present = values[~np.isnan(values).all(axis=1)]
        if len(present) < 2:
            raise ValueError(f"modality {name!r}: fewer than 2 training samples have it")
        x = _logit_np(present) if logit else present.astype(np.float64)
        sd = x.std(axis=0)
        return cls(
            name=name,
            features=list(features),
            logit=logit,
            mean=x.mean(axis=0).astype(np.float32),
            sd=np.where(sd > 1e-6, sd, 1.0).astype(np.float32),
            raw_mean=present.mean(axis=0).astype(np.float32),
            n_present=len(present),
        )


def _logit_np(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    b = np.clip(x.astype(np.float64), LOGIT_EPS, 1 - LOGIT_EPS)
    return np.asarray(np.log2(b / (1 - b)))


class ModalityScaler(nn.Module):
    """Raw modality values (NaN rows: missing) → (z-scores with NaN as 0, presence (batch, 1))."""

    def __init__(self, scaling: ModalityScaling) -> None:
        super().__init__()
        self.logit = scaling.logit
        self.mean: torch.Tensor
        self.sd: torch.Tensor
        self.register_buffer("mean", torch.from_numpy(scaling.mean.copy()))
        self.register_buffer("sd", torch.from_numpy(scaling.sd.copy()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nan = torch.isnan(x)
        absent = nan.to(x.dtype).amin(dim=1, keepdim=True)  # 1 where the whole row is NaN
        if self.logit:
            b = torch.clamp(x, LOGIT_EPS, 1 - LOGIT_EPS)
            x = torch.log2(b / (1 - b))
        z = (x - self.mean) / self.sd
        # a NaN feature (or a NaN row) counts as the training mean: 0 after standardisation
        z = torch.where(nan, torch.zeros_like(z), z)
        return z, 1 - absent


class ModalityEncoder(nn.Module):
    """A small MLP for one added modality: n_features → hidden → embedding."""

    def __init__(self, n_features: int, hidden: int, latent: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, latent)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(z)
        return out


class MultiOmicsCore(nn.Module):
    """Packed ``[preprocessed expression | z_1, p_1 | z_2, p_2 | …]`` → head output.

    One packed tensor, so the project's training loop (one x, one y) trains it unchanged; the
    exported graph (`MultiOmicsGraph`) packs its named inputs the same way.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_genes: int,
        widths: Sequence[int],
        head: nn.Module,
        *,
        hidden: int = 32,
        latent: int = 8,
        dropout: float = 0.1,
        modality_dropout: float = 0.15,
    ) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        self.n_genes, self.widths = n_genes, list(widths)
        self.modality_dropout = modality_dropout
        self.modality_encoders = nn.ModuleList(
            [ModalityEncoder(w, hidden, latent, dropout) for w in widths]
        )

    def fused(self, packed: torch.Tensor) -> torch.Tensor:
        """The head's input: expression embedding, then each modality's masked embedding + flag."""
        parts = [self.encoder(packed[:, : self.n_genes])]
        start = self.n_genes
        for width, enc in zip(self.widths, self.modality_encoders, strict=True):
            z = packed[:, start : start + width]
            present = packed[:, start + width : start + width + 1]
            start += width + 1
            if self.training and self.modality_dropout > 0:
                keep = torch.rand_like(present) >= self.modality_dropout
                present = present * keep.to(present.dtype)
            parts += [enc(z) * present, present]
        return torch.cat(parts, dim=1)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.fused(packed))
        return out


def fused_width(expression_latent: int, n_modalities: int, latent: int) -> int:
    """Width of the head's input for a core with these sizes."""
    return expression_latent + n_modalities * (latent + 1)


class MultiOmicsGraph(nn.Module):
    """The exported model: ``expression``, then one raw input per modality → (logits, probs)."""

    def __init__(
        self, preprocess: nn.Module, scalers: Sequence[ModalityScaler], core: MultiOmicsCore
    ) -> None:
        super().__init__()
        self.preprocess, self.core = preprocess, core
        self.scalers = nn.ModuleList(scalers)

    def pack(self, expression: torch.Tensor, *modalities: torch.Tensor) -> torch.Tensor:
        """The core's packed input from the graph's inputs."""
        parts = [self.preprocess(expression)]
        for scaler, x in zip(self.scalers, modalities, strict=True):
            z, present = scaler(x)
            parts += [z, present]
        return torch.cat(parts, dim=1)

    def forward(
        self, expression: torch.Tensor, *modalities: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits: torch.Tensor = self.core(self.pack(expression, *modalities))
        return logits, torch.softmax(logits, dim=-1)


def presence_flags(packed: torch.Tensor, n_genes: int, widths: Sequence[int]) -> torch.Tensor:
    """(batch, n_modalities) presence flags read back from a packed tensor."""
    cols, start = [], n_genes
    for w in widths:
        cols.append(start + w)
        start += w + 1
    return packed[:, cols]


# torch.export binds a graph's inputs by its forward's signature, and a *modalities tuple is
# one input there: the exported module takes each modality as its own named argument
MAX_MODALITIES = 4


class _One(nn.Module):
    def __init__(self, graph: MultiOmicsGraph) -> None:
        super().__init__()
        self.inner = graph

    def forward(self, expression: torch.Tensor, m1: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out: tuple[torch.Tensor, ...] = self.inner(expression, m1)
        return out


class _Two(_One):
    def forward(  # type: ignore[override]
        self, expression: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        out: tuple[torch.Tensor, ...] = self.inner(expression, m1, m2)
        return out


class _Three(_One):
    def forward(  # type: ignore[override]
        self, expression: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor, m3: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        out: tuple[torch.Tensor, ...] = self.inner(expression, m1, m2, m3)
        return out


class _Four(_One):
    def forward(  # type: ignore[override]
        self,
        expression: torch.Tensor,
        m1: torch.Tensor,
        m2: torch.Tensor,
        m3: torch.Tensor,
        m4: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        out: tuple[torch.Tensor, ...] = self.inner(expression, m1, m2, m3, m4)
        return out


def exportable(graph: MultiOmicsGraph) -> nn.Module:
    """`graph` behind a forward with one argument per input, as torch.export needs."""
    n = len(graph.scalers)
    if not 1 <= n <= MAX_MODALITIES:
        raise ValueError(f"a multi-omics graph takes 1 to {MAX_MODALITIES} modalities, not {n}")
    wrapper: nn.Module = (_One, _Two, _Three, _Four)[n - 1](graph)
    return wrapper.eval()
