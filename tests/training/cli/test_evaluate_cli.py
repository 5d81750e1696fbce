"""`genexfer train evaluate` options: --labels, --protocol lobo, --external, --encoder,
--source / --target-unlabelled, --methods, and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.cli import main
from training.data.synthetic import make_synthetic

pytestmark = pytest.mark.slow
TINY = ["--repeats", "1", "--baselines", "logistic", "--pretrain-epochs", "2"]
TINY += ["--finetune-epochs", "3", "--patience", "1", "--min-cells", "5", "--quiet"]


def _run(argv: list[str]) -> int:
    return main(["train", *argv])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Genes-only tables (target, external, source) and one labels table for all of their ids,
    whose classes are numbers."""
    root = tmp_path_factory.mktemp("evaluate")
    m = make_synthetic(150, 30, n_classes=3, n_batches=3, separation=2.0, seed=31)
    frame = pd.DataFrame(np.log1p(m.X), index=m.sample_ids, columns=m.gene_ids)
    paths = {name: root / f"{name}.csv" for name in ("target", "external", "source", "table")}
    frame.iloc[:110].to_csv(paths["target"])
    frame.iloc[110:].set_axis([f"ext_{i}" for i in range(40)]).to_csv(paths["external"])
    source = frame.iloc[:60, :25].set_axis([f"src_{i}" for i in range(60)])
    source.to_csv(paths["source"])
    classes = m.obs["label"].str.replace("type_", "", regex=False).astype(int) + 1
    labels = pd.DataFrame(
        {"cls": classes.to_numpy(), "run": m.obs["batch"].to_numpy()},
        index=pd.Index([*m.sample_ids[:110], *(f"ext_{i}" for i in range(40))], name="id"),
    )
    paths["labels"] = root / "labels.tsv"
    labels.to_csv(paths["labels"], sep="\t")
    frame.assign(label=m.obs["label"].to_numpy()).iloc[:110].to_csv(paths["table"])
    return paths


def test_labels_table_lobo_and_external(tmp_path: Path, files: dict[str, Path]) -> None:
    out = tmp_path / "report"
    argv = ["evaluate", "--data", str(files["target"]), "--labels", str(files["labels"])]
    argv += ["--label-column", "cls", "--protocol", "lobo", "--batch-column", "run"]
    argv += ["--methods", "dann", "--external", str(files["external"]), "--out", str(out)]
    assert _run([*argv, *TINY]) == 0
    text = (out / "report.md").read_text()
    # class labels that look like numbers are classes, joined from the table by sample id
    assert "the 3 with ≥ 5 rows (1, 2, 3)" in text
    assert "| held-out batch | dann − full |" in text
    assert "## External validation: external.csv" in text
    assert "| dann | the target's non-test rows, without labels | the other batches' rows |" in text
    assert "A reduced run: 1 repeats" in text


def test_published_encoder(tmp_path: Path, files: dict[str, Path]) -> None:
    models = tmp_path / "models"
    pretrain = ["pretrain", "--data", str(files["target"]), "--name", "enc", "--hidden", "8"]
    pretrain += ["--latent", "4", "--models-dir", str(models), "--epochs", "2", "--quiet"]
    assert _run(pretrain) == 0
    out = tmp_path / "report"
    argv = ["evaluate", "--data", str(files["table"]), "--label-column", "label", "--folds", "0"]
    argv += ["--shots", "3", "--encoder", "enc:1", "--models-dir", str(models), "--out", str(out)]
    assert _run([*argv, *TINY]) == 0
    text = (out / "report.md").read_text()
    assert "Pretraining: published encoder enc:1: target.csv (" in text
    assert "used as published" in text


def test_source_with_the_targets_rows(tmp_path: Path, files: dict[str, Path]) -> None:
    out = tmp_path / "report"
    argv = ["evaluate", "--data", str(files["table"]), "--label-column", "label", "--folds", "0"]
    argv += ["--shots", "3", "--source", str(files["source"]), "--target-unlabelled"]
    argv += ["--methods", "frozen", "--out", str(out)]
    assert _run([*argv, *TINY]) == 0
    text = (out / "report.md").read_text()
    assert "source.csv (60 rows) + the target's non-test rows, without labels" in text
    # the source has 25 of the target's 30 genes: the encoder's panel is the source's
    assert "100% of its genes are in the target" in text


def test_bad_combinations_are_one_line_errors(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["evaluate", "--data", str(files["table"]), "--label-column", "label"]
    out = ["--out", str(tmp_path / "r"), "--quiet"]
    cases = [
        ([*data, "--dataset", "bladderbatch"], "give --data or --dataset, not both"),
        ([*data, "--encoder", "x", "--source", str(files["source"])], "--encoder or --source"),
        ([*data, "--target-unlabelled"], "--target-unlabelled adds the target's rows"),
        ([*data, "--protocol", "lobo"], "--protocol lobo needs --batch-column"),
        ([*data, "--encoder", "nope", "--models-dir", str(tmp_path)], "no published versions"),
        (
            ["evaluate", "--data", str(files["target"]), "--labels", str(files["source"])],
            "the metadata lacks 110 samples",
        ),
    ]
    for argv, message in cases:
        assert _run([*argv, *out]) == 1, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
        assert err.count("\n") == 1  # one line, no traceback
    with pytest.raises(SystemExit):
        _run([*data, "--methods", "frozen,auto2"])
    assert "unknown methods ['auto2']" in capsys.readouterr().err
