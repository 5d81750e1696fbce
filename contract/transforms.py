"""Input transforms: values on another scale a model accepts, brought to its input scale.

A card's `input_transforms` name the other scales a model takes (raw counts, say) and the
per-sample steps that make its input scale from them (scale each sample to a total, then log1p:
how scanpy users hold their data). `choose` decides which accepted scale the values are on,
from the caller's declaration or by detection (`contract.scale.detect_scale`); `apply` runs the
steps in numpy. Library sizes are summed over every gene the caller sends, before alignment to
the panel, as they were over the whole transcriptome when the training data were made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from contract.card import InputScale, InputTransform, TransformStep
from contract.errors import InputScaleError
from contract.preprocess.steps import Log1p, Log2p1, NormalizeTotal, Step
from contract.scale import detect_scale, require_scale

LINEAR = frozenset({InputScale.counts, InputScale.normalized})


@dataclass(frozen=True)
class ScaleChoice:
    """The scale the values are on, and the transform to the model's scale (None: none needed)."""

    scale: InputScale
    transform: InputTransform | None


def _step(step: TransformStep) -> Step:
    if step.name == "normalize_total":
        return NormalizeTotal(step.params["target_sum"])
    return Log1p() if step.name == "log1p" else Log2p1()


def apply(transform: InputTransform, values: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Run the transform's steps on a samples × genes float32 array."""
    out = np.asarray(values, dtype=np.float32)
    for step in transform.steps:
        out = _step(step).transform(out)
    return out


def _same(a: InputScale, b: InputScale) -> bool:
    # counts and linear normalised values give the same result once scaled to a total
    return a is b or {a, b} <= LINEAR


def choose(
    values: npt.NDArray[np.floating],
    expected: InputScale,
    transforms: Sequence[InputTransform] = (),
    declared: InputScale | None = None,
) -> ScaleChoice:
    """Which accepted scale the values are on; `InputScaleError` naming them all if none fits.

    Parameters
    ----------
    values:
        The samples × genes input.
    expected:
        The model's input scale.
    transforms:
        The card's input transforms: other scales it accepts, each with its steps.
    declared:
        The scale the caller vouches for (detection skipped); still refused if not accepted.
    """
    if not transforms:
        require_scale(values, expected, declared)
        return ScaleChoice(declared or expected, None)
    if declared is not None:
        if declared is expected:
            return ScaleChoice(expected, None)
        for transform in transforms:
            if _same(declared, transform.scale):
                return ScaleChoice(declared, transform)
        raise _refused(expected, transforms, f"the input was declared {declared.value}", declared)
    report = detect_scale(values)
    detected = InputScale(report.scale)
    # the detected scale first: small integers are counts, even though they could be coarse logs
    for transform in transforms:
        if detected is not expected and _same(detected, transform.scale):
            return ScaleChoice(detected, transform)
    if report.accepts(expected.value):
        return ScaleChoice(expected, None)
    why = f"the values look like {report.scale} ({report.reason})"
    raise _refused(expected, transforms, why, detected)


def accepted(expected: InputScale, transforms: Sequence[InputTransform]) -> str:
    """The scales a model takes, in words, with the steps it applies to each other one."""
    others = "; ".join(f"{t.describe()} (applied by the service)" for t in transforms)
    return f"{expected.value}, or {others}" if others else expected.value


def _refused(
    expected: InputScale, transforms: Sequence[InputTransform], why: str, seen: InputScale
) -> InputScaleError:
    return InputScaleError(
        f"{why} but this model takes {accepted(expected, transforms)}; send values on one of "
        "these scales (its own input is made from "
        + " or ".join(t.scale.value for t in transforms)
        + " by the steps named), or declare the scale with ?input_scale= if the detection is "
        "wrong",
        detected_scale=seen.value,
        expected_scale=expected.value,
        accepted_scales=[expected.value, *(t.scale.value for t in transforms)],
        transforms=[t.describe() for t in transforms],
    )
