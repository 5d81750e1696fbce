"""Multi-task fine-tuning: the masked weighted loss, the published graph (an output per task,
each checked against torch), the card's tasks, and the refusals."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from pydantic import ValidationError

from contract.card import HEAD_FILE, ONNX_FILE, InputScale, ModelCard, ModelKind, ModelTask
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from contract.vocab import Strategy
from tests.factories import published_encoder
from training.data.synthetic import make_synthetic
from training.evaluation.multitask import task_outputs_of
from training.evaluation.splits import Dataset, hold_out
from training.export.heads import MultiTaskTop
from training.methods.options import FinetuneOptions
from training.nn.checkpoint import load_checkpoint
from training.nn.config import TrainConfig
from training.nn.heads import MultiTaskHead, MultiTaskHeadConfig
from training.preprocess.fused import pipeline_module
from training.publish.multitask import MultitaskRun, multitask_and_export
from training.publish.parent import load_autoencoder
from training.train.multitask import TaskSpec, finetune_multitask, weighted_loss

QUICK = TrainConfig(epochs=4, batch_size=32, lr=3e-3, val_fraction=0.2, patience=3, seed=0)


def _data(n: int = 160, seed: int = 3) -> ExpressionMatrix:
    """Synthetic counts with a 3-class `label`, a 2-class `phase` missing on a quarter of the
    rows and a numeric `score` missing on another quarter."""
    m = make_synthetic(n, 40, n_classes=3, seed=seed)
    rng = np.random.default_rng(seed)
    log = np.log1p(m.X)
    phase = np.where(log[:, 0] > np.median(log[:, 0]), "G1", "S").astype(object)
    score = log[:, :5].sum(axis=1).astype(object)
    phase[rng.permutation(n)[: n // 4]] = None
    score[rng.permutation(n)[: n // 4]] = np.nan
    m.obs["phase"] = phase
    m.obs["score"] = score
    return m


TASKS = [TaskSpec("label"), TaskSpec("phase"), TaskSpec("score", "regression", 0.5)]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return published_encoder(
        models_dir=tmp_path_factory.mktemp("models"), description="multitask test encoder"
    )


def _publish(
    encoder: Path,
    data: Dataset,
    name: str,
    description: str,
    strategy: Strategy,
    head_hidden: tuple[int, ...] = (),
) -> MultitaskRun:
    """The TASKS fine-tuned on `encoder` with `strategy` for `data` (no dropout, QUICK) and
    published as `name` beside the encoder."""
    return multitask_and_export(
        data,
        encoder_folder=encoder,
        tasks=TASKS,
        head_hidden=head_hidden,
        head_dropout=0.0,
        train_cfg=QUICK,
        name=name,
        models_dir=encoder.parent.parent,
        description=description,
        options=FinetuneOptions(strategy),
        progress=False,
    )


def test_weighted_loss_masks_a_missing_label_for_that_task_only() -> None:
    cfg = MultiTaskHeadConfig(n_in=3, tasks=("a", "b"), kinds=("classification", "regression"),
                              widths=(2, 1))  # fmt: skip
    loss_fn = weighted_loss(cfg, [1.0, 0.5], [None, None])
    out = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 3.0], [1.0, 1.0, -1.0]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0], [float("nan"), 2.0], [1.0, float("nan")]])
    loss = loss_fn(lambda x: x, out, target)  # type: ignore[arg-type]
    ce = torch.nn.functional.cross_entropy(out[[0, 2], :2], torch.tensor([0, 1]))
    mse = torch.nn.functional.mse_loss(out[[0, 1], 2], torch.tensor([0.0, 2.0]))
    assert math.isclose(loss.item(), (ce + 0.5 * mse).item(), rel_tol=1e-6)
    loss.backward()
    assert out.grad is not None
    # row 1 has no label for task a, row 2 none for task b: no gradient reaches those outputs
    assert torch.all(out.grad[1, :2] == 0)
    assert float(out.grad[2, 2]) == 0.0
    assert torch.all(out.grad[0] != 0)
    # a batch without any label adds nothing (and stays differentiable)
    empty = loss_fn(lambda x: x, out, torch.full((3, 2), float("nan")))  # type: ignore[arg-type]
    assert empty.item() == 0.0
    assert empty.requires_grad


def test_rows_missing_one_label_are_kept(encoder: Path) -> None:
    m = _data()
    ae = load_autoencoder(encoder)
    pipe = PreprocessPipeline.load(encoder)
    from contract.align import align_matrix

    aligned = align_matrix(m, ModelCard.read(encoder).panel, InputScale.counts)[0]
    result = finetune_multitask(ae.encoder, pipe, aligned, TASKS, QUICK, progress=False)
    assert [t.labels for t in result.tasks] == [
        ["type_0", "type_1", "type_2"],
        ["G1", "S"],
        ["score"],
    ]
    assert [t.n_labelled for t in result.tasks] == [160, 120, 120]
    assert result.head.config.widths == (3, 2, 1)
    assert result.fit.history.summary()["epochs_run"] >= 1


def test_publish_round_trip_each_output_matches_torch(encoder: Path) -> None:
    m = _data()
    data = hold_out("toy", m, test_fraction=0.25, seed=0, stratify_by="label")
    run = _publish(encoder, data, "multi", "multi-task test", "partial", head_hidden=(8,))
    card = ModelCard.read(run.folder)
    assert card.kind is ModelKind.multitask
    assert card.labels is None
    assert card.verify_files(run.folder) == []
    assert [(t.name, t.kind, t.weight) for t in card.tasks] == [
        ("label", "classification", 1.0), ("phase", "classification", 1.0),
        ("score", "regression", 0.5),
    ]  # fmt: skip
    names = [o.name for o in card.outputs]
    assert names == ["label.logits", "label.probabilities", "label.prediction", "phase.logits",
                     "phase.probabilities", "phase.prediction", "score.prediction"]  # fmt: skip
    assert card.head is not None
    assert HEAD_FILE in card.files
    assert {"label.balanced_accuracy", "score.r2", "score.ridge.r2"} <= {
        x.name for x in card.metrics
    }
    assert set(run.scores) == {"label", "phase", "score"}
    for task in card.tasks:  # a warning exactly where the baseline scored higher
        kind = "balanced_accuracy" if task.kind == "classification" else "r2"
        loses = run.baseline_scores[task.name][kind] > run.scores[task.name][kind]
        assert bool(task.warnings) == loses, task

    # the served graph's outputs against torch, task by task
    parts = load_checkpoint(run.folder).parts
    head = parts["head"]
    assert isinstance(head, MultiTaskHead)
    ae = parts["autoencoder"]
    pipe = PreprocessPipeline.load(run.folder)
    x = np.ascontiguousarray(m.X[:9], dtype=np.float32)
    session = ort.InferenceSession(str(run.folder / ONNX_FILE), providers=["CPUExecutionProvider"])
    got = dict(zip(names, session.run(None, {"expression": x}), strict=True))
    with torch.no_grad():
        z = ae.encoder(pipeline_module(pipe)(torch.from_numpy(x)))
        want = [t.numpy() for t in MultiTaskTop(head).eval()(z)]
    for name, expected in zip(names, want, strict=True):
        np.testing.assert_allclose(got[name], expected, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(got["label.probabilities"].sum(1), 1.0, atol=1e-5)
    # the class index output is the probabilities' argmax
    np.testing.assert_array_equal(
        got["label.prediction"][:, 0], got["label.probabilities"].argmax(1)
    )
    # the same numbers the scores were computed from
    aligned = m.take(np.arange(9))
    proba, _, values = task_outputs_of(ae.encoder, head, pipe, aligned)
    np.testing.assert_allclose(got["label.probabilities"], proba, atol=1e-4)
    np.testing.assert_allclose(got["score.prediction"][:, 0], values, atol=1e-3)
    head_session = ort.InferenceSession(str(run.folder / HEAD_FILE))
    assert [o.name for o in head_session.get_outputs()] == names


@pytest.mark.parametrize(
    ("tasks", "options", "message"),
    [
        ([], None, "at least one task"),
        ([TaskSpec("label"), TaskSpec("label", "regression")], None, "repeated"),
        ([TaskSpec("nope")], None, "no label column"),
        (TASKS, FinetuneOptions("partial", semi_supervised="consistency"), "single-task only"),
        ([TaskSpec("label", "regression")], None, "not numbers"),
        ([TaskSpec("phase")], None, "no label in any task"),
    ],
)
def test_refusals(
    encoder: Path, tasks: list[TaskSpec], options: FinetuneOptions | None, message: str
) -> None:
    m = _data(60)
    from contract.align import align_matrix

    aligned = align_matrix(m, ModelCard.read(encoder).panel, InputScale.counts)[0]
    ae = load_autoencoder(encoder)
    pipe = PreprocessPipeline.load(encoder)
    with pytest.raises((ValueError, KeyError), match=message):
        finetune_multitask(
            ae.encoder, pipe, aligned, tasks, QUICK, strategy=options, progress=False
        )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (("a", "classification", 0.0), "weight must be positive"),
        (("a", "ordinal", 1.0), "kind must be one of"),
        (("", "regression", 1.0), "needs a label column"),
    ],
)
def test_task_spec_bounds(spec: tuple[str, str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskSpec(*spec)  # type: ignore[arg-type]


def test_card_tasks_are_checked_and_single_task_cards_unchanged() -> None:
    folder = Path(__file__).parents[3] / "models" / "pbmc68k-celltype" / "1"
    card = ModelCard.read(folder)
    assert card.tasks == []
    assert '"tasks"' not in card.model_dump_json()
    task = ModelTask(name="g2m", kind="regression", labels=["g2m"], weight=1.0,
                     outputs=["g2m.prediction"])  # fmt: skip
    with pytest.raises(ValidationError, match="only a multitask card"):
        card.model_copy(update={"tasks": [task]}).model_validate(
            card.model_dump() | {"tasks": [task.model_dump()]}
        )
    with pytest.raises(ValidationError, match="needs tasks"):
        ModelCard.model_validate(card.model_dump() | {"kind": "multitask", "labels": None})
    with pytest.raises(ValidationError, match=r"needs an output 'g2m\.prediction'"):
        ModelCard.model_validate(
            card.model_dump() | {"kind": "multitask", "tasks": [task.model_dump()]}
        )
    with pytest.raises(ValidationError, match="at least 2 classes"):
        ModelTask(name="c", kind="classification", labels=["x"], weight=1.0,
                  outputs=["c.logits", "c.probabilities", "c.prediction"])  # fmt: skip
    with pytest.raises(ValidationError, match="outputs"):
        ModelTask(name="g", kind="regression", labels=["g"], weight=1.0, outputs=["g.values"])


def test_without_held_out_samples_each_task_is_compared_on_inner_folds(encoder: Path) -> None:
    m = _data(90, seed=4)
    data = hold_out("toy", m, test_fraction=0.0, seed=0, stratify_by=None)
    run = _publish(encoder, data, "multi-inner", "multi-task, nothing held out", "frozen")
    card = ModelCard.read(run.folder)
    assert run.n_test == 0
    assert set(run.scores) == {"label", "phase", "score"}
    splits = {x.split for x in card.metrics}
    assert splits == {"inner_cv"}
    assert "3-fold cross-validation" in card.metrics[0].protocol
    for task in card.tasks:
        kind = "balanced_accuracy" if task.kind == "classification" else "r2"
        loses = run.baseline_scores[task.name][kind] > run.scores[task.name][kind]
        assert bool(task.warnings) == loses, task
        assert all("inner cross-validation" in w for w in task.warnings)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tasks": (), "kinds": (), "widths": ()}, "one entry per task"),
        ({"tasks": ("a", "b"), "kinds": ("classification",), "widths": (2,)}, "one entry"),
        ({"tasks": ("a", "a"), "kinds": ("regression",) * 2, "widths": (1, 1)}, "unique"),
        ({"tasks": ("a",), "kinds": ("ordinal",), "widths": (2,)}, "not 'ordinal'"),
        ({"tasks": ("a",), "kinds": ("classification",), "widths": (1,)}, "n_classes at least 2"),
    ],
)
def test_multitask_head_config_bounds(fields: dict[str, tuple[object, ...]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MultiTaskHeadConfig(n_in=4, **fields)  # type: ignore[arg-type]


def test_a_classification_task_needs_two_classes(encoder: Path) -> None:
    from contract.align import align_matrix

    m = _data(60)
    m.obs["one"] = "x"
    aligned = align_matrix(m, ModelCard.read(encoder).panel, InputScale.counts)[0]
    ae = load_autoencoder(encoder)
    pipe = PreprocessPipeline.load(encoder)
    with pytest.raises(ValueError, match="needs 2 classes"):
        finetune_multitask(ae.encoder, pipe, aligned, [TaskSpec("label"), TaskSpec("one")], QUICK)


def test_export_refuses_tasks_that_are_not_the_heads(tmp_path: Path) -> None:
    from contract.card import task_outputs
    from training.export.heads import export_multitask

    head = MultiTaskHead(
        MultiTaskHeadConfig(n_in=4, tasks=("a",), kinds=("regression",), widths=(1,))
    )
    other = ModelTask(name="b", kind="regression", labels=["b"], weight=1.0,
                      outputs=task_outputs("b", "regression"))  # fmt: skip
    with pytest.raises(ValueError, match="differ from the head's"):
        export_multitask(
            None, head, None, [other], name="x", models_dir=tmp_path,  # type: ignore[arg-type]
            info=None, reference=np.zeros((1, 4), np.float32), parent=None,  # type: ignore[arg-type]
        )  # fmt: skip
