"""A fitted ComBatModel as JSON-safe scalars plus named arrays (for the pipeline's npz)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from contract.preprocess.combat import ComBatModel

_ARRAYS = ("alpha", "beta", "var_pooled", "gamma_star", "delta_star", "usable")


def combat_to_save(model: ComBatModel) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """Scalars for preprocess.json and arrays for preprocess.npz."""
    meta = {
        "batches": model.batches,
        "reference": model.reference,
        "parametric": model.parametric,
        "covariates": model.covariates,
        "prior_t2": model.prior_t2,
        "prior_a": model.prior_a,
    }
    return meta, {name: np.asarray(getattr(model, name)) for name in _ARRAYS}


def combat_from_saved(meta: dict[str, Any], arrays: dict[str, npt.NDArray[Any]]) -> ComBatModel:
    """Rebuild what `combat_to_save` wrote; arrays come back bit for bit."""
    missing = [name for name in _ARRAYS if name not in arrays]
    if missing:
        raise ValueError(f"the ComBat parameters lack arrays {missing}")
    return ComBatModel(
        batches=[str(b) for b in meta["batches"]],
        reference=meta["reference"],
        parametric=bool(meta["parametric"]),
        covariates={str(k): [str(v) for v in vs] for k, vs in meta["covariates"].items()},
        alpha=arrays["alpha"],
        beta=arrays["beta"],
        var_pooled=arrays["var_pooled"],
        gamma_star=arrays["gamma_star"],
        delta_star=arrays["delta_star"],
        usable=arrays["usable"].astype(bool),
        prior_t2=float(meta["prior_t2"]),
        prior_a=float(meta["prior_a"]),
    )
