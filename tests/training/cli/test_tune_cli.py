"""`genexfer train tune`: the search, the choice and the publication, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from contract import defaults
from contract.card import InputScale, ModelCard
from training.data.synthetic import make_synthetic
from training.evaluation.splits import hold_out
from training.nn.config import TrainConfig
from training.nn.encoders import AutoencoderConfig
from training.publish.encoder import pretrain_and_export


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding a small encoder 'enc' (40 genes, counts)."""
    folder = tmp_path_factory.mktemp("models")
    pretrain_and_export(
        hold_out(
            "source", make_synthetic(120, 40, seed=5), test_fraction=0.0, seed=0, stratify_by=None
        ),
        input_scale=InputScale.counts,
        model_cfg=AutoencoderConfig(n_genes=40, hidden=(16,), latent=4),
        train_cfg=TrainConfig(epochs=3, batch_size=32, seed=0),
        name="enc",
        models_dir=folder,
        description="tune CLI encoder",
        progress=False,
    )
    return folder


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 labelled samples as a samples-as-rows CSV of counts."""
    matrix = make_synthetic(60, 40, n_classes=3, separation=2.0, seed=11)
    frame = matrix.obs[["label"]].copy()
    for j, gene in enumerate(matrix.gene_ids):
        frame[gene] = matrix.X[:, j]
    path = tmp_path_factory.mktemp("data") / "cells.csv"
    frame.to_csv(path)
    return path


def _tune(models: Path, table: Path, *extra: str) -> int:
    return main(
        [
            "train", "tune", "--data", str(table), "--label-column", "label",
            "--encoder", "enc", "--name", "tuned", "--models-dir", str(models),
            "--epochs", "6", "--patience", "3", "--test-fraction", "0.25", *extra,
        ]
    )  # fmt: skip


def test_tune_publishes_the_choice_with_the_study_on_its_card(
    models: Path, table: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defaults, "INNER_FOLDS", 3)
    monkeypatch.setattr(defaults, "INNER_SCORES", ((10**6, 3),))
    assert _tune(models, table, "--trials", "3", "--seed", "2") == 0
    out = capsys.readouterr().out
    card = ModelCard.read(models / "tuned" / "1")
    assert card.selection is not None
    assert card.selection.tuning is not None
    tuning = card.selection.tuning
    assert (tuning.trials, tuning.seed, tuning.complete + tuning.pruned) == (3, 2, 3)
    assert f"best trial: balanced_accuracy {tuning.best_value:.4f}" in out
    assert f"median {tuning.spread.median:.4f}" in out
    assert f"chosen: {card.selection.winner}." in out
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("trial ")] == [
        "trial 0",
        "trial 1",
        "trial 2",
    ]
    assert out.rstrip().endswith(f"published {models / 'tuned' / '1'}")
    assert "transfer heads (one with settings from a 3-trial search)" in card.description


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--trials", "0"], "error: trials must be between 1 and 200, got 0\n"),
        (["--timeout", "-1"], "error: timeout must be a positive number of seconds, got -1.0\n"),
    ],
)
def test_bad_search_settings_are_one_line(
    models: Path,
    table: Path,
    capsys: pytest.CaptureFixture[str],
    option: list[str],
    message: str,
) -> None:
    assert _tune(models, table, *option) == 1
    assert capsys.readouterr().err == message
