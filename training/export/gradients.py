"""Input gradients written with forward operations only: one op per layer or preprocessing step.

Each `Op` runs its layer forward (`step`), keeping what its Jacobian needs, and applies the
transposed Jacobian at that point to a vector (`vjp`). `ops_of` unrolls a model into ops, or
raises `UnsupportedExplanation` for a layer whose gradient is not written here; `sklearn_layers`
turns the scikit-learn classifiers that have one into torch layers. `training.export.explain`
chains them into the integrated-gradients graph.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from training.nn.heads import MLPHead
from training.nn.variants import GaussianEncoder
from training.preprocess import fused

_EPS = 1e-12  # the fused steps' floor under a sample's total

Tensor = torch.Tensor


class UnsupportedExplanation(ValueError):
    """The model has a layer or a preprocessing step whose input gradient is not written here."""


class Op(nn.Module):
    """One layer: `step` runs it forward and keeps what its Jacobian needs; `vjp` applies the
    transposed Jacobian at that point to `v` (batch, out) → (batch, in)."""

    linear = False

    def step(self, h: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def vjp(self, saved: Tensor, v: Tensor) -> Tensor:
        raise NotImplementedError


class _Affine(Op):
    linear = True

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        self.layer = layer

    def step(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.layer(h), h

    def vjp(self, saved: Tensor, v: Tensor) -> Tensor:
        return v @ self.layer.weight


def _gelu_grad(z: Tensor) -> Tensor:
    cdf = 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))
    return cdf + z * torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)


def _silu_grad(z: Tensor) -> Tensor:
    s = torch.sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


class _Activation(Op):
    """An elementwise activation; its Jacobian is diagonal, the derivative at the input."""

    def __init__(self, act: Callable[[Tensor], Tensor], grad: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.act, self.grad = act, grad

    def step(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.act(h), h

    def vjp(self, saved: Tensor, v: Tensor) -> Tensor:
        return v * self.grad(saved)


def _relu() -> _Activation:
    # as torch's ReLU backward: 1 where the pre-activation is > 0, else 0
    return _Activation(torch.relu, lambda z: (z > 0).to(z.dtype))


def _elu(alpha: float) -> _Activation:
    return _Activation(
        lambda z: nn.functional.elu(z, alpha),
        lambda z: torch.where(z > 0, torch.ones_like(z), alpha * torch.exp(z)),
    )


def _tanh() -> _Activation:
    return _Activation(torch.tanh, lambda z: 1.0 - torch.tanh(z) ** 2)


def _sigmoid() -> _Activation:
    return _Activation(torch.sigmoid, lambda z: torch.sigmoid(z) * (1.0 - torch.sigmoid(z)))


class _Standardize(Op):
    def __init__(self, twin: fused.Standardize) -> None:
        super().__init__()
        self.twin = twin
        self.linear = twin.clip is None

    def step(self, h: Tensor) -> tuple[Tensor, Tensor]:
        z = (h - self.twin.mean) / self.twin.scale
        clip = self.twin.clip
        return (z if clip is None else torch.clamp(z, -clip, clip)), z

    def vjp(self, saved: Tensor, v: Tensor) -> Tensor:
        g = v / self.twin.scale
        clip = self.twin.clip
        if clip is None:
            return g
        # the clip passes the gradient where -clip <= z <= clip, as torch.clamp's backward does
        return g * ((saved >= -clip) & (saved <= clip)).to(g.dtype)


class _Select(Op):
    linear = True

    def __init__(self, twin: fused.SelectGenes) -> None:
        super().__init__()
        self.twin = twin

    def step(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.twin(h), h

    def vjp(self, saved: Tensor, v: Tensor) -> Tensor:
        index = self.twin.indices.unsqueeze(0).expand(v.shape[0], -1)
        return torch.zeros_like(saved).scatter(1, index, v)


class _PCA(Op):
    linear = True

    def __init__(self, twin: fused.PCA) -> None:
        super().__init__()
        self.twin = twin

    def step(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.twin(h), h

    def vjp(self, saved: Tensor, v: Tensor) -> Tensor:
        return v @ self.twin.components.T


class _Log(Op):
    """log1p, or log2(1 + x) with `base` ln 2."""

    def __init__(self, twin: nn.Module, base: float) -> None:
        super().__init__()
        self.twin, self.base = twin, base

    def step(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.twin(h), h

    def vjp(self, saved: Tensor, v: Tensor) -> Tensor:
        return v / ((1.0 + saved) * self.base)


def _share_vjp(x: Tensor, v: Tensor, scale: float) -> Tensor:
    """vᵀ J of x ↦ scale · x / max(Σx, ε) per row: scale (v/S − (v·x)/S²), the second term
    only where the floor is not in force (it has no gradient there)."""
    total = x.sum(dim=1, keepdim=True)
    floored = torch.clamp(total, min=_EPS)
    free = (total >= _EPS).to(x.dtype)
    dot = (v * x).sum(dim=1, keepdim=True)
    return scale * (v / floored - free * dot / (floored * floored))


class _NormalizeTotal(Op):
    def __init__(self, twin: fused.NormalizeTotal) -> None:
        super().__init__()
        self.twin = twin

    def step(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.twin(h), h

    def vjp(self, saved: Tensor, v: Tensor) -> Tensor:
        return _share_vjp(saved, v, self.twin.target_sum)


class _PerLength(Op):
    def __init__(self, twin: fused.PerLength) -> None:
        super().__init__()
        self.twin = twin

    def step(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.twin(h), h

    def vjp(self, saved: Tensor, v: Tensor) -> Tensor:
        lengths = self.twin.lengths
        if self.twin.unit == "tpm":  # rate = x / L, then shares of the rates × 1e6
            return _share_vjp(saved / lengths, v, 1e6) / lengths
        return _share_vjp(saved, v / (lengths / 1e3), 1e6)  # CPM, then per kilobase


def ops_of(module: nn.Module) -> list[Op]:
    """The ops of one module, in order (containers unrolled; eval-mode identities dropped)."""
    match module:
        case nn.Sequential() | nn.ModuleList():
            return [op for child in module for op in ops_of(child)]
        case GaussianEncoder():
            return [*ops_of(module.trunk), *ops_of(module.mu)]
        case MLPHead():
            return ops_of(module.layers)
        case nn.Dropout() | nn.Identity():
            return []
        case nn.Linear():
            return [_Affine(module)]
        case nn.ReLU():
            return [_relu()]
        case nn.GELU() if module.approximate == "none":
            return [_Activation(nn.functional.gelu, _gelu_grad)]
        case nn.ELU():
            return [_elu(float(module.alpha))]
        case nn.SiLU():
            return [_Activation(nn.functional.silu, _silu_grad)]
        case nn.Tanh():
            return [_tanh()]
        case nn.Sigmoid():
            return [_sigmoid()]
        case fused.Standardize():
            return [_Standardize(module)]
        case fused.SelectGenes():
            return [_Select(module)]
        case fused.PCA():
            return [_PCA(module)]
        case fused.Log1p():
            return [_Log(module, 1.0)]
        case fused.Log2p1():
            return [_Log(module, math.log(2.0))]
        case fused.NormalizeTotal():
            return [_NormalizeTotal(module)]
        case fused.PerLength():
            return [_PerLength(module)]
    what = type(module).__name__
    raise UnsupportedExplanation(
        f"no input gradient is written for {what}: explanations cover linear layers, ReLU, "
        "GELU, ELU, SiLU, tanh, sigmoid, dropout and the preprocessing steps normalize_total, "
        "cpm/tpm, log1p, log2p1, standardize, gene selection and PCA"
    )


def sklearn_layers(model: Any) -> list[nn.Module]:
    """A fitted scikit-learn classifier as torch layers from features to logits.

    LogisticRegression (the ``logistic``, ``ridge``, ``lasso`` and ``elastic_net`` baselines):
    one linear layer; MLPClassifier: its layers and activation. A binary model's one decision
    value z becomes the logits (−z/2, z/2), whose softmax is its (1 − σ(z), σ(z)). Any other
    estimator raises `UnsupportedExplanation`.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if isinstance(model, LogisticRegression):
        weights, biases = [np.asarray(model.coef_)], [np.asarray(model.intercept_)]
        activation = None
    elif isinstance(model, MLPClassifier):
        weights = [np.asarray(w).T for w in model.coefs_]
        biases = [np.asarray(b) for b in model.intercepts_]
        activation = model.activation
    else:
        raise UnsupportedExplanation(
            f"{type(model).__name__} has no input gradient: explanations cover logistic "
            "regression and MLP baselines (use permutation importance in the report instead)"
        )
    if weights[-1].shape[0] == 1:  # binary: one decision value
        weights[-1] = np.concatenate([-weights[-1] / 2, weights[-1] / 2])
        biases[-1] = np.concatenate([-biases[-1] / 2, biases[-1] / 2])
    acts: dict[str | None, Callable[[], nn.Module]] = {
        "relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid, "identity": nn.Identity,
    }  # fmt: skip
    layers: list[nn.Module] = []
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        linear = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.astype(np.float32)))
            linear.bias.copy_(torch.from_numpy(b.astype(np.float32)))
        layers.append(linear)
        if i < len(weights) - 1:
            layers.append(acts[activation]())
    return layers
