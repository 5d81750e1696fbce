from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from app.cli import main
from contract.card import ModelCard
from training.multiomics.data import MultiOmics, write_h5mu

pytestmark = pytest.mark.slow

FAST = ["--epochs", "3", "--batch-size", "64", "--quiet", "--strategy", "frozen"]


def _models(omics_encoder: Path, tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(omics_encoder / "omics-enc", models / "omics-enc")
    return models


def test_finetune_h5mu_publishes_a_multiomics_model(
    omics: MultiOmics, omics_encoder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = _models(omics_encoder, tmp_path)
    data = write_h5mu(omics, tmp_path / "omics.h5mu")
    argv = ["train", "finetune", "--data", str(data), "--label-column", "label",
            "--encoder", "omics-enc", "--name", "omics-clf", "--models-dir", str(models),
            *FAST]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "modality protein: present in" in out
    assert "held-out balanced_accuracy" in out
    card = ModelCard.read(models / "omics-clf" / "1")
    assert [i.name for i in card.inputs] == ["expression", "methylation", "protein"]
    assert card.parent is not None
    assert card.parent.name == "omics-enc"
    assert any(m.name == "balanced_accuracy" for m in card.metrics)
    # told how it compares with logistic regressions on the same held-out samples
    selection = card.selection
    assert selection is not None
    assert [c.name for c in selection.candidates] == [
        "multiomics",
        "logistic",
        "logistic+modalities",
    ]
    assert (selection.winner, selection.forced) == ("multiomics", True)
    held_out = next(m.value for m in card.metrics if m.name == "balanced_accuracy")
    assert selection.candidates[0].mean == held_out
    beaten = [c for c in selection.candidates[1:] if c.mean > held_out]
    assert len(selection.warnings) == len(beaten)
    assert all(
        f"baseline {c.name} scored" in w for c, w in zip(beaten, selection.warnings, strict=True)
    )
    assert "best logistic regression" in out


def test_finetune_with_modality_tables(
    omics: MultiOmics, omics_encoder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = _models(omics_encoder, tmp_path)
    e, p = omics.expression, omics.modalities["protein"]
    table = pd.DataFrame(e.X, index=pd.Index(e.sample_ids, name="id"), columns=e.gene_ids)
    table["label"] = e.labels("label")
    table.to_csv(tmp_path / "rna.csv")
    pd.DataFrame(p.X, index=pd.Index(p.sample_ids, name="id"), columns=p.gene_ids).to_csv(
        tmp_path / "protein.csv"
    )
    argv = ["train", "finetune", "--data", str(tmp_path / "rna.csv"), "--label-column", "label",
            "--modality", f"protein={tmp_path / 'protein.csv'}", "--encoder", "omics-enc",
            "--name", "omics-prot", "--models-dir", str(models), *FAST,
            "--strategy", "auto"]  # fmt: skip
    assert main(argv) == 0
    assert "automatic choice does not cover multi-omics" in capsys.readouterr().out
    card = ModelCard.read(models / "omics-prot" / "1")
    assert card.modalities is not None
    assert [m.name for m in card.modalities] == ["protein"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--modality", "protein"], "expected NAME=FILE"),
        (["--modality", "protein=a.csv", "--modality", "protein=b.csv"], "given twice"),
        (["--modality", "protein=a.csv", "--task", "regression"], "classifiers only"),
    ],
)
def test_bad_multiomics_options(
    extra: list[str], message: str, omics_encoder: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    argv = ["train", "finetune", "--data", str(tmp_path / "rna.csv"), "--label-column", "label",
            "--encoder", "omics-enc", "--name", "x", "--models-dir", str(omics_encoder), *FAST,
            *extra]  # fmt: skip
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_h5mu_with_modality_tables_is_refused(
    omics: MultiOmics, omics_encoder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_h5mu(omics, tmp_path / "omics.h5mu")
    argv = ["train", "finetune", "--data", str(data), "--label-column", "label",
            "--modality", "protein=p.csv", "--encoder", "omics-enc", "--name", "x",
            "--models-dir", str(omics_encoder), *FAST]  # fmt: skip
    assert main(argv) == 1
    assert "not an .h5mu" in capsys.readouterr().err
