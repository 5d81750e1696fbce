"""The paired comparisons and the "why" text, from hand-made results (no training): different
numbers give different text, and each reason appears only when its numbers are there."""

from __future__ import annotations

import pytest

from training.protocol.config import ProtocolConfig
from training.protocol.run import Outcome, ProtocolResult
from training.reporting.compare import (
    MARGIN,
    against_best,
    against_reference,
    best_baseline,
    summarise,
)
from training.reporting.why import explain
from training.train.loop import History


def _result(
    scores: dict[tuple[str, str], list[float]],
    *,
    methods: tuple[str, ...] = ("frozen", "pseudo_label"),
    protocol: str = "few_shot",
    history: History | None = None,
    overlap: float = 1.0,
    batches: dict[str, dict[str, int]] | None = None,
) -> ProtocolResult:
    """(setting, model) → balanced accuracy per split; setting "k=5", "cv" or "lobo"."""
    cfg = ProtocolConfig(
        label_column="y",
        methods=methods,
        baselines=("ridge",),
        protocol=protocol,
        batch_column="b" if protocol == "lobo" else None,
    )
    result = ProtocolResult(cfg, ["a", "b", "c"], 100, 100)
    names = sorted(batches or {})
    for (setting, model), values in scores.items():
        for i, v in enumerate(values):
            if setting.startswith("k="):
                o = Outcome(
                    "few_shot", int(setting[2:]), i, model, {"balanced_accuracy": v}, [], []
                )
            else:
                name = names[i % len(names)] if names else ""
                o = Outcome(setting, None, i, model, {"balanced_accuracy": v}, [], [], name)
            result.outcomes.append(o)
    result.pretrain_history = history
    result.n_pretrain_rows = 80
    result.panel_overlap = overlap
    result.batches = batches or {}
    return result


def _text(result: ProtocolResult) -> str:
    summary = summarise(result)
    return "\n".join(
        explain(result, summary, against_best(result, summary), against_reference(result, summary))
    )


LOSING = {
    ("k=5", "frozen"): [0.60, 0.62, 0.58],
    ("k=5", "pseudo_label"): [0.55, 0.57, 0.52],
    ("k=5", "ridge"): [0.75, 0.74, 0.76],
    ("k=25", "frozen"): [0.80, 0.82, 0.81],
    ("k=25", "pseudo_label"): [0.80, 0.82, 0.81],
    ("k=25", "ridge"): [0.84, 0.85, 0.83],
}
WINNING = {
    ("k=5", "frozen"): [0.80, 0.82, 0.79],
    ("k=5", "pseudo_label"): [0.86, 0.85, 0.88],
    ("k=5", "ridge"): [0.70, 0.71, 0.69],
    ("k=25", "frozen"): [0.96, 0.97, 0.96],
    ("k=25", "pseudo_label"): [0.97, 0.97, 0.96],
    ("k=25", "ridge"): [0.96, 0.97, 0.96],
}


def test_paired_record_and_best_baseline() -> None:
    result = _result(LOSING)
    summary = summarise(result)
    assert best_baseline(result, summary, "k=5") == "ridge"
    pairs = {(p.setting, p.model): p for p in against_best(result, summary)}
    frozen = pairs[("k=5", "frozen")]
    assert frozen.mean == pytest.approx(0.60 - 0.75, abs=0.01)
    assert frozen.record == (0, 0, 3)
    assert frozen.word == "loses to"
    ref = {(p.setting, p.model): p for p in against_reference(result, summary)}
    assert ref[("k=25", "pseudo_label")].record == (0, 3, 0)
    assert ref[("k=25", "pseudo_label")].word == "matches"
    assert MARGIN == 0.01


def test_different_numbers_give_different_text() -> None:
    plateau = History(val_loss=[1.0, 0.99, 0.985], train_loss=[1.0, 1.0, 1.0], best_epoch=2)
    falling = History(
        val_loss=[1.0, 0.7, 0.5], train_loss=[1.0, 0.7, 0.5], best_epoch=2, stopped_early=False
    )
    losing = _text(_result(LOSING, history=plateau, overlap=0.6))
    winning = _text(_result(WINNING, history=falling))
    assert losing != winning
    assert "`frozen` loses everywhere: at k=5 to ridge (-0.150 ± 0.030, 0/0/3" in losing
    assert "plateaued: it fell only 1.5% (from 1.000 to 0.985)" in losing
    assert "Only 60% of the encoder's genes are in the target" in losing
    assert "k=5 gives the head 15 labelled rows" in losing
    assert "the gap narrows with more labels (-0.150 at k=5, -0.030 at k=25)" in losing
    assert "The model that makes its pseudo-labels (`frozen`) scores only 0.600" in losing
    assert "near the ceiling" not in losing
    assert "`frozen` wins at k=5 over ridge (+0.103" in winning
    assert "still falling at the epoch cap" in winning
    assert "near the ceiling (ridge 0.963 at k=25)" in winning
    assert "The rows without a label help `pseudo_label` at k=5" in winning
    for claim in ("plateaued", "genes are in the target", "labelled rows for"):
        assert claim not in winning


def test_lobo_text_names_batches_and_class_mix() -> None:
    batches = {"b1": {"a": 10}, "b2": {"a": 5, "b": 5}, "b3": {"b": 4, "c": 6}}
    scores = {
        ("lobo", "full"): [0.90, 0.70, 0.80],
        ("lobo", "dann"): [0.60, 0.72, 0.81],
        ("lobo", "ridge"): [0.95, 0.75, 0.80],
    }
    text = _text(_result(scores, methods=("dann",), protocol="lobo", batches=batches))
    assert "The rows without a label hurt `dann` leaving one batch out" in text
    assert "Most on held-out batch b1 (-0.300)" in text
    assert "it lost there: dann on b1 (-0.300, distance 0.75)" in text
    assert "Batch b1 holds one class each" in text
    mixed = {"b1": {"a": 5, "b": 5}, "b2": {"a": 5, "b": 5}, "b3": {"a": 4, "b": 6}}
    calm = _text(_result(scores, methods=("dann",), protocol="lobo", batches=mixed))
    assert "it lost there" not in calm
    assert "hold one class" not in calm
