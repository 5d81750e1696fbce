"""The loss curve a job records: one point per epoch, bounded, answered apart from the metrics."""

from __future__ import annotations

import itertools
import math
import uuid
from datetime import UTC, datetime

from app.jobs.tasks import MAX_CURVE_POINTS, LossCurve
from app.schemas.jobs import JobRead


def test_every_epoch_is_kept_while_there_is_room() -> None:
    curve = LossCurve()
    for e in range(3):
        curve.add("head", e + 1, 1.0 / (e + 1), math.nan)
    assert [p["step"] for p in curve.points] == [1, 2, 3]
    assert curve.points[0] == {
        "step": 1, "stage": "head", "epoch": 1, "train_loss": 1.0, "val_loss": None,
    }  # fmt: skip


def test_a_long_run_is_thinned_evenly_and_stays_bounded() -> None:
    curve = LossCurve(limit=MAX_CURVE_POINTS)
    for e in range(10_000):
        curve.add("head", e + 1, float(e), float(e))
    steps = [p["step"] for p in curve.points]
    assert len(steps) <= MAX_CURVE_POINTS
    assert steps[0] == 1
    assert steps[-1] > 9_900
    gaps = {b - a for a, b in itertools.pairwise(steps)}
    assert gaps == {curve.stride}
    assert curve.stride == 32


def test_job_read_answers_the_curve_apart_from_the_metrics() -> None:
    now = datetime.now(UTC)
    point = {"step": 1, "stage": "head", "epoch": 1, "train_loss": 0.5, "val_loss": 0.6}
    job = JobRead(
        id=uuid.uuid4(),
        status="running",
        dataset_id=None,
        params={},
        progress=0.1,
        epoch=1,
        metrics={"train_loss": 0.5, "curve": [point]},
        error=None,
        attempts=1,
        cancel_requested=False,
        tenant="default",
        dispatched_at=now,
        history=[],
        result_model=None,
        result_version=None,
        created_at=now,
        started_at=now,
        finished_at=None,
    )
    assert job.metrics == {"train_loss": 0.5}
    assert [p.model_dump() for p in job.curve] == [point]
    assert "curve" in job.model_dump(mode="json")
