from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.multiomics.evaluation import Paired, Scenario, run, write

pytestmark = pytest.mark.slow


def test_paired_comparison_runs_and_writes(tmp_path: Path) -> None:
    scenario = Scenario("protein", ("protein",), {"protein": 0.5, "methylation": 0.0})
    results = run(repeats=2, n_source=120, n_target=80, epochs=2, scenarios=[scenario])
    assert len(results) == 1
    assert len(results[0].expression) == len(results[0].multiomics) == 2
    path = write(results, tmp_path, "cmd", 1.0)
    assert "| protein |" in path.read_text()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["scenarios"][0]["n"] == 2


def test_summary_is_paired() -> None:
    s = Paired("x", [0.5, 0.6, 0.7], [0.6, 0.6, 0.9]).summary()
    assert s["diff_mean"] == pytest.approx(0.1)
    assert s["wins"] == 2
    assert s["ci_low"] < s["diff_mean"] < s["ci_high"]
