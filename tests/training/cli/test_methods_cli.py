"""`genexfer train` with the fine-tuning methods: rows without a label, --unlabelled,
--domain-column, adaptation and semi-supervision, --select-genes, and one scale message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.cli import main
from contract.card import ModelCard
from training.data.synthetic import make_synthetic
from training.nn.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
PRE = ["--epochs", "4", "--patience", "2", "--quiet"]
FAST = [*PRE, "--min-epochs", "2"]


def _run(argv: list[str]) -> int:
    return main(["train", *argv])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Counts, and log1p values with a label (a third of them blank) and a batch column."""
    root = tmp_path_factory.mktemp("methods")
    m = make_synthetic(150, 40, n_classes=3, separation=2.0, seed=5)
    counts = pd.DataFrame(m.X, index=m.sample_ids, columns=m.gene_ids)
    logged = np.log1p(counts)
    label = m.obs["label"].where(m.obs["batch"] == "batch_0", "")  # batch_1 has no labels
    paths = {
        name: root / f"{name}.csv"
        for name in ("counts", "log", "plain", "labelled", "target", "genes")
    }
    counts.assign(label=m.obs["label"]).to_csv(paths["counts"])
    logged.assign(label=label, batch=m.obs["batch"]).to_csv(paths["log"])
    logged.assign(label=label).to_csv(paths["plain"])
    logged.assign(label=m.obs["label"]).to_csv(paths["labelled"])
    target = logged.iloc[:30].set_axis([f"new_{i}" for i in range(30)])
    target.assign(batch="lab_c").to_csv(paths["target"])
    logged.to_csv(paths["genes"])
    return paths


def _pretrain(files: dict[str, Path], models: Path, *extra: str) -> int:
    argv = ["pretrain", "--data", str(files["genes"]), "--name", "enc", "--hidden", "16"]
    return _run([*argv, "--latent", "4", "--models-dir", str(models), *PRE, *extra])


def test_adaptation_and_semi_supervision_from_the_command_line(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    assert _pretrain(files, models, "--select-genes", "20", "--select-by", "dispersion") == 0
    checkpoint = load_checkpoint(models / "enc" / "1").parts["autoencoder"]
    assert checkpoint.config.n_genes == 20  # type: ignore[union-attr]
    assert ModelCard.read(models / "enc" / "1").inputs[0].shape == ["batch", 40]
    finetune = ["finetune", "--data", str(files["log"]), "--label-column", "label"]
    common = ["--encoder", "enc", "--models-dir", str(models), "--strategy", "full", *FAST]
    plain = ["finetune", "--data", str(files["plain"]), "--label-column", "label"]
    # batch_1's rows have no label: they are the new domain; --unlabelled adds a third batch
    adapt = [
        "--adaptation",
        "dann",
        "--domain-column",
        "batch",
        "--unlabelled",
        str(files["target"]),
    ]
    assert _run([*finetune, "--name", "dann", *adapt, *common]) == 0
    out = capsys.readouterr().out
    assert "early stopping on the validation split" in out
    card = ModelCard.read(models / "dann" / "1")
    assert "dann adaptation (λ 0.3)" in card.metrics[0].protocol
    extra = json.loads((models / "dann" / "1" / "config.json").read_text())["extra"]
    blank = int(pd.read_csv(files["log"], index_col=0)["label"].isna().sum())
    assert extra["n_unlabelled"] == blank + 30
    assert extra["finetune_options"]["adaptation"] == "dann"
    semi = ["--semi-supervised", "pseudo_label", "--confidence", "0.8"]
    assert _run([*plain, "--name", "semi", *semi, *common]) == 0
    assert (
        f"pseudo_label on {blank} unlabelled samples"
        in ModelCard.read(models / "semi" / "1").metrics[0].protocol
    )


def test_bad_method_choices_are_one_line_errors(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    assert _pretrain(files, models) == 0
    capsys.readouterr()
    labelled, plain = files["labelled"], files["plain"]
    base = ["finetune", "--label-column", "label", "--encoder", "enc", "--name", "x"]
    base += ["--models-dir", str(models), *FAST]
    cases = [
        (["--data", str(plain), "--strategy", "frozen", "--adaptation", "mmd"],
         "encoder must train"),
        (["--data", str(plain), "--adaptation", "mmd"], "with --strategy auto the methods are"),
        (["--data", str(plain), "--candidates", "full+dann,best"], "unknown candidate 'best'"),
        (["--data", str(plain), "--strategy", "full", "--candidates", "full"],
         "--candidates are compared by --strategy auto"),
        (["--data", str(labelled), "--strategy", "full", "--adaptation", "mmd"],
         "needs rows from the new domain"),
        (["--data", str(labelled), "--strategy", "frozen", "--semi-supervised", "consistency"],
         "needs rows without"),
        (["--data", str(plain), "--confidence", "1.5"], "confidence must be in (0, 1)"),
        (["--data", str(files["log"]), "--strategy", "full", "--adaptation", "dann",
          "--domain-column", "lab"], "obs columns ['lab'] are not in the header"),
        (["--data", str(plain), "--device", "cuda"], "CUDA is not available"),
    ]  # fmt: skip
    for argv, message in cases:
        if "cuda" in argv and __import__("torch").cuda.is_available():
            continue
        assert _run([*base, *argv]) == 1, argv
        err = capsys.readouterr().err
        assert message in err, (argv, err)
        assert err.count("\n") == 1  # one line, no traceback


def test_one_scale_message_for_every_command_and_counts_converted_on_request(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    assert _pretrain(files, models) == 0  # a log encoder
    capsys.readouterr()
    data = ["--data", str(files["counts"])]
    commands = [
        ["pretrain", *data, "--name", "p", "--models-dir", str(models)],
        ["finetune", *data, "--label-column", "label", "--encoder", "enc", "--name", "f",
         "--models-dir", str(models), "--strategy", "frozen"],
        ["evaluate", *data, "--label-column", "label", "--out", str(tmp_path / "r")],
    ]  # fmt: skip
    messages = []
    for argv in commands:
        if argv[0] == "pretrain":
            # pretraining reads every column as a gene: counts without the label column
            genes_only = tmp_path / "counts_genes.csv"
            pd.read_csv(files["counts"], index_col=0).drop(columns="label").to_csv(genes_only)
            argv = ["pretrain", "--data", str(genes_only), *argv[3:]]
        assert _run([*argv, "--quiet"]) == 1
        messages.append(capsys.readouterr().err.strip())
    assert messages[0].startswith("error: the values look like counts (non-negative integers")
    assert "but this model expects log; give the scale the values are on" in messages[0]
    assert len(set(messages)) == 1, messages  # the same file, the same words, every command
    convert = ["--counts-to-log", "--target-sum", "10000"]
    assert _run([*commands[1], *convert, *FAST]) == 0
    card = ModelCard.read(models / "f" / "1")
    assert "counts converted to log1p of values normalised to 10000" in card.description
    extra = json.loads((models / "f" / "1" / "config.json").read_text())["extra"]
    assert extra["input_conversion"]["steps"][0] == {
        "name": "normalize_total",
        "params": {"target_sum": 10000.0},
    }
    assert _run(["finetune", "--data", str(files["plain"]), *commands[1][3:], "--name", "g",
                 *convert, *FAST]) == 1  # fmt: skip
    assert "--counts-to-log: the values look like log" in capsys.readouterr().err
