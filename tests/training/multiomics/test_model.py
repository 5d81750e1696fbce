from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contract.align import align_matrix
from contract.card import ModelCard
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.methods.options import FinetuneOptions
from training.multiomics.data import MultiOmics
from training.multiomics.finetune import (
    MultiOmicsResult,
    finetune_multiomics,
    pack,
    predict_proba,
)
from training.multiomics.network import (
    MAX_MODALITIES,
    ModalityScaling,
    MultiOmicsGraph,
    exportable,
    presence_flags,
)
from training.nn.config import TrainConfig
from training.publish.parent import load_autoencoder

pytestmark = pytest.mark.slow

QUICK = TrainConfig(epochs=6, batch_size=32, lr=3e-3, val_fraction=0.2, patience=3, seed=0)


def _aligned(omics: MultiOmics, folder: Path) -> tuple[MultiOmics, PreprocessPipeline]:
    card = ModelCard.read(folder)
    expr, _ = align_matrix(omics.expression, card.panel, card.input_scale)
    return MultiOmics(expr, omics.modalities), PreprocessPipeline.load(folder)


@pytest.fixture(scope="module")
def frozen(
    omics: MultiOmics, omics_encoder: Path
) -> tuple[MultiOmicsResult, MultiOmics, PreprocessPipeline]:
    folder = omics_encoder / "omics-enc" / "1"
    data, pipe = _aligned(omics, folder)
    encoder = load_autoencoder(folder).encoder
    before = [p.detach().clone() for p in encoder.parameters()]
    result = finetune_multiomics(encoder, pipe, data, "label", QUICK)
    after = list(encoder.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))  # frozen: untouched
    return result, data, pipe


def test_trains_and_predicts(
    frozen: tuple[MultiOmicsResult, MultiOmics, PreprocessPipeline],
) -> None:
    result, data, pipe = frozen
    proba = predict_proba(result, pipe, data)
    assert proba.shape == (160, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert [s.name for s in result.scalings] == ["methylation", "protein"]
    assert result.scalings[0].logit
    assert not result.scalings[1].logit
    assert len(result.history.train_loss) >= 1


def test_missing_modality_is_masked(
    frozen: tuple[MultiOmicsResult, MultiOmics, PreprocessPipeline],
) -> None:
    """A missing modality's values cannot move the answer; its presence flag does."""
    result, data, pipe = frozen
    packed = pack(pipe, result.scalings, data)
    flags = presence_flags(packed, pipe.n_genes, [len(s.features) for s in result.scalings])
    assert flags[:, 1].eq(0).sum() == 160 - data.modalities["protein"].shape[0]
    absent = packed.clone()
    start = pipe.n_genes + len(result.scalings[0].features) + 1
    stop = start + len(result.scalings[1].features)
    absent[:, stop] = 0.0  # protein marked missing for everyone
    noisy = absent.clone()
    noisy[:, start:stop] = torch.randn(160, stop - start) * 5  # whatever the values
    with torch.no_grad():
        a, b, full = result.core(absent), result.core(noisy), result.core(packed)
    torch.testing.assert_close(a, b)
    present = flags[:, 1] == 1
    assert not torch.allclose(a[present], full[present])
    # the graph from raw inputs: a NaN row is the same as the flag at 0
    graph = result.graph(pipe)
    e = torch.from_numpy(data.expression.X)
    m = torch.from_numpy(data.dense("methylation"))
    p = torch.full((160, stop - start), float("nan"))
    with torch.no_grad():
        logits, _ = graph(e, m, p)
    torch.testing.assert_close(logits, a)


@pytest.mark.parametrize("strategy", ["partial", "gradual", "full"])
def test_strategies_train_a_copy(strategy: str, omics: MultiOmics, omics_encoder: Path) -> None:
    folder = omics_encoder / "omics-enc" / "1"
    data, pipe = _aligned(omics, folder)
    encoder = load_autoencoder(folder).encoder
    before = [p.detach().clone() for p in encoder.parameters()]
    cfg = TrainConfig(epochs=2, batch_size=64, val_fraction=0.2, patience=2)
    result = finetune_multiomics(
        encoder, pipe, data, "label", cfg, options=FinetuneOptions(strategy)
    )
    assert all(torch.equal(a, b) for a, b in zip(before, encoder.parameters(), strict=True))
    tuned = list(result.core.encoder.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, tuned, strict=True))


def test_refusals(
    omics: MultiOmics,
    omics_encoder: Path,
    frozen: tuple[MultiOmicsResult, MultiOmics, PreprocessPipeline],
) -> None:
    folder = omics_encoder / "omics-enc" / "1"
    data, pipe = _aligned(omics, folder)
    encoder = load_autoencoder(folder).encoder
    e = omics.expression
    shuffled = ExpressionMatrix(
        X=e.X, sample_ids=e.sample_ids, gene_ids=e.gene_ids[::-1], obs=e.obs
    )
    reordered = MultiOmics(shuffled, omics.modalities)
    with pytest.raises(ValueError, match="aligned to the encoder's panel"):
        finetune_multiomics(encoder, pipe, reordered, "label", QUICK)
    with pytest.raises(ValueError, match="no adaptation"):
        finetune_multiomics(encoder, pipe, data, "label", QUICK,
                            options=FinetuneOptions("full", adaptation="mmd"))  # fmt: skip
    result = frozen[0]
    with pytest.raises(ValueError, match=r"lack the model's modalities \['protein'\]"):
        predict_proba(result, pipe, data.without("protein"))


def test_small_refusals(
    omics_trained: tuple[MultiOmicsResult, MultiOmics, PreprocessPipeline],
) -> None:
    values = np.full((5, 3), np.nan, dtype=np.float32)
    values[0] = 0.5
    with pytest.raises(ValueError, match="fewer than 2 training samples"):
        ModalityScaling.fit("protein", ["a", "b", "c"], values, logit=False)
    result, _, pipe = omics_trained
    graph = result.graph(pipe)
    scaler = graph.scalers[0]
    too_many = MultiOmicsGraph(graph.preprocess, [scaler] * (MAX_MODALITIES + 1), graph.core)
    with pytest.raises(ValueError, match="1 to 4 modalities"):
        exportable(too_many)


def test_too_many_modalities_are_refused(omics: MultiOmics, omics_encoder: Path) -> None:
    folder = omics_encoder / "omics-enc" / "1"
    data, pipe = _aligned(omics, folder)
    p = data.modalities["protein"]
    many = MultiOmics(data.expression, {f"m{i}": p for i in range(MAX_MODALITIES + 1)})
    encoder = load_autoencoder(folder).encoder
    with pytest.raises(ValueError, match="at most 4 modalities"):
        finetune_multiomics(encoder, pipe, many, "label", QUICK)
