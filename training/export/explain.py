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

What is differentiated (the ops of `training.export.gradients`): the fused preprocessing
(`training.preprocess.fused`: normalise-total, per-length scaling, log1p / log2(1+x),
standardise with its clip as a 0/1 mask, gene selection, PCA), then linear layers and the
activations ReLU, GELU (exact), ELU, SiLU, tanh and the logistic sigmoid; dropout is the identity
in eval mode. Anything else (DESeq2's median of ratios, the VST, an unknown layer) raises
`UnsupportedExplanation`, and the model is exported without an explanation graph. A classifier's
softmax is not differentiated: the logit of the class asked for is explained (the class the
model predicts, in the service).

Every export is verified twice: ONNX Runtime against the torch module run in float64, and the
hand-written gradient against torch autograd on the original model (float64).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch
from torch import nn

from contract.card import BASELINE_FILE, EXPLAIN_FILE, ExplainGraph
from contract.preprocess.steps import Array
from training.export.gradients import (
    Op,
    UnsupportedExplanation,
    ops_of,
    sklearn_layers,
)
from training.export.onnx import (
    BATCH_AXIS,
    INPUT_NAME,
    PARITY_ATOL,
    PARITY_FACTOR,
    ExportVerificationError,
    export_onnx,
)

__all__ = [
    "ATTRIBUTIONS",
    "TARGET",
    "IntegratedGradients",
    "UnsupportedExplanation",
    "explanation_or_none",
    "export_explanation",
    "sklearn_layers",
    "verify_explanation",
]

log = logging.getLogger(__name__)

TARGET = "target"
ATTRIBUTIONS = "attributions"
DEFAULT_STEPS = 32
# the hand-written gradient against autograd, both in float64: only rounding separates them
AUTOGRAD_RTOL = 1e-6

Tensor = torch.Tensor


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
        self.ops = nn.ModuleList([op for m in modules for op in ops_of(m)])
        self.steps = steps
        self.register_buffer("baseline", torch.from_numpy(np.asarray(baseline, np.float32).copy()))
        alphas = (np.arange(steps, dtype=np.float64) + 0.5) / steps
        self.register_buffer("alphas", torch.from_numpy(alphas.astype(np.float32)))

    @property
    def exact(self) -> bool:
        """Linear from input to logits: the Riemann mean is the exact integral."""
        return all(op.linear for op in self.chain)

    @property
    def chain(self) -> list[Op]:
        """The ops, input first."""
        return [op for op in self.ops if isinstance(op, Op)]

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
