"""Input scale on the command line: the one check every `genexfer train` step makes, and the one
conversion it offers (counts → log1p of library-size-normalised values, when asked).

The check is `contract.scale.require_scale`, the service's own, with a remedy that names the
command-line flags instead of the API's query parameter, so the same bad file gets the same
message from pretrain, finetune and evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contract.card import InputScale
from contract.errors import InputScaleError
from contract.matrix import ExpressionMatrix
from contract.preprocess.steps import Log1p, NormalizeTotal, Step
from contract.scale import detect_scale, require_scale

SCALE_REMEDY = (
    "give the scale the values are on (pretrain: --input-scale), or convert counts with "
    "--counts-to-log (finetune, evaluate: log1p of library-size-normalised values)"
)
TARGET_SUM = 1e4  # scanpy's normalize_total default, the usual log1p-normalised scale


@dataclass(frozen=True)
class Conversion:
    """Library-size normalisation to `target_sum` then log1p, applied to counts before training."""

    target_sum: float = TARGET_SUM

    def __post_init__(self) -> None:
        if not self.target_sum > 0:
            raise ValueError(f"--target-sum must be positive, got {self.target_sum}")

    def apply(self, matrix: ExpressionMatrix) -> ExpressionMatrix:
        """`matrix` on the log scale; InputScaleError unless its values look like counts."""
        report = detect_scale(matrix.X)
        if not report.accepts(InputScale.counts.value):
            raise InputScaleError(
                f"--counts-to-log: the values look like {report.scale} ({report.reason}), not "
                "counts; leave the flag out",
                detected_scale=report.scale,
                expected_scale=InputScale.counts.value,
            )
        X = Log1p().transform(NormalizeTotal(self.target_sum).transform(matrix.X))
        return ExpressionMatrix(X, matrix.sample_ids, matrix.gene_ids, matrix.obs)

    def record(self) -> dict[str, Any]:
        """What the model card says was done to the training values (send values made alike)."""
        steps: list[Step] = [NormalizeTotal(self.target_sum), Log1p()]
        return {"from": "counts", "steps": [{"name": s.name, "params": s.params()} for s in steps]}

    def describe(self) -> str:
        """The conversion in words, for the card's description."""
        return (
            f"Trained on counts converted to log1p of values normalised to {self.target_sum:g} "
            "per sample; send values converted the same way."
        )


def check_scale(matrix: ExpressionMatrix, expected: InputScale | str) -> None:
    """InputScaleError (the service's message, the CLI's remedy) unless the values fit."""
    require_scale(matrix.X, InputScale(expected), remedy=SCALE_REMEDY)


def prepared(
    matrix: ExpressionMatrix, expected: InputScale | str, conversion: Conversion | None
) -> ExpressionMatrix:
    """`matrix` converted when asked, then checked against the scale a model takes."""
    out = matrix if conversion is None else conversion.apply(matrix)
    check_scale(out, expected)
    return out
