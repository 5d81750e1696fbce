"""ONNX export of a torch graph and its verification (checker + ONNX Runtime parity)."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch
from torch import nn

from contract.preprocess.steps import Array

INPUT_NAME = "expression"
BATCH_AXIS = "batch"
OPSET = 18
PARITY_ATOL = 1e-4
# ONNX Runtime may be this many times as far from the float64 reference as torch's own float32
# result is (see verify_onnx); measured ratios on 47,192-gene layers were 0.2-1.5
PARITY_FACTOR = 10.0


class ExportVerificationError(RuntimeError):
    """The exported graph is malformed or disagrees with the torch module."""


def export_onnx(
    module: nn.Module,
    n_in: int,
    path: Path,
    output_names: Sequence[str],
    input_name: str = INPUT_NAME,
    extra_inputs: Sequence[tuple[str, torch.Tensor]] = (),
) -> None:
    """Export `module` (eval mode) to one self-contained ONNX file with a dynamic batch axis.

    Parameters
    ----------
    module:
        Takes one float32 tensor (batch, n_in) and returns one tensor or a tuple.
    n_in:
        Width of the input (genes for a whole model, the embedding for a head).
    path:
        Destination .onnx file; weights are embedded, no external data file is written.
    output_names:
        Names of the graph outputs, in the module's return order.
    input_name:
        Name of the graph input.
    extra_inputs:
        Further inputs after the first, each a name and an example tensor whose first axis is
        the same dynamic batch axis (batch size 2), e.g. the class index of an explanation.
    """
    module.eval()
    _reuse_torchlib_registry()
    example = torch.zeros(2, n_in, dtype=torch.float32)
    batch = torch.export.Dim(BATCH_AXIS)
    # the torch.export-based exporter is the maintained one in torch 2.x (the TorchScript one is
    # deprecated); it writes the same bytes for the same weights, so re-runs are reproducible
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            (example, *(tensor for _, tensor in extra_inputs)),
            dynamo=True,
            input_names=[input_name, *(name for name, _ in extra_inputs)],
            output_names=list(output_names),
            opset_version=OPSET,
            # by position: any arg name; one Dim object, so every input shares the batch axis
            dynamic_shapes=tuple({0: batch} for _ in range(1 + len(extra_inputs))),
            external_data=False,
            verbose=False,
        )
    if program is None:
        raise ExportVerificationError("torch.onnx.export returned no program")
    # the exporter annotates every node with its Python stack trace (absolute paths of this
    # checkout, line numbers): not for a shared model file, and it breaks byte-reproducibility
    for node in program.model.graph.all_nodes():
        node.metadata_props.clear()
    program.save(str(path), external_data=False)


def verify_onnx(
    path: Path,
    module: nn.Module,
    output_names: Sequence[str],
    inputs: Sequence[Array],
    input_name: str = INPUT_NAME,
) -> float:
    """Check the graph's structure and its ONNX Runtime outputs against torch; returns the max diff.

    The reference is the module run in float64. A float32 result of a layer over n inputs
    carries a rounding error that grows with n and with the size of the terms summed (about
    √n · 6e-8 of them for random rounding): over a 47,192-gene panel with trained weights, torch
    itself is 1e-4 or more away from the exact value, and ONNX Runtime, which sums in another
    order, as far again. A fixed absolute tolerance therefore fails correct wide exports (it did,
    at 5.5e-4) while it is loose for narrow ones. Each output of ONNX Runtime must instead be
    within ``PARITY_FACTOR`` times torch float32's own error of the float64 reference, or within
    ``PARITY_ATOL``, whichever is larger: a wrong weight, step or op moves outputs by far more
    than rounding does.

    Parameters
    ----------
    path:
        The exported file.
    module:
        The torch module it came from (run in eval mode as the reference).
    output_names:
        Expected graph output names, in order.
    inputs:
        Float32 (batch, n_in) arrays; use several batch sizes and real as well as random data.
    input_name:
        The graph's one input.

    Raises
    ------
    ExportVerificationError:
        The checker fails, the signature differs, or an output is further from the float64
        reference than the tolerance above.
    """
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportVerificationError(f"{path}: onnx.checker rejected the graph: {exc}") from exc
    _check_signature(model, output_names, input_name)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    module.eval()
    exact = copy.deepcopy(module).double().eval()
    # per output: (torch float32's error, ONNX Runtime's error, the batch where it was worst)
    errors: dict[str, tuple[float, float, int]] = dict.fromkeys(output_names, (0.0, 0.0, 0))
    for batch in inputs:
        with torch.no_grad():
            single = _outputs(module(torch.from_numpy(batch)))
            double = _outputs(exact(torch.from_numpy(batch).double()))
        got = session.run(list(output_names), {input_name: batch})
        for name, want, ref, have in zip(output_names, single, double, got, strict=True):
            own = _max_abs(want.numpy().astype(np.float64) - ref.numpy())
            off = _max_abs(np.asarray(have, dtype=np.float64) - ref.numpy())
            before = errors[name]
            errors[name] = (max(before[0], own), max(before[1], off),
                            len(batch) if off > before[1] else before[2])  # fmt: skip
    worst = 0.0
    for name, (own, off, batch_size) in errors.items():
        tolerance = max(PARITY_ATOL, PARITY_FACTOR * own)
        if not np.isfinite(off) or off > tolerance:
            raise ExportVerificationError(
                f"{path}: output {name!r} differs from a float64 torch reference by {off:.3g} "
                f"(> {tolerance:.3g}: torch float32 is off by {own:.3g}) on a batch of "
                f"{batch_size}"
            )
        worst = max(worst, off)
    return worst


def _outputs(out: torch.Tensor | tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    return list(out) if isinstance(out, tuple) else [out]


def _max_abs(diff: npt.NDArray[Any]) -> float:
    return float(np.max(np.abs(diff))) if diff.size else 0.0


def check_parity(
    want: npt.NDArray[Any], have: npt.NDArray[Any], atol: float, what: str, batch: int
) -> float:
    """The largest |want - have|; ExportVerificationError saying `what` if it is over `atol`."""
    diff = float(np.max(np.abs(want - have))) if want.size else 0.0
    if not np.isfinite(diff) or diff > atol:
        raise ExportVerificationError(f"{what} by {diff:.3g} (> {atol:.3g}) on a batch of {batch}")
    return diff


def _check_signature(model: onnx.ModelProto, output_names: Sequence[str], input_name: str) -> None:
    inputs = list(model.graph.input)
    if [i.name for i in inputs] != [input_name]:
        raise ExportVerificationError(f"graph inputs are {[i.name for i in inputs]}")
    first = inputs[0].type.tensor_type.shape.dim[0]
    if first.dim_param != BATCH_AXIS:
        raise ExportVerificationError(f"input batch axis is {first}, not dynamic {BATCH_AXIS!r}")
    outputs = [o.name for o in model.graph.output]
    if outputs != list(output_names):
        raise ExportVerificationError(f"graph outputs are {outputs}, expected {list(output_names)}")


_PATCH_LOCK = threading.Lock()


def _reuse_torchlib_registry() -> None:
    """Build the exporter's table of ONNX translations once per process, not once per export.

    torch.onnx.export(dynamo=True) rebuilds it from onnxscript's torchlib on every call (it
    re-reads the source of ~500 functions): ~0.8 s of a fine-tuning job's two exports, measured
    by tests/perf/bench_finetune.py. Each export gets its own copy of the table (a custom
    translation table, which this project never passes, would be added to the copy only).
    """
    from torch.onnx._internal.exporter import _registration

    registry_cls: Any = _registration.ONNXRegistry
    with _PATCH_LOCK:
        if getattr(registry_cls, "_genexfer_cached", False):
            return
        build = registry_cls.from_torchlib

        @functools.cache
        def cached(opset_version: int) -> Any:
            return build(opset_version=opset_version)

        def from_torchlib(cls: type, opset_version: int = OPSET) -> Any:
            table = cached(opset_version)
            fresh = copy.copy(table)
            fresh.functions = {k: list(v) for k, v in table.functions.items()}
            return fresh

        registry_cls.from_torchlib = classmethod(from_torchlib)
        registry_cls._genexfer_cached = True


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    # the exporter logs optional-dependency notices (torchvision) and torch.export emits a
    # FutureWarning from its own internals; neither is actionable here
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            # several inputs on one batch axis: the exporter names it once and says so
            warnings.filterwarnings(
                "ignore", message=r".*shares the same shape constraints.*", category=UserWarning
            )
            yield
    finally:
        logger.setLevel(level)
