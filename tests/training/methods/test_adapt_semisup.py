"""Domain adaptation (DANN, MMD) and semi-supervision (pseudo-labels, consistency)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.data.synthetic import make_synthetic
from training.methods.adapt import Domains, mmd2, ramp, reverse_gradient
from training.methods.options import FinetuneOptions
from training.methods.semisup import UnlabelledLoss
from training.nn.config import TrainConfig
from training.nn.heads import ClassifierHeadConfig, RegressorHeadConfig
from training.nn.variants import DenoisingAutoencoderConfig, build_autoencoder
from training.train.apply import embed
from training.train.finetune import finetune_classifier, finetune_regressor
from training.train.loop import seeded

HEAD = ClassifierHeadConfig(n_in=4, n_classes=3)
FINE = TrainConfig(epochs=30, batch_size=32, lr=1e-2, val_fraction=0.2, patience=10)


def test_gradient_reversal_and_schedule() -> None:
    x = torch.ones(3, requires_grad=True)
    (reverse_gradient(x, 0.5) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad is not None
    assert torch.allclose(x.grad, torch.tensor([-0.5, -1.0, -1.5]))
    assert ramp(0.0) == 0.0
    assert 0.99 < ramp(1.0) < 1.0
    assert ramp(0.1) < ramp(0.3)


def test_mmd_tells_shifted_domains_apart() -> None:
    g = torch.Generator().manual_seed(0)
    same = torch.randn(80, 4, generator=g)
    codes = torch.tensor([0] * 40 + [1] * 40)
    shifted = same + codes[:, None] * 2.0
    assert float(mmd2(shifted, codes)) > 10 * float(mmd2(same, codes))
    assert float(mmd2(same, torch.zeros(80, dtype=torch.long))) == 0.0  # one domain: nothing
    shifted.requires_grad_(True)
    mmd2(shifted, codes).backward()
    assert shifted.grad is not None
    assert shifted.grad.abs().sum() > 0


def test_domains_are_drawn_balanced_and_need_two() -> None:
    x = torch.zeros(100, 3)
    domains = Domains.of([(x[:90], ["lab_a"] * 90), (x[90:], ["lab_b"] * 10)])
    assert domains.names == ["lab_a", "lab_b"]
    drawn = domains.codes[domains.sample(2000, torch.Generator().manual_seed(0))]
    assert 0.45 < float(drawn.float().mean()) < 0.55  # the small domain half the time
    with pytest.raises(ValueError, match="needs two domains or more"):
        Domains.of([(x, ["only"] * 100)])


@pytest.fixture(scope="module")
def shifted() -> tuple[ExpressionMatrix, ExpressionMatrix, PreprocessPipeline, nn.Module]:
    """Labelled source batch and unlabelled target batch with a strong batch effect."""
    m = make_synthetic(300, 60, n_classes=3, separation=2.0, batch_effect=1.0, seed=3)
    batch = np.array(m.labels("batch"))
    source, target = m.take(batch == "batch_0"), m.take(batch == "batch_1")
    pipe = PreprocessPipeline.fit(m, "counts")
    with seeded(0):
        ae = build_autoencoder(DenoisingAutoencoderConfig(n_genes=60, hidden=(16,), latent=4))
    return source, target, pipe, ae.eval()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dann", "mmd"])
def test_adaptation_brings_the_domains_together(
    shifted: tuple[ExpressionMatrix, ExpressionMatrix, PreprocessPipeline, nn.Module],
    method: str,
) -> None:
    source, target, pipe, ae = shifted

    def gap(options: FinetuneOptions) -> float:
        result = finetune_classifier(
            ae.encoder, pipe, source, "label", HEAD, FINE, strategy=options,
            unlabelled=target, progress=False,
        )  # fmt: skip
        z = torch.cat([embed(result.encoder, pipe, source), embed(result.encoder, pipe, target)])
        # in units of the embedding's spread, so shrinking everything does not count
        z = (z - z.mean(0)) / z.std(0)
        codes = torch.tensor([0] * source.shape[0] + [1] * target.shape[0])
        return float(mmd2(z, codes))

    plain = gap(FinetuneOptions("full"))
    options = FinetuneOptions("full", adaptation=method, adaptation_weight=1.0)  # type: ignore[arg-type]
    adapted = gap(options)
    assert adapted < 0.7 * plain, (plain, adapted)


@pytest.mark.slow
def test_domain_column_names_the_batches(
    shifted: tuple[ExpressionMatrix, ExpressionMatrix, PreprocessPipeline, nn.Module],
) -> None:
    source, target, pipe, ae = shifted
    both = ExpressionMatrix(
        np.concatenate([source.X, target.X]), [*source.sample_ids, *target.sample_ids],
        source.gene_ids, __import__("pandas").concat([source.obs, target.obs]),
    )  # fmt: skip
    # batches named by a column, no unlabelled rows at all: the labelled batches are aligned
    result = finetune_classifier(
        ae.encoder, pipe, both, "label", HEAD, FINE,
        strategy=FinetuneOptions("partial", adaptation="dann"), domain_column="batch",
        progress=False,
    )  # fmt: skip
    assert result.options.adaptation == "dann"
    assert result.n_unlabelled == 0


def test_adaptation_and_semi_supervision_refuse_what_they_cannot_use(
    shifted: tuple[ExpressionMatrix, ExpressionMatrix, PreprocessPipeline, nn.Module],
) -> None:
    source, target, pipe, ae = shifted

    def run(options: FinetuneOptions, **kw: object) -> None:
        finetune_classifier(
            ae.encoder,
            pipe,
            source,
            "label",
            HEAD,
            FINE,
            strategy=options,
            **kw,  # type: ignore[arg-type]
        )

    with pytest.raises(ValueError, match="encoder must train: use strategy partial"):
        FinetuneOptions("frozen", adaptation="mmd")
    for bad in (
        {"adaptation": "coral"},
        {"semi_supervised": "mixmatch"},
        {"adaptation_weight": 0.0},
        {"semi_weight": float("nan")},
        {"confidence": 1.0},
        {"min_epochs": -1},
    ):
        with pytest.raises(ValueError, match="must be"):
            FinetuneOptions("full", **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs rows from the new domain"):
        run(FinetuneOptions("full", adaptation="dann"))
    with pytest.raises(ValueError, match="needs rows without a label"):
        run(FinetuneOptions("full", semi_supervised="consistency"))
    with pytest.raises(ValueError, match="labelled rows have no domain column 'lab'"):
        run(FinetuneOptions("full", adaptation="mmd"), unlabelled=target, domain_column="lab")
    with pytest.raises(ValueError, match="needs two domains or more"):
        run(FinetuneOptions("full", adaptation="mmd"), domain_column="batch")
    with pytest.raises(ValueError, match="align them first"):
        run(FinetuneOptions("full", semi_supervised="consistency"),
            unlabelled=make_synthetic(10, 61, seed=1))  # fmt: skip
    obs = source.obs.assign(score=np.arange(source.shape[0], dtype=float))
    scored = ExpressionMatrix(source.X, source.sample_ids, source.gene_ids, obs)
    with pytest.raises(ValueError, match="pseudo-labels need classes"):
        finetune_regressor(
            ae.encoder, pipe, scored, "score", RegressorHeadConfig(4), FINE,
            strategy=FinetuneOptions("full", semi_supervised="pseudo_label"), unlabelled=target,
        )  # fmt: skip


def test_unused_rows_are_noted(
    shifted: tuple[ExpressionMatrix, ExpressionMatrix, PreprocessPipeline, nn.Module],
    quick: TrainConfig,
) -> None:
    source, target, pipe, ae = shifted
    result = finetune_classifier(
        ae.encoder, pipe, source, "label", HEAD, quick, unlabelled=target, progress=False
    )
    assert result.history.notes[0].startswith(f"{target.shape[0]} rows without a label")


def test_pseudo_labels_only_from_confident_rows() -> None:
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    with seeded(0):
        model = nn.Sequential(nn.Linear(4, 3))
    common = {"classify": True, "class_weight": None, "weight": 1.0, "batch_size": 50,
              "seed": 0, "device": torch.device("cpu")}  # fmt: skip
    # an untrained head is never 99.99% sure: no pseudo-label, no term
    sure = UnlabelledLoss("pseudo_label", model, x, confidence=0.9999, **common)  # type: ignore[arg-type]
    assert float(sure(1.0).detach()) == 0.0
    with torch.no_grad():
        model[0].weight.mul_(50.0)  # now it is, on most rows
    term = UnlabelledLoss("pseudo_label", model, x, confidence=0.9, **common)  # type: ignore[arg-type]
    assert float(term(1.0).detach()) > 0.0
    assert model.training  # back in training mode after the clean, eval-mode pass
    consistency = UnlabelledLoss("consistency", model, x, confidence=0.9, **common)  # type: ignore[arg-type]
    assert float(consistency(0.0).detach()) == 0.0  # ramped in from 0
    assert float(consistency(1.0).detach()) > 0.0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pseudo_label", "consistency"])
def test_semi_supervision_learns_from_unlabelled_rows(
    shifted: tuple[ExpressionMatrix, ExpressionMatrix, PreprocessPipeline, nn.Module],
    method: str,
) -> None:
    source, target, pipe, ae = shifted
    for strategy in ("frozen", "full"):
        options = FinetuneOptions(strategy, semi_supervised=method, confidence=0.6)  # type: ignore[arg-type]
        plain = finetune_classifier(ae.encoder, pipe, source, "label", HEAD, FINE,
                                    strategy=strategy, progress=False)  # fmt: skip
        semi = finetune_classifier(ae.encoder, pipe, source, "label", HEAD, FINE,
                                   strategy=options, unlabelled=target, progress=False)  # fmt: skip
        assert semi.n_unlabelled == target.shape[0]
        # the unlabelled term changed what was learnt (and, frozen, not the encoder)
        assert not torch.equal(plain.head.layers[-1].weight, semi.head.layers[-1].weight)
        if strategy == "frozen":
            assert semi.encoder is ae.encoder
