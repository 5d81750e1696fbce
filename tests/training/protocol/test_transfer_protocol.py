"""The evaluation's transfer paths: methods registry, pretraining sources, leave-one-batch-out,
external validation, and what every method is given (never a test row's label)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract.matrix import ExpressionMatrix
from training.data.synthetic import make_synthetic
from training.evaluation.splits import leave_one_batch_out
from training.nn.config import TrainConfig
from training.protocol import methods as registry
from training.protocol.config import ProtocolConfig
from training.protocol.methods import Inputs, Method, method, register, with_references
from training.protocol.pretraining import Pretraining
from training.protocol.run import run_external, run_protocol
from training.reporting.report import write_report

TINY = ProtocolConfig(
    label_column="label",
    min_cells=10,
    shots=(3,),
    repeats=1,
    folds=0,
    hidden=(8,),
    latent=4,
    baselines=("logistic",),
    methods=("frozen",),
    pretrain=TrainConfig(epochs=2, batch_size=32, patience=1),
    finetune=TrainConfig(epochs=3, batch_size=32, lr=1e-2, patience=2),
)


def _log(m: ExpressionMatrix) -> ExpressionMatrix:
    return ExpressionMatrix(np.log1p(m.X), m.sample_ids, m.gene_ids, m.obs)


@pytest.fixture(scope="module")
def target() -> ExpressionMatrix:
    return _log(make_synthetic(120, 30, n_classes=3, n_batches=3, separation=2.0, seed=21))


class Spy:
    """A method registered for one test: records what it is given, predicts uniformly."""

    def __init__(self) -> None:
        self.seen: list[Inputs] = []

    def __call__(self, inputs: Inputs) -> tuple[np.ndarray, Any]:
        self.seen.append(inputs)
        n = inputs.encoded.test.shape[0]
        proba = np.full((n, len(inputs.classes)), 1 / len(inputs.classes), dtype=np.float32)
        return proba, lambda _: None


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    recorder = Spy()
    spec = Method("spy", recorder, pretrained=True, unlabelled=True, reference=None, summary="x")
    monkeypatch.setitem(registry.METHODS, "spy", spec)
    return recorder


def test_registry_one_place_references_added_and_unknown_names_refused() -> None:
    assert with_references(("dann", "pseudo_label")) == ("frozen", "full", "dann", "pseudo_label")
    assert method("mmd").reference == "full"
    assert method("consistency").reference == "frozen"
    assert not method("scratch").pretrained
    with pytest.raises(ValueError, match="unknown method 'best'"):
        method("best")
    with pytest.raises(ValueError, match="registered already"):
        register(method("frozen"))
    with pytest.raises(ValueError, match="unknown method"):
        ProtocolConfig(methods=("frozen", "nope"))
    with pytest.raises(ValueError, match="needs a batch column"):
        ProtocolConfig(protocol="lobo")


def test_vocabulary_and_registry_agree() -> None:
    from contract.vocab import EVAL_METHODS

    assert set(EVAL_METHODS) == set(registry.METHODS)


def test_leave_one_batch_out_splits() -> None:
    batches = ["a", "a", "a", "b", "b", "c", "c"]
    labels = ["x", "y", "x", "x", "y", "z", "z"]
    folds = leave_one_batch_out(batches, labels, ["x", "y", "z"])
    # c's only class, z, is in no other batch: c cannot be held out
    assert [f[0] for f in folds] == ["a", "b"]
    _name, train, test = folds[0]
    assert test.tolist() == [0, 1, 2]
    assert train.tolist() == [3, 4, 5, 6]
    with pytest.raises(ValueError, match="two batches or more"):
        leave_one_batch_out(["a", "a"], ["x", "y"], ["x", "y"])


def test_few_shot_gives_methods_the_pools_rows_without_labels(
    target: ExpressionMatrix, spy: Spy
) -> None:
    cfg = dataclasses.replace(TINY, methods=("spy",), folds=2)
    result = run_protocol(target, cfg, progress=False)
    assert {o.model for o in result.outcomes} == {"spy", "logistic"}
    few = spy.seen[0]
    assert not set(few.encoded.test.sample_ids) & set(few.encoded.train.sample_ids)
    assert few.encoded.train.shape[0] == 3 * 3
    unlabelled = few.encoded.unlabelled
    assert unlabelled is not None
    assert "label" not in unlabelled.obs.columns
    assert not set(unlabelled.sample_ids) & set(few.encoded.test.sample_ids)
    assert unlabelled.shape[0] + 9 + few.encoded.test.shape[0] == target.shape[0]
    # every row is in a class and a fold: CV has no rows without a label, so the spy is skipped
    assert len(spy.seen) == 1
    assert any("spy skipped on the cv splits" in n for n in result.notes)


def test_lobo_holds_each_batch_out_and_adapts_on_its_rows_only(
    target: ExpressionMatrix, spy: Spy
) -> None:
    pools: list[set[str]] = []

    class Recording(Pretraining):
        def for_pool(self, pool: ExpressionMatrix, *args: object, **kw: object):  # type: ignore[no-untyped-def, override]
            pools.append(set(pool.labels("batch")))
            return super().for_pool(pool, *args, **kw)  # type: ignore[arg-type]

    cfg = dataclasses.replace(TINY, methods=("spy",), protocol="lobo", batch_column="batch")
    # a rare class (below min_cells) in every batch: its rows are not scored, yet the held-out
    # batch's rows of it must stay out of pretraining too
    obs = target.obs.copy()
    obs.iloc[:6, obs.columns.get_loc("label")] = "rare"
    rare = ExpressionMatrix(target.X, target.sample_ids, target.gene_ids, obs)
    result = run_protocol(rare, cfg, pretraining=Recording(), progress=False)
    batches = target.labels("batch")
    assert pools == [set(batches) - {held} for held in sorted(set(batches))]
    assert [i.encoded.test.labels("batch")[0] for i in spy.seen] == sorted(set(batches))
    for inputs in spy.seen:
        held = inputs.encoded.test.labels("batch")[0]
        assert set(inputs.encoded.test.labels("batch")) == {held}
        assert held not in set(inputs.encoded.train.labels("batch"))
        unlabelled = inputs.encoded.unlabelled
        assert unlabelled is not None
        assert set(unlabelled.labels("batch")) == {held}
        assert "label" not in unlabelled.obs.columns  # never the held-out batch's labels
        assert inputs.domain_column == "batch"
    zeros = sum(counts.get("type_0", 0) for counts in result.batches.values())
    assert zeros == rare.labels("label").count("type_0")
    assert {o.split for o in result.outcomes} == set(batches)


@pytest.mark.slow
def test_lobo_adaptation_report_pairs_adapted_with_not(
    target: ExpressionMatrix, tmp_path: Path
) -> None:
    cfg = dataclasses.replace(
        TINY, methods=("dann", "mmd"), protocol="lobo", batch_column="batch", repeats=2
    )
    result = run_protocol(target, cfg, progress=False)
    # full is added to pair with; 3 batches × 2 repeats per model
    assert {o.model for o in result.outcomes} == {"full", "dann", "mmd", "logistic"}
    assert sum(o.model == "dann" for o in result.outcomes) == 6
    text = write_report(result, tmp_path, title="t", data_note="d").read_text()
    assert "| held-out batch | dann − full | mmd − full |" in text
    assert "Each cell is the mean over 2 seeded repeats." in text
    assert "| dann | the target's non-test rows, without labels | the other batches' rows |" in text
    assert (tmp_path / "lobo.png").stat().st_size > 1000


def test_source_pretraining_never_sees_the_target(target: ExpressionMatrix) -> None:
    source = _log(make_synthetic(80, 40, n_classes=3, seed=22))
    # the source has 10 more genes; the target's 30 are among them under the same names
    source = ExpressionMatrix(source.X, source.sample_ids, [f"gene_{j:05d}" for j in range(40)])
    seen: list[int] = []

    class Counting(Pretraining):
        def for_pool(self, pool: ExpressionMatrix, *args: object, **kw: object):  # type: ignore[no-untyped-def, override]
            seen.append(pool.shape[0])
            return super().for_pool(pool, *args, **kw)  # type: ignore[arg-type]

    pretraining = Counting("source", source=source, source_name="src")
    result = run_protocol(target, dataclasses.replace(TINY, repeats=2), pretraining=pretraining)
    assert result.n_pretrain_rows == 80
    assert result.panel_overlap == pytest.approx(30 / 40)
    assert result.pretraining == "src (80 rows) only"
    # one encoder for both repeats: fitted once on the source
    assert pretraining._fixed is not None
    assert len(seen) == 2
    both = Pretraining("source+target", source=source, source_name="src")
    mixed = run_protocol(target, TINY, pretraining=both, progress=False)
    assert mixed.n_pretrain_rows == 80 + target.shape[0] - len(mixed.outcomes[0].y_true)
    assert "src (80 rows) + the target's non-test rows" in mixed.pretraining


@pytest.mark.slow
def test_external_validation_scores_every_model(target: ExpressionMatrix, tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY, methods=("frozen", "pseudo_label", "scratch"))
    result = run_protocol(target, cfg, progress=False)
    other = _log(make_synthetic(60, 30, n_classes=3, n_batches=3, separation=2.0, seed=21))
    ids = [f"ext_{s}" for s in other.sample_ids]
    external = ExpressionMatrix(other.X[:, 2:], ids, other.gene_ids[2:], other.obs.set_axis(ids))
    run_external(target, external, cfg, result, name="ext.csv")
    assert set(result.external) == {"frozen", "pseudo_label", "scratch", "logistic"}
    for scored in result.external.values():
        assert scored.n_scored == 60
        assert scored.panel_overlap == pytest.approx(28 / 30)
    text = write_report(result, tmp_path, title="t", data_note="d").read_text()
    assert "## External validation: ext.csv" in text
    assert "ext.csv's rows (labels hidden)" in text
    assert (tmp_path / "external.json").is_file()


def test_auto_is_evaluated_like_any_method_and_scores_as_well_as_its_best_candidate(
    target: ExpressionMatrix, tmp_path: Path
) -> None:
    """The jobs' default path on the protocol's splits: a column of its own in the report,
    paired with the best baseline like every method."""
    cfg = dataclasses.replace(TINY, methods=("frozen", "auto"), shots=(8,))
    result = run_protocol(target, cfg, progress=False)
    auto = [o for o in result.outcomes if o.model == "auto"]
    assert len(auto) == 1
    assert 0.0 <= auto[0].metrics["balanced_accuracy"] <= 1.0
    report = write_report(result, tmp_path, title="t", data_note="d").read_text()
    assert "| auto |" in report


def test_tuned_searches_on_the_training_rows_and_is_paired_with_the_best_baseline(
    target: ExpressionMatrix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tuned` runs an Optuna study per split (here 3 trials on 3 inner folds) on the split's
    labelled rows only, and the report pairs it with the best baseline like every method."""
    from contract import defaults
    from training.choice import tune as tuning

    monkeypatch.setattr(defaults, "TUNE_TRIALS", 3)
    monkeypatch.setattr(defaults, "INNER_FOLDS", 3)
    monkeypatch.setattr(defaults, "INNER_SCORES", ((10**6, 3),))
    studied: list[int] = []
    real = tuning.tune

    def counted(problem: Any, settings: Any, *args: Any, **kwargs: Any) -> Any:
        studied.append(problem.matrix.shape[0])
        assert settings.trials == 3
        return real(problem, settings, *args, **kwargs)

    monkeypatch.setattr(tuning, "tune", counted)
    cfg = dataclasses.replace(TINY, methods=("tuned",), shots=(8,), repeats=1)
    result = run_protocol(target, cfg, progress=False)
    tuned = [o for o in result.outcomes if o.model == "tuned"]
    assert len(tuned) == 1
    assert 0.0 <= tuned[0].metrics["balanced_accuracy"] <= 1.0
    assert studied == [8 * len(result.classes)]  # the k labelled cells per class, nothing else
    report = write_report(result, tmp_path, title="t", data_note="d").read_text()
    assert "| tuned |" in report
    assert any(line.startswith("| k=8 per class | tuned |") for line in report.splitlines())
