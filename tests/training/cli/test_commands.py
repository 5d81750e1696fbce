"""`genexfer train pretrain` streaming/kinds, `finetune --strategy`, `evaluate`, `export`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.cli import main
from contract.card import ModelCard, ModelKind
from training.data.synthetic import make_synthetic
from training.nn.checkpoint import load_checkpoint
from training.nn.variants import DenoisingAutoencoder

pytestmark = pytest.mark.slow


def _run(argv: list[str]) -> int:
    return main(["train", *argv])


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    matrix = make_synthetic(160, 40, n_classes=3, separation=2.0, seed=3)
    frame = matrix.obs[["label"]].copy()
    for j, gene in enumerate(matrix.gene_ids):
        frame[gene] = np.log1p(matrix.X[:, j])
    path = tmp_path_factory.mktemp("cli") / "cells.csv"
    frame.to_csv(path)
    return path


QUICK = ["--epochs", "4", "--patience", "2", "--quiet"]


def test_streamed_dae_pretraining_then_partial_finetune(
    tmp_path: Path, table: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = make_synthetic(160, 40, seed=3)
    npy = tmp_path / "source.npy"
    np.save(npy, np.log1p(matrix.X))
    (tmp_path / "source.npy.genes.txt").write_text("\n".join(matrix.gene_ids))
    models = tmp_path / "models"
    plot = tmp_path / "loss.png"
    code = _run(
        [
            "pretrain",
            "--data",
            str(npy),
            "--name",
            "enc",
            "--models-dir",
            str(models),
            "--encoder-kind",
            "dae",
            "--hidden",
            "16",
            "--latent",
            "4",
            "--chunk-rows",
            "32",
            "--loss-plot",
            str(plot),
            *QUICK,
        ]
    )
    assert code == 0
    assert plot.stat().st_size > 1000
    card = ModelCard.read(models / "enc" / "1")
    assert card.training_data is not None
    assert card.training_data.n_samples == 160
    assert isinstance(
        load_checkpoint(models / "enc" / "1").parts["autoencoder"], DenoisingAutoencoder
    )
    code = _run(
        [
            "finetune",
            "--data",
            str(table),
            "--label-column",
            "label",
            "--encoder",
            "enc",
            "--name",
            "clf",
            "--models-dir",
            str(models),
            "--strategy",
            "partial",
            "--unfreeze-top",
            "1",
            *QUICK,
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "panel overlap 100.0% (40 of 40 encoder genes in the data)" in out
    classifier = ModelCard.read(models / "clf" / "1")
    assert classifier.parent is not None
    assert classifier.parent.name == "enc"
    assert "(partial encoder)" in classifier.metrics[0].protocol


def test_export_baseline_command(tmp_path: Path, table: Path) -> None:
    code = _run(
        [
            "export",
            "--baseline",
            "logistic",
            "--data",
            str(table),
            "--label-column",
            "label",
            "--name",
            "logreg",
            "--models-dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    card = ModelCard.read(tmp_path / "logreg" / "1")
    assert [o.name for o in card.outputs] == ["probabilities"]
    assert {m.name for m in card.metrics} >= {"balanced_accuracy", "auroc"}


@pytest.fixture(scope="module")
def scored(table: Path) -> Path:
    """The same cells with a numeric target instead of the classes."""
    frame = pd.read_csv(table, index_col=0)
    genes = [c for c in frame.columns if c != "label"]
    frame = frame[genes].assign(score=50 + 10 * frame[genes[0]] - 4 * frame[genes[1]])
    path = table.with_name("scored.csv")
    frame.to_csv(path)
    return path


def test_regression_finetune_and_baseline_export(
    tmp_path: Path, scored: Path, table: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--data", str(scored), "--models-dir", str(tmp_path), *QUICK]
    # pretraining reads every column as a gene: give it the expression without the target
    genes = tmp_path / "genes.csv"
    pd.read_csv(scored, index_col=0).drop(columns="score").to_csv(genes)
    source = ["--data", str(genes), *common[2:]]
    assert _run(["pretrain", "--name", "enc", "--hidden", "16", "--latent", "4", *source]) == 0
    tune = ["finetune", "--task", "regression", "--label-column", "score", "--encoder", "enc"]
    assert _run([*tune, "--name", "reg", "--strategy", "full", *common]) == 0
    assert "held-out spearman" in capsys.readouterr().out
    card = ModelCard.read(tmp_path / "reg" / "1")
    assert (card.kind, card.labels) == (ModelKind.regressor, ["score"])
    assert {m.name for m in card.metrics} == {"r2", "mae", "spearman"}
    assert (
        "mean squared error on the standardised target (full encoder)" in card.metrics[0].protocol
    )
    assert card.head is not None
    export = ["export", "--task", "regression", "--label-column", "score", "--name", "ridge"]
    assert _run([*export, "--baseline", "ridge", *common[:4]]) == 0
    baseline = ModelCard.read(tmp_path / "ridge" / "1")
    assert (baseline.kind, [o.name for o in baseline.outputs]) == (
        ModelKind.regressor,
        ["prediction"],
    )
    assert {m.name: m.value for m in baseline.metrics}["r2"] > 0.5
    # a classifier-only or classification-only choice is refused with a reason
    assert _run([*export, "--baseline", "linear", "--task", "classification", *common[:4]]) == 2
    assert "not a classification baseline" in capsys.readouterr().err
    bad = ["finetune", "--task", "regression", "--label-column", "label", "--encoder", "enc"]
    assert _run([*bad, "--name", "x", "--data", str(table), *common[2:]]) == 1
    assert "obs column 'label' is not numeric (or missing) for 1" in capsys.readouterr().err
    regress_classes = ["export", "--task", "regression", "--label-column", "label", "--name", "x"]
    assert _run([*regress_classes, "--baseline", "ridge", "--data", str(table), *common[2:4]]) == 1
    assert "obs column 'label' is not numeric" in capsys.readouterr().err


def _evaluate(table: Path, out: Path) -> list[str]:
    return ["evaluate", "--data", str(table), "--label-column", "label", "--out", str(out)]


def test_evaluate_command_writes_a_report(tmp_path: Path, table: Path) -> None:
    out = tmp_path / "report"
    quick = ["--shots", "3", "--repeats", "2", "--folds", "0", "--baselines", "logistic"]
    epochs = ["--pretrain-epochs", "3", "--finetune-epochs", "20"]
    code = _run([*_evaluate(table, out), *quick, *epochs, "--quiet"])
    assert code == 0
    assert "| frozen |" in (out / "report.md").read_text()


def test_commands_report_bad_input(
    tmp_path: Path, table: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _run([*_evaluate(table, tmp_path), "--min-cells", "1000", "--quiet"])
    assert code == 1
    assert "fewer than 2 classes" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 3), dtype=np.float32))
    code = _run(
        ["pretrain", "--data", str(bad), "--name", "x", "--models-dir", str(tmp_path), "--quiet"]
    )
    assert code == 1
    assert "gene ids missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run(["evaluate", "--baselines", "svm"])
    with pytest.raises(SystemExit):
        _run(["evaluate", "--shots", "0"])


@pytest.mark.parametrize(
    ("command", "expected"),
    [("evaluate", "no test cell"), ("export", "parity")],
)
def test_help_explains(command: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _run([command, "--help"])
    assert exit_info.value.code == 0
    assert expected in " ".join(capsys.readouterr().out.split())
