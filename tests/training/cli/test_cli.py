from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from app.cli import main
from contract.card import ModelCard, ModelKind
from training.data.synthetic import make_synthetic


def _run(argv: list[str]) -> int:
    return main(["train", *argv])


def test_import_and_help_need_no_torch() -> None:
    code = (
        "import sys, app.cli\n"
        "p = app.cli.build_parser()\n"
        "train = p._subparsers._group_actions[0].choices['train']\n"
        "for cmd in ('demo', 'pretrain', 'finetune', 'tune', 'evaluate', 'export'):\n"
        "    train._subparsers._group_actions[0].choices[cmd].format_help()\n"
        "heavy = [m for m in ('torch', 'numpy', 'pandas', 'onnx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command", ["demo", "pretrain", "finetune", "tune"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _run([command, "--help"])
    assert exit_info.value.code == 0
    assert "--models-dir" in capsys.readouterr().out


@pytest.mark.slow
def test_pretrain_then_finetune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    m = make_synthetic(150, 40, n_classes=3, separation=2.0, seed=5)
    expression = pd.DataFrame(m.X, index=m.sample_ids, columns=m.gene_ids)
    counts_csv = tmp_path / "counts.csv"
    expression.to_csv(counts_csv)
    labelled = tmp_path / "labelled.tsv.gz"
    expression.drop(columns=m.gene_ids[:4]).assign(cell_type=m.obs["label"]).to_csv(
        labelled, sep="\t"
    )
    models = tmp_path / "models"
    fast = ["--epochs", "3", "--patience", "2", "--quiet", "--models-dir", str(models)]
    pretrain = ["pretrain", "--data", str(counts_csv), "--input-scale", "counts", "--name", "enc"]
    assert (
        _run([*pretrain, "--hidden", "16", "--latent", "4", "--test-fraction", "0.1", *fast]) == 0
    )
    finetune = ["finetune", "--data", str(labelled), "--label-column", "cell_type"]
    assert _run([*finetune, "--encoder", "enc", "--name", "clf", *fast]) == 0
    out = capsys.readouterr().out
    assert "4 panel genes were missing" in out
    assert "held-out balanced_accuracy" in out
    clf = ModelCard.read(models / "clf" / "1")
    assert clf.kind is ModelKind.classifier
    assert clf.parent is not None
    assert clf.parent.name == "enc"
    assert clf.input_scale.value == "counts"
    assert clf.n_genes == 40
    assert clf.training_data is not None
    assert clf.training_data.label_column == "cell_type"
    assert len(clf.training_data.heldout_sample_ids) == 30
    assert "may include them" in clf.metrics[0].protocol  # the encoder saw other data
    assert ModelCard.read(models / "enc" / "1").metrics[1].split == "test"

    # genes as rows, labels from a separate table, a chosen encoder version
    by_gene = tmp_path / "by_gene.csv"
    expression.T.to_csv(by_gene)
    labels = tmp_path / "labels.csv"
    m.obs.rename(columns={"label": "kind"}).to_csv(labels)
    finetune = ["finetune", "--data", str(by_gene), "--orientation", "genes_as_rows"]
    labelled_by = ["--labels", str(labels), "--label-column", "kind", "--encoder", "enc:1"]
    assert _run([*finetune, *labelled_by, "--name", "clf", "--head-hidden", "8", *fast]) == 0
    second = ModelCard.read(models / "clf" / "2")
    assert second.labels == ["type_0", "type_1", "type_2"]
    assert second.parent == clf.parent


def test_bad_input_is_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,g1\ns1,x\n")
    assert _run(["pretrain", "--data", str(bad), "--name", "x", "--models-dir", str(tmp_path)]) == 1
    assert "error:" in capsys.readouterr().err
    assert _run(["finetune", "--data", str(bad), "--label-column", "y", "--encoder", "nope",
                 "--name", "x", "--models-dir", str(tmp_path)]) == 1  # fmt: skip
    assert "no published versions of 'nope'" in capsys.readouterr().err
