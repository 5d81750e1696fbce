"""The fitted per-sample preprocessing of a model, saved as JSON + npz (never pickles).

Arrays live in ``preprocess.npz`` under ``"<step name>.<array>"`` (for example
``"standardize.mean"``) plus ``"input_mean"``, the per-gene training mean on the input scale that
becomes the card's ``panel.fill_values``: a gene a request lacks then standardises to about 0.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import nn

from app.inference.card import InputScale, Preprocessing, PreprocessStep
from training.data.matrix import ExpressionMatrix
from training.preprocess.steps import (
    Array,
    Log1p,
    NormalizeTotal,
    Standardize,
    Step,
    step_from_params,
)

PARAMS_JSON = "preprocess.json"
PARAMS_NPZ = "preprocess.npz"
_FORMAT = 1


class PreprocessPipeline:
    """Ordered fitted steps that turn input-scale values for a fixed gene panel into model input."""

    def __init__(
        self,
        *,
        input_scale: InputScale,
        gene_ids: Sequence[str],
        steps: Sequence[Step],
        input_mean: Array,
    ) -> None:
        if len(input_mean) != len(gene_ids):
            raise ValueError(f"input_mean has {len(input_mean)} values for {len(gene_ids)} genes")
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"step names must be unique, got {names}")
        self.input_scale = InputScale(input_scale)
        self.gene_ids = list(gene_ids)
        self.steps = list(steps)
        self.input_mean = np.asarray(input_mean, dtype=np.float32)

    @classmethod
    def fit(
        cls,
        matrix: ExpressionMatrix,
        input_scale: InputScale | str,
        *,
        clip: float | None = 10.0,
        std_floor: float = 1e-6,
    ) -> PreprocessPipeline:
        """Fit the steps that suit `input_scale` on the training samples of `matrix`.

        Parameters
        ----------
        matrix:
            Training samples only (fitting on held-out samples would leak them).
        input_scale:
            Scale of ``matrix.X``: ``counts`` get library-size normalisation (to the median
            training total) then log1p, ``normalized`` gets log1p, ``log`` neither; all but
            ``standardized`` are then standardised per gene.
        clip:
            Symmetric clip of the standardised values (``None``: no clip).
        std_floor:
            Genes whose training std is at or below this are scaled by 1 instead.
        """
        scale = InputScale(input_scale)
        X = matrix.X
        if scale in (InputScale.counts, InputScale.normalized) and (X < 0).any():
            raise ValueError(f"{scale.value} input must be non-negative")
        steps: list[Step] = []
        if scale is InputScale.counts:
            steps.append(NormalizeTotal(float(np.median(X.sum(axis=1, dtype=np.float64)))))
        if scale in (InputScale.counts, InputScale.normalized):
            steps.append(Log1p())
        current = X
        for step in steps:
            current = step.transform(current)
        if scale is not InputScale.standardized:
            steps.append(Standardize.fit(current, std_floor=std_floor, clip=clip))
        input_mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        return cls(input_scale=scale, gene_ids=matrix.gene_ids, steps=steps, input_mean=input_mean)

    @property
    def n_genes(self) -> int:
        return len(self.gene_ids)

    @property
    def fill_values(self) -> list[float]:
        """Per-gene training mean on the input scale, for genes a request lacks."""
        return [float(v) for v in self.input_mean]

    def transform(self, X: Array) -> Array:
        """Apply every step in numpy (the reference the torch module must match)."""
        if X.ndim != 2 or X.shape[1] != self.n_genes:
            raise ValueError(f"expected (n, {self.n_genes}) values in panel order, got {X.shape}")
        out = np.asarray(X, dtype=np.float32)
        for step in self.steps:
            out = step.transform(out)
        return out

    def torch_module(self) -> nn.Module:
        """The same steps as an nn.Sequential, to fuse in front of the encoder in ONNX."""
        return nn.Sequential(*(step.torch_module() for step in self.steps))

    def to_card(self) -> Preprocessing:
        """The card's description of these steps (fused into model.onnx)."""
        return Preprocessing(
            steps=[PreprocessStep(name=s.name, params=s.params()) for s in self.steps],
            params_file=PARAMS_NPZ,
            fused_in_graph=True,
        )

    def save(self, folder: Path) -> list[Path]:
        """Write preprocess.json and preprocess.npz into `folder`; returns their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": _FORMAT,
            "input_scale": self.input_scale.value,
            "gene_ids": self.gene_ids,
            "steps": [{"name": s.name, "params": s.params()} for s in self.steps],
        }
        arrays = {"input_mean": self.input_mean}
        for step in self.steps:
            arrays.update({f"{step.name}.{k}": v for k, v in step.arrays().items()})
        json_path, npz_path = folder / PARAMS_JSON, folder / PARAMS_NPZ
        json_path.write_text(json.dumps(meta, indent=1) + "\n")
        write_npz(npz_path, arrays)
        return [json_path, npz_path]

    @classmethod
    def load(cls, folder: Path) -> PreprocessPipeline:
        """Read what `save` wrote; arrays come back bit for bit."""
        meta = json.loads((folder / PARAMS_JSON).read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{folder / PARAMS_JSON}: unsupported format {meta.get('format')!r}")
        with np.load(folder / PARAMS_NPZ, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        steps = []
        for entry in meta["steps"]:
            prefix = entry["name"] + "."
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            steps.append(step_from_params(entry["name"], entry["params"], own))
        return cls(
            input_scale=InputScale(meta["input_scale"]),
            gene_ids=meta["gene_ids"],
            steps=steps,
            input_mean=arrays["input_mean"],
        )


def write_npz(path: Path, arrays: Mapping[str, Array]) -> None:
    """Write an npz for np.load with fixed zip timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, buffer.getvalue())
