from __future__ import annotations

import numpy as np
import pytest

from contract.card import InputScale
from contract.preprocess.normalise import cpm
from contract.preprocess.steps import Log2p1, NormalizeTotal
from contract.scale import detect_scale
from tests.contract.preprocess.oracle_data import pasilla
from training.data.pbmc68k import load_pbmc68k_reduced


@pytest.fixture(scope="module")
def counts() -> np.ndarray:
    return pasilla(2000)[0].to_numpy().astype(np.float32)


def test_real_data_on_each_scale(counts: np.ndarray) -> None:
    assert detect_scale(counts).scale == "counts"
    assert detect_scale(cpm(counts)).scale == "normalized"
    logged = Log2p1().transform(NormalizeTotal(1e6).transform(counts))  # a cpm, log2p1 recipe
    assert detect_scale(logged).scale == "log"
    z = (logged - logged.mean(axis=0)) / logged.std(axis=0)
    report = detect_scale(z)
    assert report.scale == "standardized"
    assert "centred near 0" in report.reason
    pbmc = load_pbmc68k_reduced().X  # scanpy's log1p of normalised counts
    assert detect_scale(pbmc).scale == "log"


def test_compatibility_rules(counts: np.ndarray) -> None:
    raw = detect_scale(counts)
    assert raw.accepts("counts")
    assert raw.accepts("normalized")  # both are library-size normalised by the model
    assert not raw.accepts("log")
    small = detect_scale(np.array([[0.0, 1.0, 3.0], [2.0, 0.0, 5.0]]))
    assert small.compatible == frozenset({"counts", "log"})  # too small to tell apart
    assert small.accepts("log")
    assert not detect_scale(cpm(counts)).accepts("log")
    offset = detect_scale(np.log2(cpm(counts) + 0.5))  # voom-style log-CPM: some negatives
    assert offset.scale == "log"
    assert not offset.accepts("standardized")


def test_missing_values_are_ignored_and_all_missing_refused() -> None:
    values = np.array([[np.nan, 1.5, 2.25], [0.5, np.nan, 7.0]], dtype=np.float32)
    assert detect_scale(values).scale == "log"
    with pytest.raises(ValueError, match="no finite values"):
        detect_scale(np.full((2, 2), np.nan))


def test_large_inputs_are_judged_on_a_strided_sample() -> None:
    rng = np.random.default_rng(0)
    logged = np.log1p(rng.gamma(0.3, 4.0, size=(64, 20_000))).astype(np.float32)
    whole = detect_scale(logged[:8])  # 160,000 values: every one looked at
    sampled = detect_scale(logged)  # 1.28 M values: a strided sample of ~200,000
    assert whole.scale == sampled.scale == "log"
    counts = np.round(rng.gamma(0.3, 40.0, size=(64, 20_000))).astype(np.float32)
    assert detect_scale(counts).compatible == frozenset({"counts"})
    # missing values are skipped; a sample that hits only missing values looks at all of them
    holes = np.full((64, 20_000), np.nan, dtype=np.float32)
    holes.reshape(-1)[1::7] = 2.5
    assert detect_scale(holes).scale == "log"


def test_refuse_negative_names_the_samples_on_non_negative_scales_only() -> None:
    from contract.errors import InputScaleError
    from contract.scale import refuse_negative

    x = np.full((3, 4), 0.5, np.float32)
    x[2, 1] = -5.0
    for scale in (InputScale.log, InputScale.counts, InputScale.normalized):
        with pytest.raises(InputScaleError) as caught:
            refuse_negative(x, scale, ["a", "b", "c"])
        assert caught.value.extra["samples"] == ["c"]
    with pytest.raises(InputScaleError) as caught:
        refuse_negative(x, InputScale.log, None)
    assert caught.value.extra["samples"] == ["2"]
    refuse_negative(x, InputScale.standardized, ["a", "b", "c"])  # z-scores may be negative
    refuse_negative(x, InputScale.log, ["a", "b", "c"], declared=InputScale.standardized)
    x[2, 1] = -1e-9  # rounding noise
    refuse_negative(x, InputScale.log, ["a", "b", "c"])
