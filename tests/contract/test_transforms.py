"""Input transforms on the card: counts in, the model's scale made from them in numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from contract import transforms
from contract.align import PanelIndex, to_panel
from contract.card import GenePanel, InputScale, InputTransform, ModelCard, TransformStep
from contract.errors import InputScaleError
from contract.preprocess.steps import Log1p, Log2p1, NormalizeTotal

REPO = Path(__file__).resolve().parents[2]
SCANPY = InputTransform.library_size_log1p(1e4)
rng = np.random.default_rng(0)
COUNTS = rng.poisson(3.0, size=(6, 40)).astype(np.float32) * 7  # integers up to ~100


def test_the_steps_are_the_pipelines_own() -> None:
    assert SCANPY.describe() == "counts: normalize_total(target_sum=10000), log1p"
    expected = Log1p().transform(NormalizeTotal(1e4).transform(COUNTS))
    np.testing.assert_array_equal(transforms.apply(SCANPY, COUNTS), expected)
    log_cpm = InputTransform.log2_cpm()
    assert log_cpm.describe() == "counts: normalize_total(target_sum=1000000), log2p1"
    expected = Log2p1().transform(NormalizeTotal(1e6).transform(COUNTS))
    np.testing.assert_array_equal(transforms.apply(log_cpm, COUNTS), expected)


def test_counts_are_transformed_and_log_values_pass_as_they_are() -> None:
    choice = transforms.choose(COUNTS, InputScale.log, [SCANPY])
    assert (choice.scale, choice.transform) == (InputScale.counts, SCANPY)
    logs = transforms.apply(SCANPY, COUNTS)
    assert transforms.choose(logs, InputScale.log, [SCANPY]).transform is None
    # declared: detection skipped either way
    assert transforms.choose(logs, InputScale.log, [SCANPY], InputScale.counts).transform == SCANPY
    assert transforms.choose(COUNTS, InputScale.log, [SCANPY], InputScale.log).transform is None
    # linear normalised values give the same as counts once scaled to a total
    cpm = NormalizeTotal(1e6).transform(COUNTS)
    assert transforms.choose(cpm, InputScale.log, [SCANPY]).transform == SCANPY


def test_values_on_no_accepted_scale_are_refused_naming_the_transform() -> None:
    z = (COUNTS - COUNTS.mean(axis=0)) / (COUNTS.std(axis=0) + 1)
    with pytest.raises(InputScaleError) as caught:
        transforms.choose(z, InputScale.log, [SCANPY])
    error = caught.value
    assert "this model takes log, or counts: normalize_total(target_sum=10000), log1p" in str(error)
    assert error.extra["accepted_scales"] == ["log", "counts"]
    assert error.extra["transforms"] == [SCANPY.describe()]
    assert error.extra["detected_scale"] == "standardized"
    with pytest.raises(InputScaleError, match="declared standardized"):
        transforms.choose(COUNTS, InputScale.log, [SCANPY], InputScale.standardized)
    # without transforms: the model's own scale only, as before
    with pytest.raises(InputScaleError, match="expects log"):
        transforms.choose(COUNTS * 1000, InputScale.log)


def test_library_sizes_count_every_gene_sent_not_only_the_panel() -> None:
    panel = GenePanel(ids=["a", "b"], fill_values=[0.0, 0.0])
    index = PanelIndex.of(panel)
    counts = np.array([[10, 30, 60]], dtype=np.float32)
    done = to_panel(counts, ["a", "b", "other"], index, InputScale.log, min_overlap=0.5,
                    transforms=[SCANPY])  # fmt: skip
    assert done.transform == SCANPY
    np.testing.assert_allclose(done.values, np.log1p([[1000.0, 3000.0]]), rtol=1e-6)


def test_card_records_are_checked() -> None:
    with pytest.raises(ValidationError, match="target_sum"):
        TransformStep(name="normalize_total")
    with pytest.raises(ValidationError, match="takes the parameters"):
        TransformStep(name="log1p", params={"base": 2.0})
    card = ModelCard.read(REPO / "models" / "pbmc68k-encoder" / "1")
    assert card.input_transforms == [SCANPY]
    assert (card.panel.species, card.panel.id_type) == ("Homo sapiens", "symbol")
    data = card.model_dump()
    with pytest.raises(ValidationError, match="one scale each"):
        ModelCard.model_validate({**data, "input_transforms": [SCANPY, SCANPY]})
    log_from_log = {"scale": "log", "steps": [{"name": "log1p"}]}
    with pytest.raises(ValidationError, match="none of them input_scale"):
        ModelCard.model_validate({**data, "input_transforms": [log_from_log]})
    # a card written before these fields loads, with none of them
    old = {k: v for k, v in data.items() if k != "input_transforms"}
    old["panel"] = {k: v for k, v in data["panel"].items() if k not in ("species", "id_type")}
    loaded = ModelCard.model_validate(old)
    assert (loaded.input_transforms, loaded.panel.species, loaded.panel.id_type) == ([], None, None)


def test_an_input_in_panel_order_is_transformed_too() -> None:
    genes = [f"g{i}" for i in range(COUNTS.shape[1])]
    index = PanelIndex.of(GenePanel(ids=genes, fill_values=[0.0] * len(genes)))
    assert index.plain  # the shortcut that skips harmonise and align
    done = to_panel(COUNTS, genes, index, InputScale.log, min_overlap=0.5, transforms=[SCANPY])
    assert done.transform == SCANPY
    np.testing.assert_array_equal(done.values, transforms.apply(SCANPY, COUNTS))
    assert (done.alignment.matched, done.alignment.matched_directly) == (len(genes), len(genes))
    logs = transforms.apply(SCANPY, COUNTS)
    same = to_panel(logs, genes, index, InputScale.log, min_overlap=0.5, transforms=[SCANPY])
    assert same.transform is None
    assert same.values is logs
