"""Explanation graphs (``explain.onnx``, the card's `explain`) run by ONNX Runtime, like models.

The graph takes the aligned input and the class index to explain per sample and returns each
gene's integrated-gradients attribution (training.export.explain builds it). An explanation
costs the graph `steps` network passes per sample, so batches are cut into chunks that keep the
graph's widest intermediate near `max_values` floats.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app.config import Settings
from app.errors import ModelLoadError
from app.inference.backend import Array, Explainer, ExplainerFactory
from contract.card import ModelCard

log = logging.getLogger(__name__)

INPUT, TARGET, OUTPUT = "expression", "target", "attributions"
MAX_VALUES = 1 << 24  # 16 Mi floats (64 MiB) per intermediate of one chunk


class OnnxExplainer:
    """One ONNX Runtime session of a version's explanation graph, checked against its card."""

    def __init__(
        self,
        folder: Path,
        card: ModelCard,
        *,
        providers: list[str],
        intra_op_threads: int = 0,
        max_values: int = MAX_VALUES,
    ) -> None:
        if card.explain is None:
            raise ModelLoadError(f"{card.name}/{card.version} has no explanation graph")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = set(ort.get_available_providers())
        # TensorRT would build an engine per chunk shape; CUDA or the CPU run it as it is
        usable = [p for p in providers if p in available and p != "TensorrtExecutionProvider"]
        self._session = ort.InferenceSession(
            str(folder / card.explain.file),
            sess_options=opts,
            providers=usable or ["CPUExecutionProvider"],
        )
        inputs = [(i.name, i.shape[-1]) for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if [name for name, _ in inputs] != [INPUT, TARGET] or outputs != [OUTPUT]:
            raise ModelLoadError(
                f"{card.explain.file} takes {inputs} and gives {outputs}, not "
                f"[{INPUT!r}, {TARGET!r}] → [{OUTPUT!r}]"
            )
        width = inputs[0][1]
        if isinstance(width, int) and width != card.n_genes:
            raise ModelLoadError(f"{card.explain.file} takes {width} genes, the panel has "
                                 f"{card.n_genes}")  # fmt: skip
        self.steps = card.explain.steps
        self.chunk = max(1, max_values // (card.explain.steps * card.n_genes))

    def attributions(self, x: Array, target: npt.NDArray[np.int64]) -> Array:
        parts = [
            self._session.run(
                [OUTPUT],
                {INPUT: x[start : start + self.chunk], TARGET: target[start : start + self.chunk]},
            )[0]
            for start in range(0, len(x), self.chunk)
        ]
        return np.asarray(np.concatenate(parts), dtype=np.float32)

    def close(self) -> None:
        del self._session


def onnx_explainer_factory(settings: Settings) -> ExplainerFactory:
    """Builds an OnnxExplainer for each version whose card has an explanation graph."""

    def factory(folder: Path, card: ModelCard) -> Explainer | None:
        if card.explain is None:
            return None
        return OnnxExplainer(
            folder, card, providers=settings.providers, intra_op_threads=settings.intra_op_threads
        )

    return factory
