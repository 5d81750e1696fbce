"""Integrated gradients as an ONNX graph of forward operations only (``explain.onnx``).

The input gradient of a network built from the layers used here can be written without autograd:
run the layers forward, keeping each one's input, then apply each layer's transposed Jacobian in
reverse order, starting from the one-hot vector of the class explained (for an MLP,
W_1ᵀ diag(mask_1) … W_Lᵀ e_c, the masks being pre-activation > 0). Every op here is a plain
forward op, so `torch.onnx.export` writes the whole computation as an ordinary graph and the
service runs it with ONNX Runtime like any model. Integrated gradients (Sundararajan et al. 2017)
then average that gradient over `steps` midpoint-Riemann points x0 + α(x − x0) of the path from
the baseline profile x0 and multiply by (x − x0), as captum's ``IntegratedGradients`` with
``method="riemann_middle"`` does.

What is differentiated: the fused preprocessing (`training.preprocess.fused`: normalise-total,
per-length scaling, log1p / log2(1+x), standardise with its clip as a 0/1 mask, gene selection,
PCA), then linear layers and the activations ReLU, GELU (exact), ELU, SiLU, tanh and the logistic
sigmoid; dropout is the identity in eval mode. Anything else (DESeq2's median of ratios, the VST,
an unknown layer) raises `UnsupportedExplanation`, and the model is exported without an
explanation graph. A classifier's softmax is not differentiated: the logit of the class asked for
is explained (the class the model predicts, in the service).

Every export is verified twice: ONNX Runtime against the torch module run in float64, and the
hand-written gradient against torch autograd on the original model (float64).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch
from torch import nn

from contract.card import BASELINE_FILE, EXPLAIN_FILE, ExplainGraph
from contract.preprocess.steps import Array
from training.export.onnx import (
    BATCH_AXIS,
    INPUT_NAME,
    PARITY_ATOL,
    PARITY_FACTOR,
    ExportVerificationError,
    export_onnx,
)
from training.nn.heads import MLPHead
from training.nn.variants import GaussianEncoder
from training.preprocess import fused

log = logging.getLogger(__name__)

TARGET = "target"
ATTRIBUTIONS = "attributions"
DEFAULT_STEPS = 32
# the hand-written gradient against autograd, both in float64: only rounding separates them
AUTOGRAD_RTOL = 1e-6
_EPS = 1e-12  # the fused steps' floor under a sample's total

Tensor = torch.Tensor


class UnsupportedExplanation(ValueError):
    """The model has a layer or a preprocessing step whose input gradient is not written here."""


class _Op(nn.Module):
    """One layer: `step` runs it forward and keeps what its Jacobian needs; `vjp` applies the
    transposed Jacobian at that point to `v` (batch, out) → (batch, in)."""

    linear = False

    def step(self, h: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def vjp(self, saved: Tensor, v: Tensor) -> Tensor:
        raise NotImplementedError


class _Affine(_Op):
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


class _Activation(_Op):
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


class _Standardize(_Op):
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


class _Select(_Op):
    linear = True

    def __init__(self, twin: fused.SelectGenes) -> None:
        super().__init__()
        self.twin = twin

    def step(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.twin(h), h

    def vjp(self, saved: Tensor, v: Tensor) -> Tensor:
        index = self.twin.indices.unsqueeze(0).expand(v.shape[0], -1)
        return torch.zeros_like(saved).scatter(1, index, v)


class _PCA(_Op):
    linear = True

    def __init__(self, twin: fused.PCA) -> None:
        super().__init__()
        self.twin = twin

    def step(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.twin(h), h

    def vjp(self, saved: Tensor, v: Tensor) -> Tensor:
        return v @ self.twin.components.T


class _Log(_Op):
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


class _NormalizeTotal(_Op):
    def __init__(self, twin: fused.NormalizeTotal) -> None:
        super().__init__()
        self.twin = twin

    def step(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.twin(h), h

    def vjp(self, saved: Tensor, v: Tensor) -> Tensor:
        return _share_vjp(saved, v, self.twin.target_sum)


class _PerLength(_Op):
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


def _op(module: nn.Module) -> list[_Op]:
    """The ops of one module, in order (containers unrolled; eval-mode identities dropped)."""
    match module:
        case nn.Sequential() | nn.ModuleList():
            return [op for child in module for op in _op(child)]
        case GaussianEncoder():
            return [*_op(module.trunk), *_op(module.mu)]
        case MLPHead():
            return _op(module.layers)
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


class IntegratedGradients(nn.Module):
    """``(expression (n, genes), target (n,) int64) → attributions (n, genes)``.

    Parameters
    ----------
    modules:
        The model from input-scale expression to logits, in order (the fused preprocessing,
        the encoder, the head); each is unrolled into ops, or `UnsupportedExplanation` raised.
    baseline:
        The profile x0 (input scale, panel order) the path starts from.
    steps:
        Riemann points on the path (midpoint rule).
    """

    baseline: Tensor
    alphas: Tensor

    def __init__(self, modules: Sequence[nn.Module], baseline: Array, steps: int) -> None:
        super().__init__()
        if steps < 2:
            raise ValueError(f"steps must be at least 2, got {steps}")
        self.ops = nn.ModuleList([op for m in modules for op in _op(m)])
        self.steps = steps
        self.register_buffer("baseline", torch.from_numpy(np.asarray(baseline, np.float32).copy()))
        alphas = (np.arange(steps, dtype=np.float64) + 0.5) / steps
        self.register_buffer("alphas", torch.from_numpy(alphas.astype(np.float32)))

    @property
    def exact(self) -> bool:
        """Linear from input to logits: the Riemann mean is the exact integral."""
        return all(op.linear for op in self.chain)

    @property
    def chain(self) -> list[_Op]:
        """The ops, input first."""
        return [op for op in self.ops if isinstance(op, _Op)]

    def logits(self, expression: Tensor) -> Tensor:
        """The model's logits, through the same ops."""
        h = expression
        for op in self.chain:
            h, _ = op.step(h)
        return h

    def forward(self, expression: Tensor, target: Tensor) -> Tensor:
        n, genes = expression.shape
        diff = expression - self.baseline
        points = self.baseline + self.alphas.view(1, -1, 1) * diff.unsqueeze(1)
        h = points.reshape(-1, genes)
        saved = []
        chain = self.chain
        for op in chain:
            h, keep = op.step(h)
            saved.append(keep)
        classes = h.shape[1]
        wanted = torch.arange(classes, device=h.device).unsqueeze(0) == target.unsqueeze(1)
        v = wanted.to(h.dtype).unsqueeze(1).expand(n, self.steps, classes).reshape(-1, classes)
        for op, keep in zip(reversed(chain), reversed(saved), strict=True):
            v = op.vjp(keep, v)
        mean_gradient = v.reshape(n, self.steps, genes).mean(dim=1)
        return diff * mean_gradient


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


def export_explanation(
    staging: Path,
    model: Sequence[nn.Module],
    baseline: Array,
    inputs: Sequence[Array],
    *,
    steps: int = DEFAULT_STEPS,
    baseline_name: str = "training_mean",
) -> tuple[list[Path], ExplainGraph]:
    """Write and verify ``explain.onnx`` and ``baseline.npy`` in `staging`; returns them and the
    card's record.

    Parameters
    ----------
    staging:
        The version's staging folder.
    model:
        From input-scale expression to logits, in order (preprocessing, encoder, head).
    baseline:
        The baseline profile (input scale, panel order), e.g. the training inputs' mean.
    inputs:
        Input-scale batches for the checks (a few rows each: a row costs `steps` rows).
    steps:
        Riemann points.
    baseline_name:
        What the baseline is, for the card.

    Raises
    ------
    UnsupportedExplanation:
        A layer or step has no written gradient.
    ExportVerificationError:
        The graph is malformed, or disagrees with torch or with autograd.
    """
    explainer = IntegratedGradients(model, baseline, steps).eval()
    reference = nn.Sequential(*model).eval()
    path = staging / EXPLAIN_FILE
    n_genes = int(explainer.baseline.shape[0])
    export_onnx(
        explainer,
        n_genes,
        path,
        [ATTRIBUTIONS],
        extra_inputs=[(TARGET, torch.zeros(2, dtype=torch.int64))],
    )
    verify_explanation(path, explainer, reference, inputs)
    baseline_path = staging / BASELINE_FILE
    np.save(baseline_path, np.asarray(baseline, dtype=np.float32), allow_pickle=False)
    spec = ExplainGraph(
        steps=steps, baseline=baseline_name, exact=explainer.exact, baseline_file=BASELINE_FILE
    )
    return [path, baseline_path], spec


def predicted(model: nn.Module, x: Array) -> npt.NDArray[np.int64]:
    """The class each row's logits pick (the service explains that one)."""
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    return np.asarray(logits.argmax(dim=1).numpy(), dtype=np.int64)


def autograd_attributions(
    model: nn.Module, baseline: Tensor, x: Tensor, target: Tensor, steps: int
) -> Tensor:
    """Integrated gradients of logit[target] of `model` by torch autograd (same midpoint rule)."""
    alphas = (torch.arange(steps, dtype=x.dtype) + 0.5) / steps
    diff = x - baseline
    points = (baseline + alphas.view(1, -1, 1) * diff.unsqueeze(1)).reshape(-1, x.shape[1])
    points.requires_grad_(True)
    logits = model(points)
    picked = logits.gather(1, target.repeat_interleave(steps).unsqueeze(1)).sum()
    (grad,) = torch.autograd.grad(picked, points)
    return diff * grad.reshape(len(x), steps, -1).mean(dim=1)


def verify_explanation(
    path: Path, explainer: IntegratedGradients, model: nn.Module, inputs: Sequence[Array]
) -> float:
    """onnx.checker, the signature, ONNX Runtime vs the module (float64 reference) and the module
    vs autograd on `model` (both float64), on each batch of `inputs` with the predicted classes;
    returns the largest ONNX Runtime difference."""
    graph = onnx.load(str(path))
    try:
        onnx.checker.check_model(graph, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportVerificationError(f"{path}: onnx.checker rejected the graph: {exc}") from exc
    names = [i.name for i in graph.graph.input]
    outputs = [o.name for o in graph.graph.output]
    batch = graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    if names != [INPUT_NAME, TARGET] or outputs != [ATTRIBUTIONS] or batch != BATCH_AXIS:
        raise ExportVerificationError(
            f"{path}: graph takes {names} (batch axis {batch!r}) and gives {outputs}, expected "
            f"[{INPUT_NAME!r}, {TARGET!r}] → [{ATTRIBUTIONS!r}] on a dynamic {BATCH_AXIS!r} axis"
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exact = copy.deepcopy(explainer).double().eval()
    exact_model = copy.deepcopy(model).double().eval()
    worst = 0.0
    for x in inputs:
        target = predicted(model, x)
        with torch.no_grad():
            single = explainer(torch.from_numpy(x), torch.from_numpy(target)).numpy()
            double = exact(torch.from_numpy(x).double(), torch.from_numpy(target)).numpy()
        (have,) = session.run([ATTRIBUTIONS], {INPUT_NAME: x, TARGET: target})
        size = max(1.0, float(np.max(np.abs(double))) if double.size else 0.0)
        own = float(np.max(np.abs(single - double))) if double.size else 0.0
        off = float(np.max(np.abs(np.asarray(have, np.float64) - double))) if double.size else 0.0
        tolerance = max(PARITY_ATOL * size, PARITY_FACTOR * own)
        if not np.isfinite(off) or off > tolerance:
            raise ExportVerificationError(
                f"{path}: attributions differ from a float64 torch reference by {off:.3g} "
                f"(> {tolerance:.3g}) on a batch of {len(x)}"
            )
        want = autograd_attributions(
            exact_model,
            exact.baseline,
            torch.from_numpy(x).double(),
            torch.from_numpy(target),
            explainer.steps,
        ).numpy()
        gap = float(np.max(np.abs(want - double))) if want.size else 0.0
        if not np.isfinite(gap) or gap > AUTOGRAD_RTOL * size:
            raise ExportVerificationError(
                f"{path}: the written input gradient differs from autograd's by {gap:.3g} "
                f"(> {AUTOGRAD_RTOL * size:.3g}) on a batch of {len(x)}"
            )
        worst = max(worst, off)
    return worst


def check_inputs(parity: Sequence[Array], rows: int = 8) -> list[Array]:
    """A few rows of each parity batch: an explanation costs `steps` rows per row."""
    return [np.ascontiguousarray(batch[:rows]) for batch in parity if len(batch)]


def explanation_or_none(
    staging: Path, model: Sequence[nn.Module], baseline: Array, parity: Sequence[Array]
) -> tuple[list[Path], ExplainGraph | None]:
    """`export_explanation` on a few rows of the parity batches; nothing (and a logged reason)
    for a model with a layer or step it cannot differentiate, so the model is still exported."""
    try:
        return export_explanation(staging, model, baseline, check_inputs(parity))
    except UnsupportedExplanation as exc:
        log.warning("exported without an explanation graph: %s", exc)
        return [], None
