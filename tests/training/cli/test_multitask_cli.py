"""`genexfer train finetune --multi-task`: several label columns, one published graph."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.cli import main
from contract.card import ModelCard, ModelKind
from training.cli.shared.values import task_spec
from training.data.synthetic import make_synthetic


def _run(argv: list[str]) -> int:
    return main(["train", *argv])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A models folder with a small encoder, and a table with three label columns (a quarter
    of `phase` and of `score` missing, and two rows with no label at all)."""
    tmp = tmp_path_factory.mktemp("mtcli")
    m = make_synthetic(120, 30, n_classes=3, separation=2.0, seed=5)
    expression = pd.DataFrame(m.X, index=m.sample_ids, columns=m.gene_ids)
    counts = tmp / "counts.csv"
    expression.to_csv(counts)
    models = tmp / "models"
    fast = ["--epochs", "3", "--patience", "2", "--quiet", "--models-dir", str(models)]
    pretrain = ["pretrain", "--data", str(counts), "--input-scale", "counts", "--name", "enc"]
    assert _run([*pretrain, "--hidden", "16", "--latent", "4", *fast]) == 0
    log = np.log1p(m.X)
    table = expression.assign(
        cell_type=m.obs["label"].to_numpy(),
        phase=np.where(log[:, 0] > np.median(log[:, 0]), "G1", "S"),
        score=log[:, :4].sum(axis=1),
    )
    table.loc[table.index[:30], "phase"] = ""
    table.loc[table.index[30:60], "score"] = np.nan
    table.loc[table.index[60:62], ["cell_type", "phase"]] = ""
    table.loc[table.index[60:62], "score"] = np.nan
    labelled = tmp / "labelled.csv"
    table.to_csv(labelled)
    return models, labelled


def test_finetune_multi_task(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    models, labelled = setup
    argv = [
        "finetune", "--data", str(labelled), "--encoder", "enc", "--name", "multi",
        "--multi-task", "cell_type", "--multi-task", "phase:classification",
        "--multi-task", "score:regression:0.5", "--strategy", "frozen",
        "--epochs", "3", "--patience", "2", "--quiet", "--models-dir", str(models),
    ]  # fmt: skip
    assert _run(argv) == 0
    out = capsys.readouterr().out
    assert "task score (regression, weight 0.5" in out
    assert "held-out balanced_accuracy" in out
    card = ModelCard.read(models / "multi" / "1")
    assert card.kind is ModelKind.multitask
    assert [(t.name, t.kind, t.weight) for t in card.tasks] == [
        ("cell_type", "classification", 1.0),
        ("phase", "classification", 1.0),
        ("score", "regression", 0.5),
    ]
    # the rows with no label in any task were not trained on; the others were, masked
    assert card.tasks[0].n_labelled + 2 + len(card.training_data.heldout_sample_ids) == 120  # type: ignore[union-attr]
    assert "WARNING" in out or not any(t.warnings for t in card.tasks)


OTHERS = ["--multi-task", "phase", "--multi-task", "score:regression"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--multi-task", "cell_type", *OTHERS], "needs a named --strategy"),
        (["--multi-task", "cell_type", "--strategy", "frozen", "--label-column", "x"],
         "exclude each other"),
        (["--multi-task", "nope", "--strategy", "frozen"], "nope"),
        (["--multi-task", "cell_type", *OTHERS, "--strategy", "frozen", "--semi-supervised",
          "consistency"], "single-task only"),
        (["--multi-task", "cell_type", *OTHERS, "--multi-task", "phase", "--strategy", "full"],
         "repeated"),
        ([], "give --label-column"),
        (["--multi-task", "cell_type", "--strategy", "full", "--candidates", "frozen"],
         "single-task"),
    ],
)  # fmt: skip
def test_multi_task_refusals(
    setup: tuple[Path, Path], extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    models, labelled = setup
    argv = ["finetune", "--data", str(labelled), "--encoder", "enc", "--name", "bad",
            "--epochs", "2", "--quiet", "--models-dir", str(models), *extra]  # fmt: skip
    assert _run(argv) == 1
    assert message in capsys.readouterr().err
    assert not (models / "bad").exists()


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("bulk_labels", ("bulk_labels", "classification", 1.0)),
        ("G2M_score:regression:0.5", ("G2M_score", "regression", 0.5)),
        ("phase:2", ("phase", "classification", 2.0)),
        ("a:b:regression", ("a:b", "regression", 1.0)),
    ],
)
def test_task_spec(text: str, parsed: tuple[str, str, float]) -> None:
    assert task_spec(text) == parsed


@pytest.mark.parametrize("text", ["", ":regression", "x:regression:0", "x:regression:-1"])
def test_task_spec_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="COLUMN"):
        task_spec(text)
