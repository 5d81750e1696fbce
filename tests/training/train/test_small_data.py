"""Small data inside fine-tuning: validation splits, early stopping that cannot end at chance,
two labelled samples per class, and the device choice (CPU here)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.methods.options import FinetuneOptions
from training.nn.config import TrainConfig
from training.nn.device import resolve_device
from training.nn.heads import ClassifierHeadConfig, RegressorHeadConfig
from training.nn.variants import DenoisingAutoencoderConfig, build_autoencoder
from training.train.apply import predict_labels, predict_proba
from training.train.finetune import finetune_classifier, finetune_regressor
from training.train.loop import EarlyStopping, History, seeded, train_loop
from training.train.validation import class_split, random_split


def test_class_split_keeps_two_per_class_to_train_on() -> None:
    names = ["a"] * 3 + ["b"] * 10 + ["c"] * 4
    split = class_split(names, 0.5, seed=0)
    assert not split.on_training_loss
    for cls, n in (("a", 3), ("b", 10), ("c", 4)):
        val = [i for i in split.val if names[i] == cls]
        train = [i for i in split.train if names[i] == cls]
        assert len(val) >= 1
        assert len(train) >= 2
        assert len(val) + len(train) == n
    assert not set(split.val) & set(split.train)
    assert np.array_equal(class_split(names, 0.5, seed=0).val, split.val)  # seeded


def test_two_per_class_watches_the_training_loss() -> None:
    split = class_split(["a", "a", "b", "b", "b"], 0.2, seed=0)
    assert split.on_training_loss
    assert "training loss" in split.validation
    assert "'a' has 2" in split.validation
    assert random_split(8, 0.2, 0).on_training_loss
    assert not random_split(40, 0.2, 0).on_training_loss


def _stopping(patience: int, **kw: float) -> tuple[EarlyStopping, nn.Linear, History]:
    model, history = nn.Linear(2, 2), History()
    return EarlyStopping(model, history, patience, **kw), model, history  # type: ignore[arg-type]


def test_no_stop_before_min_epochs_and_patience_counts_from_beating_chance() -> None:
    stopping, _, history = _stopping(2, min_epochs=3, chance=1.0)
    # above chance for 5 epochs: no patience is used up, whatever the best so far
    assert not any(stopping.end_epoch(e, 1.0, 1.2 + e) for e in range(5))
    assert history.best_epoch == -1
    assert not stopping.end_epoch(5, 0.5, 0.9)  # the first epoch below chance
    assert not stopping.end_epoch(6, 0.5, 0.95)
    assert stopping.end_epoch(7, 0.5, 0.95)
    assert history.best_epoch == 5
    assert history.stopped_early


def test_early_epochs_are_never_kept_as_best() -> None:
    stopping, _, history = _stopping(1, min_epochs=4)
    assert not stopping.end_epoch(0, 1.0, 0.1)  # best by far, but inside the warm-up
    for epoch in (1, 2):
        assert not stopping.end_epoch(epoch, 1.0, 0.5)
    assert not stopping.end_epoch(3, 1.0, 0.6)
    assert history.best_epoch == 3


def test_never_beating_chance_keeps_the_last_weights_and_says_so() -> None:
    stopping, model, history = _stopping(2, chance=math.log(3))
    for epoch in range(4):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        stopping.end_epoch(epoch, 1.0, 2.0)
    stopping.restore("finetune")
    assert torch.all(model.weight == 3.0)
    assert history.best_epoch == 3
    assert "never beat chance" in history.notes[0]
    bare, _, _ = _stopping(2)
    bare.end_epoch(0, float("nan"), float("nan"))
    with pytest.raises(RuntimeError, match="never finite"):
        bare.restore("pretrain")


def test_restore_best_never_restores_an_untrained_head() -> None:
    """The field failure: 3 classes, the validation loss lowest at epoch 0, so patience ended the
    run at epoch 20 holding epoch 0's head (chance accuracy). Here the validation labels are a
    permutation of what the features say, so every epoch of learning makes validation worse."""
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(60, 4)), dtype=torch.float32)
    y = torch.tensor(np.argmax(x[:, :3].numpy(), axis=1))
    wrong = (y + 1) % 3
    cfg = TrainConfig(epochs=60, batch_size=60, lr=0.02, patience=20, val_fraction=0.2)

    def loss_fn(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor | None) -> torch.Tensor:
        assert yb is not None
        return nn.functional.cross_entropy(model(xb), yb)

    def fit(**guards: float) -> tuple[nn.Linear, History]:
        with seeded(0):
            head = nn.Linear(4, 3)
            history = train_loop(head, loss_fn, (x, y), (x, wrong), cfg, progress=False, **guards)
        return head, history

    def accuracy(head: nn.Linear) -> float:
        with torch.no_grad():
            return float((head(x).argmax(1) == y).float().mean())

    old, old_history = fit()  # the loop as it was: best epoch 0, stopped at epoch 20
    assert old_history.best_epoch == 0
    assert len(old_history.val_loss) == 21
    new, history = fit(min_epochs=20, chance=math.log(3))
    assert history.best_epoch == len(history.val_loss) - 1  # the last, trained weights
    assert "never beat chance" in history.notes[0]
    assert accuracy(new) > 0.9 > accuracy(old) + 0.2


@pytest.fixture(scope="module")
def setup(counts: ExpressionMatrix) -> tuple[PreprocessPipeline, nn.Module]:
    pipe = PreprocessPipeline.fit(counts, "counts")
    with seeded(0):
        ae = build_autoencoder(DenoisingAutoencoderConfig(n_genes=60, hidden=(16,), latent=4))
    return pipe, ae.eval()


def test_two_labelled_samples_per_class_train_and_say_how(
    counts: ExpressionMatrix, setup: tuple[PreprocessPipeline, nn.Module]
) -> None:
    pipe, ae = setup
    names = np.array(counts.labels("label"))
    two = np.concatenate([np.flatnonzero(names == c)[:2] for c in sorted(set(names))])
    cfg = TrainConfig(epochs=40, batch_size=32, lr=1e-2, patience=5, val_fraction=0.2)
    for strategy in ("frozen", "full"):
        result = finetune_classifier(
            ae.encoder, pipe, counts.take(two), "label", ClassifierHeadConfig(4, 3), cfg,
            strategy=strategy, progress=False,
        )  # fmt: skip
        assert "training loss" in result.history.validation
        assert result.val_sample_ids == []
        assert len(result.history.val_loss) >= 20  # min_epochs: not stopped at the start
        train_pred = predict_labels(
            predict_proba(result.encoder, result.head, pipe, counts.take(two)), result.labels
        )
        assert train_pred == list(names[two])


def test_missing_labels_are_refused_by_name(
    counts: ExpressionMatrix, setup: tuple[PreprocessPipeline, nn.Module], quick: TrainConfig
) -> None:
    pipe, ae = setup
    obs = counts.obs.assign(label=[None, *counts.labels("label")[1:]])
    gappy = ExpressionMatrix(counts.X, counts.sample_ids, counts.gene_ids, obs)
    with pytest.raises(ValueError, match=r"1 rows have no value in 'label'.*unlabelled="):
        finetune_classifier(ae.encoder, pipe, gappy, "label", ClassifierHeadConfig(4, 3), quick)


def test_device_choice_on_a_machine_without_cuda(
    counts: ExpressionMatrix, setup: tuple[PreprocessPipeline, nn.Module], quick: TrainConfig
) -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device must be cpu, cuda or auto"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="device must be one of"):
        FinetuneOptions("full", device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    pipe, ae = setup
    obs = counts.obs.assign(score=np.arange(counts.shape[0], dtype=float))
    scored = ExpressionMatrix(counts.X, counts.sample_ids, counts.gene_ids, obs)
    result = finetune_regressor(
        ae.encoder, pipe, scored, "score", RegressorHeadConfig(4), quick,
        strategy=FinetuneOptions("full", device="auto"), progress=False,
    )  # fmt: skip
    # trained wherever, handed back on the CPU for export
    assert {p.device.type for p in [*result.head.parameters(), *result.encoder.parameters()]} == {
        "cpu"
    }
