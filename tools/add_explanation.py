"""Add the explanation graph to a published neural classifier version, from its own checkpoint.

Versions exported before explanations existed have no ``explain.onnx``. This rebuilds the
network from the version's ``weights.safetensors`` + ``config.json`` and its preprocessing from
``preprocess.json``/``.npz``, checks that the rebuilt network gives ``model.onnx``'s logits,
exports and verifies ``explain.onnx`` and ``baseline.npy`` (the training inputs' mean, the
``input_mean`` the preprocessing saved) exactly as `training.export.graphs` does at export, and
rewrites ``model.json`` with the new files' sha256 and the ``explain`` record. Nothing else in the
folder changes; the model's outputs stay byte for byte what they were. A running service loads the
amended card at its next restart (a version it already serves is not reloaded).

    PYTHONPATH=. python tools/add_explanation.py models/pbmc68k-celltype/1

Baseline (scikit-learn) versions keep no estimator to rebuild (no pickles): re-export them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from contract.card import CARD_FILE, ONNX_FILE, ModelCard, ModelKind, sha256_file
from contract.preprocess.pipeline import PreprocessPipeline
from training.export.card import parity_inputs
from training.export.explain import DEFAULT_STEPS, check_inputs, export_explanation
from training.nn.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint
from training.preprocess.fused import pipeline_module

LOGITS_ATOL = 1e-4


def add_explanation(folder: Path, steps: int = DEFAULT_STEPS) -> ModelCard:
    """Write explain.onnx and baseline.npy into `folder` and amend its card; returns the card."""
    card = ModelCard.read(folder)
    where = f"{card.name}/{card.version}"
    if card.kind is not ModelKind.classifier:
        raise ValueError(f"{where} is a {card.kind}; only classifiers are explained")
    if card.explain is not None:
        raise ValueError(f"{where} already has an explanation graph ({card.explain.file})")
    problems = card.verify_files(folder)
    if problems:
        raise ValueError(f"{where} does not match its card: {'; '.join(problems)}")
    if not {WEIGHTS_FILE, CONFIG_FILE} <= set(card.files):
        raise ValueError(
            f"{where} has no checkpoint ({WEIGHTS_FILE}, {CONFIG_FILE}) to rebuild: a baseline "
            "version keeps no estimator; export it again to get its explanation"
        )
    checkpoint = load_checkpoint(folder)
    if set(checkpoint.parts) != {"autoencoder", "head"}:
        raise ValueError(f"{where}: checkpoint parts {sorted(checkpoint.parts)}, not an encoder "
                         "and a head")  # fmt: skip
    encoder = checkpoint.parts["autoencoder"].encoder
    if not isinstance(encoder, torch.nn.Module):
        raise ValueError(f"{where}: its autoencoder has no encoder module")
    pipeline = PreprocessPipeline.load(folder)
    model = [pipeline_module(pipeline).eval(), encoder.eval(), checkpoint.parts["head"].eval()]
    parity = parity_inputs(pipeline, pipeline.input_mean[None, :])
    _check_logits(folder, torch.nn.Sequential(*model), parity[0])
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".explain-") as tmp:
        written, spec = export_explanation(
            Path(tmp), model, pipeline.input_mean, check_inputs(parity), steps=steps
        )
        files = dict(card.files)
        for path in written:
            if (folder / path.name).exists():
                raise ValueError(f"{where} already has a {path.name}")
            path.chmod(0o644)
            files[path.name] = sha256_file(path)
            shutil.move(path, folder / path.name)
    amended = card.model_copy(update={"explain": spec, "files": dict(sorted(files.items()))})
    amended = ModelCard.model_validate(amended.model_dump())  # the card's own checks
    staged = folder / f".{CARD_FILE}.tmp"
    staged.write_text(amended.model_dump_json(indent=2) + "\n")  # as ModelCard.write does
    staged.chmod(0o644)
    os.replace(staged, folder / CARD_FILE)
    return amended


def _check_logits(folder: Path, model: torch.nn.Module, x: np.ndarray) -> None:
    """The rebuilt network must be the one model.onnx was exported from."""
    session = ort.InferenceSession(str(folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"expression": x})
    with torch.no_grad():
        rebuilt = model(torch.from_numpy(x)).numpy()
    gap = float(np.max(np.abs(rebuilt - logits)))
    if gap > LOGITS_ATOL:
        raise ValueError(f"{folder}: the checkpoint's logits differ from model.onnx's by {gap:.3g}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="models/<name>/<version> folders")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="Riemann points")
    args = parser.parse_args(argv)
    for folder in args.folders:
        try:
            card = add_explanation(folder, args.steps)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        assert card.explain is not None
        print(f"{folder}: added {card.explain.file} ({card.explain.steps} steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
