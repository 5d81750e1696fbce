"""The fitted preprocessing of a model, saved as JSON + npz (never pickles).

Arrays live in ``preprocess.npz`` under ``"<step name>.<array>"`` (for example
``"standardize.mean"``) plus ``"input_mean"``, the per-gene training mean on the input scale that
becomes the card's ``panel.fill_values``: a gene a request lacks then standardises to about 0.

Per-sample steps can be fused into ONNX (`training.preprocess.fused.pipeline_module`). ComBat is
batch-level: it sits at position ``combat_at`` among the steps, runs in numpy from its stored
parameters (``combat.*`` arrays), and only the steps after it can be fused. No torch here.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from contract.card import GenePanel, InputScale, Preprocessing, PreprocessStep
from contract.matrix import ExpressionMatrix
from contract.preprocess.combat import ComBatModel
from contract.preprocess.recipe import fit_recipe_steps
from contract.preprocess.serial import combat_from_saved, combat_to_save
from contract.preprocess.steps import (
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
        combat: ComBatModel | None = None,
        combat_at: int = 0,
        batch_column: str | None = None,
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
        self.combat, self.combat_at, self.batch_column = combat, combat_at, batch_column

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

    @classmethod
    def fit_recipe(
        cls,
        matrix: ExpressionMatrix,
        input_scale: InputScale | str,
        recipe: Sequence[Mapping[str, Any]],
        *,
        gene_lengths: Mapping[str, float] | None = None,
    ) -> PreprocessPipeline:
        """Fit the steps a recipe names, in order, on the training samples of `matrix`.

        Parameters
        ----------
        matrix:
            Training samples only, without missing values (run QC first).
        input_scale:
            Scale of ``matrix.X`` (recorded; the recipe decides what is done to it).
        recipe:
            One mapping per step, ``{"step": name, **options}``: ``cpm``, ``normalize_total``
            (``target_sum``), ``tpm``/``fpkm`` (need `gene_lengths`), ``median_of_ratios``,
            ``vst`` (``fit_type`` parametric|mean, or a given trend ``a0``/``a1``; fitted as
            pydeseq2's ``vst(use_design=False)``, on the counts when ``median_of_ratios`` is
            the step before; a failed parametric fit is an error, not a silent mean), ``log1p``,
            ``log2p1``, ``combat`` (``batch`` obs column, ``covariates``, ``reference``,
            ``parametric``), ``select_variance``/``select_hvg`` (``n``), ``select_genes``
            (``genes``), ``standardize`` (``clip``), ``pca`` (``n_components``).
        gene_lengths:
            Gene id → length in bases, for tpm and fpkm.
        """
        fitted = fit_recipe_steps(matrix, recipe, gene_lengths)
        input_mean = matrix.X.mean(axis=0, dtype=np.float64).astype(np.float32)
        return cls(
            input_scale=InputScale(input_scale),
            gene_ids=matrix.gene_ids,
            steps=fitted.steps,
            input_mean=input_mean,
            combat=fitted.combat,
            combat_at=fitted.combat_at,
            batch_column=fitted.batch_column,
        )

    @property
    def n_genes(self) -> int:
        return len(self.gene_ids)

    def output_names(self) -> list[str]:
        """Names of the output columns: genes, fewer after a selection, PC1… after PCA."""
        names = list(self.gene_ids)
        for step in self.steps:
            indices = getattr(step, "indices", None)
            if indices is not None:
                names = [names[int(j)] for j in indices]
            components = getattr(step, "components", None)
            if components is not None:
                names = [f"PC{i + 1}" for i in range(components.shape[0])]
        return names

    @property
    def panel(self) -> GenePanel:
        """The genes this pipeline takes, filled with the training mean where a sample lacks one."""
        return GenePanel(ids=self.gene_ids, fill_values=self.fill_values)

    @property
    def fill_values(self) -> list[float]:
        """Per-gene training mean on the input scale, for genes a request lacks."""
        return [float(v) for v in self.input_mean]

    def transform(
        self, X: Array, *, batch: Sequence[str] | None = None, obs: pd.DataFrame | None = None
    ) -> Array:
        """Apply every step in numpy (the reference the torch module must match).

        Parameters
        ----------
        X:
            Input-scale values in panel order.
        batch:
            With ComBat: each sample's batch; batches unseen in training are adjusted with
            the stored priors (see `combat.ComBatModel.adjust_new_batch`).
        obs:
            With ComBat covariates: the samples' metadata.
        """
        return self.transform_with_notes(X, batch=batch, obs=obs)[0]

    def transform_with_notes(
        self, X: Array, *, batch: Sequence[str] | None = None, obs: pd.DataFrame | None = None
    ) -> tuple[Array, list[str]]:
        """`transform`, plus one note per batch said how ComBat treated it."""
        if X.ndim != 2 or X.shape[1] != self.n_genes:
            raise ValueError(f"expected (n, {self.n_genes}) values in panel order, got {X.shape}")
        out = np.asarray(X, dtype=np.float32)
        notes: list[str] = []
        for i, step in enumerate(self.steps):
            if self.combat is not None and i == self.combat_at:
                out, notes = self.apply_combat(out, batch, obs)
            out = step.transform(out)
        if self.combat is not None and self.combat_at == len(self.steps):
            out, notes = self.apply_combat(out, batch, obs)
        return out, notes

    def apply_combat(
        self, X: Array, batch: Sequence[str] | None, obs: pd.DataFrame | None
    ) -> tuple[Array, list[str]]:
        """ComBat alone, on values already through the steps before it; notes per batch."""
        if self.combat is None:
            raise ValueError("this pipeline has no ComBat step")
        if batch is None or len(batch) != X.shape[0]:
            raise ValueError(f"this pipeline runs ComBat: give each sample's {self.batch_column}")
        labels = [str(b) for b in batch]
        out = np.empty(X.shape, dtype=np.float64)
        notes = []
        for name in dict.fromkeys(labels):
            rows = np.array([b == name for b in labels])
            part_obs = None if obs is None else obs.iloc[np.flatnonzero(rows)]
            if name in self.combat.batches:
                out[rows] = self.combat.transform(X[rows], [name] * int(rows.sum()), part_obs)
                notes.append(f"{name}: training batch, stored batch effects removed")
            else:
                out[rows], note = self.combat.adjust_new_batch(X[rows], part_obs)
                notes.append(f"{name}: {note}")
        return out.astype(np.float32), notes

    def to_card(self) -> Preprocessing:
        """The card's description of these steps (fused into model.onnx)."""
        steps = [PreprocessStep(name=s.name, params=s.params()) for s in self.steps]
        if self.combat is not None:
            params = {"batch_column": self.batch_column, "reference": self.combat.reference}
            steps.insert(self.combat_at, PreprocessStep(name="combat", params=params))
        return Preprocessing(
            steps=steps, params_file=PARAMS_NPZ, fused_in_graph=self.combat is None
        )

    def save(self, folder: Path) -> list[Path]:
        """Write preprocess.json and preprocess.npz into `folder`; returns their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {
            "format": _FORMAT,
            "input_scale": self.input_scale.value,
            "gene_ids": self.gene_ids,
            "steps": [{"name": s.name, "params": s.params()} for s in self.steps],
        }
        arrays: dict[str, npt.NDArray[Any]] = {"input_mean": self.input_mean}
        for step in self.steps:
            arrays.update({f"{step.name}.{k}": v for k, v in step.arrays().items()})
        if self.combat is not None:
            combat_meta, combat_arrays = combat_to_save(self.combat)
            meta["combat"] = {
                **combat_meta,
                "at": self.combat_at,
                "batch_column": self.batch_column,
            }
            arrays.update({f"combat.{k}": v for k, v in combat_arrays.items()})
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
        combat = meta.get("combat")
        own = {k[7:]: v for k, v in arrays.items() if k.startswith("combat.")}
        return cls(
            input_scale=InputScale(meta["input_scale"]),
            gene_ids=meta["gene_ids"],
            steps=steps,
            input_mean=arrays["input_mean"],
            combat=None if combat is None else combat_from_saved(combat, own),
            combat_at=0 if combat is None else int(combat["at"]),
            batch_column=None if combat is None else combat["batch_column"],
        )


def write_npz(path: Path, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
    """Write an npz for np.load with fixed zip timestamps, so equal arrays give equal bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, buffer.getvalue())
