from __future__ import annotations

from pathlib import Path

import pytest

from contract.card import ModelCard
from training.cli.demo import CLASSIFIER_NAME, ENCODER_NAME, run_demo
from training.nn.config import TrainConfig

pytestmark = pytest.mark.slow


def test_quick_demo_beats_chance(tmp_path: Path) -> None:
    """A shortened demo on pbmc68k_reduced: 10 classes, so chance balanced accuracy is 0.1."""
    result = run_demo(
        tmp_path,
        pretrain_cfg=TrainConfig(epochs=30, batch_size=64, lr=1e-3, val_fraction=0.1, patience=10),
        finetune_cfg=TrainConfig(
            epochs=150, batch_size=64, lr=3e-3, val_fraction=0.15, patience=20
        ),
        progress=False,
    )
    assert result.classifier.scores["balanced_accuracy"] > 0.45, result.classifier.scores
    assert result.classifier.n_test == 140
    encoder = ModelCard.read(tmp_path / ENCODER_NAME / "1")
    classifier = ModelCard.read(tmp_path / CLASSIFIER_NAME / "1")
    assert classifier.parent is not None
    assert classifier.parent.name == ENCODER_NAME
    assert classifier.parent.sha256 == encoder.files["model.onnx"]
    assert classifier.labels is not None
    assert len(classifier.labels) == 10
    assert encoder.training_data is not None
    assert classifier.training_data is not None
    assert set(encoder.training_data.heldout_sample_ids) == set(
        classifier.training_data.heldout_sample_ids
    )
    assert "also held them out" in classifier.metrics[0].protocol
    # compared with logistic regression on the same inner folds, warned about if it lost
    assert classifier.selection is not None
    assert [c.name for c in classifier.selection.candidates] == ["frozen", "logistic"]
    means = {c.name: c.mean for c in classifier.selection.candidates}
    assert bool(classifier.selection.warnings) == (means["logistic"] > means["frozen"])
    assert classifier.verify_files(tmp_path / CLASSIFIER_NAME / "1") == []
