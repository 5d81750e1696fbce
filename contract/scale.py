"""Input-scale detection from the values alone (numpy only; training and the service share it).

The four scales of the model card: raw ``counts`` (non-negative integers), ``normalized`` linear
values (CPM/TPM: non-negative, fractional, large), ``log`` values (non-negative or nearly so,
small: log1p/log2(1+x) of normalised data stays below ~25) and ``standardized`` z-scores
(negative and positive, centred per gene). Small integer-valued data (every value ≤ 30) is
ambiguous between counts and log, so both are accepted there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from contract.card import InputScale
from contract.errors import InputScaleError

LOG_MAX = 30.0  # log2(1e9) ≈ 30: no log-scale expression value goes beyond this
SAMPLE_CAP = 200_000  # values looked at; a strided subsample keeps detection O(1) in the size


@dataclass(frozen=True)
class ScaleReport:
    """The detected scale, the scales the values are compatible with, and why."""

    scale: str
    compatible: frozenset[str]
    reason: str
    min: float
    max: float
    integer_fraction: float

    def accepts(self, expected: str) -> bool:
        """Whether values like these may be given to a model expecting `expected`."""
        # counts and normalised input both go through library-size normalisation first
        linear = {"counts", "normalized"}
        if expected in linear:
            return bool(self.compatible & linear)
        return expected in self.compatible


def detect_scale(values: npt.NDArray[np.floating]) -> ScaleReport:
    """Guess the scale of a samples × genes array from integrality, range and signs."""
    finite = _sample(values)
    if finite.size == 0:
        raise ValueError("no finite values to detect the scale from")
    lo, hi = float(finite.min()), float(finite.max())
    # |x - round(x)| < 1e-6, computed in one scratch array (this runs on every request)
    off = np.rint(finite)
    np.subtract(finite, off, out=off)
    np.abs(off, out=off)
    integer = np.count_nonzero(off < 1e-6) / finite.size
    stats = {"min": lo, "max": hi, "integer_fraction": integer}
    if lo < 0:
        # z-scores are centred per gene: the median gene mean sits near 0
        centre = _median_gene_mean(values)
        if abs(centre) < 0.25 and hi <= LOG_MAX * 2:
            why = f"negative values (min {lo:.3g}) and gene means centred near 0 ({centre:.3g})"
            return ScaleReport("standardized", frozenset({"standardized"}), why, **stats)
        why = f"negative values (min {lo:.3g}) but not centred per gene: a log ratio/offset scale"
        return ScaleReport("log", frozenset({"log"}), why, **stats)
    if integer > 0.999:
        if hi <= LOG_MAX:
            why = f"non-negative integers no larger than {hi:.0f}: counts, or coarse log values"
            return ScaleReport("counts", frozenset({"counts", "log"}), why, **stats)
        why = f"non-negative integers up to {hi:.0f}"
        return ScaleReport("counts", frozenset({"counts"}), why, **stats)
    if hi > LOG_MAX:
        why = f"non-negative fractional values up to {hi:.4g}: a linear normalised scale"
        return ScaleReport("normalized", frozenset({"normalized"}), why, **stats)
    why = f"non-negative fractional values no larger than {hi:.3g}: a log scale"
    return ScaleReport("log", frozenset({"log"}), why, **stats)


def _sample(values: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    """At most ~SAMPLE_CAP finite values, evenly strided over the whole array.

    The stride is taken before the finite filter, so a 256 × 20,000 request costs a 200,000-value
    pass, not a full-matrix mask and copy (that took longer than the model). For all-finite input
    (every request the service accepts: NaN/Inf are refused first) this is the same sample as
    striding the finite values; a sample that happens to hit only non-finite values falls back to
    the full filter.
    """
    flat = values.reshape(-1)
    if flat.size > SAMPLE_CAP:
        flat = flat[:: flat.size // SAMPLE_CAP + 1]
    finite = np.isfinite(flat)
    sample: npt.NDArray[np.floating] = flat if finite.all() else flat[finite]
    if sample.size == 0 and flat.size != values.size:
        sample = values[np.isfinite(values)]
        sample = sample[:: sample.size // SAMPLE_CAP + 1]
    return sample


def _median_gene_mean(values: npt.NDArray[np.floating]) -> float:
    if values.ndim != 2 or values.shape[0] < 2:
        return float(np.nanmedian(values))
    with np.errstate(all="ignore"):
        return float(np.nanmedian(np.nanmean(values, axis=0)))


# what a caller of the HTTP API can do about a refused scale; training passes its own flags
API_REMEDY = (
    "transform them first, or declare the scale with ?input_scale= if the detection is wrong"
)


def require_scale(
    values: npt.NDArray[np.floating],
    expected: InputScale,
    declared: InputScale | None = None,
    report: ScaleReport | None = None,
    *,
    remedy: str = API_REMEDY,
) -> ScaleReport | None:
    """Refuse values on a scale a model cannot take (422 naming both scales and why).

    Parameters
    ----------
    values:
        The samples × genes input.
    expected:
        The scale the model (or pipeline) takes.
    declared:
        The scale the caller vouches for: detection is skipped, a mismatch is still refused.
    report:
        A detection already made on `values`, reused instead of detecting again.
    remedy:
        What the caller can do about it, ending the message (the API's query parameter by
        default; the CLI names its flags).
    """
    if declared is not None:
        if declared is expected or {declared, expected} <= {
            InputScale.counts,
            InputScale.normalized,
        }:
            return None
        raise InputScaleError(
            f"the input was declared {declared.value} but this model expects {expected.value}",
            detected_scale=declared.value,
            expected_scale=expected.value,
        )
    report = report or detect_scale(values)
    if not report.accepts(expected.value):
        raise InputScaleError(
            f"the values look like {report.scale} ({report.reason}) but this model expects "
            f"{expected.value}; {remedy}",
            detected_scale=report.scale,
            expected_scale=expected.value,
        )
    return report


# the scales whose values cannot be negative (counts, CPM/TPM, log1p/log2(1+x) of those); a
# rounding error may leave -0.0 or a hair below it
NON_NEGATIVE = frozenset({InputScale.counts, InputScale.normalized, InputScale.log})
NEGATIVE_TOLERANCE = 1e-6
MAX_NAMED = 50


def refuse_negative(
    values: npt.NDArray[np.floating],
    expected: InputScale,
    sample_ids: Sequence[str] | None,
    declared: InputScale | None = None,
) -> None:
    """Refuse negative values for a model whose scale has none (`InputScaleError` naming the
    samples that hold them), however the values were detected: all −5 looks like a log-ratio
    scale to `detect_scale`, but log1p of an expression level is never below 0.

    A declared z-score scale is left to `require_scale` (its mismatch is the better message).
    `sample_ids` None: the samples are named by their row numbers, from 0.
    """
    if expected not in NON_NEGATIVE or declared is InputScale.standardized or values.size == 0:
        return
    if float(values.min()) >= -NEGATIVE_TOLERANCE:  # one pass, no temporary: every request
        return
    rows = np.flatnonzero((values < -NEGATIVE_TOLERANCE).any(axis=1))
    samples = [str(i) if sample_ids is None else sample_ids[i] for i in rows.tolist()]
    more = f" and {len(samples) - MAX_NAMED} more" if len(samples) > MAX_NAMED else ""
    raise InputScaleError(
        f"{len(samples)} sample(s) hold negative values (min {float(values.min()):.4g}), which "
        f"no {expected.value}-scale input has (this model expects {expected.value}: "
        f"non-negative values): {', '.join(samples[:MAX_NAMED])}{more}",
        samples=samples[:MAX_NAMED],
        detected_scale="negative",
        expected_scale=expected.value,
    )
