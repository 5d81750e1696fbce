"""Multi-task scoring: the card's warning when a task's baseline scores higher, or when it could
not be compared."""

from __future__ import annotations

from training.evaluation.multitask import warnings_for
from training.train.multitask import FittedTask, TaskSpec


def test_a_task_that_cannot_be_scored_is_said_so() -> None:
    task = FittedTask(TaskSpec("score", "regression"), ["score"], 3)
    (warning,) = warnings_for(task, None, None)
    assert warning.startswith("not compared with ridge regression")
    better = warnings_for(task, {"r2": 0.1}, {"r2": 0.3})
    assert better == [
        "ridge regression on the same training samples scored higher on the held-out samples "
        "(r2 0.300 vs 0.100 for this task's head)"
    ]
    assert warnings_for(task, {"r2": 0.3}, {"r2": 0.1}) == []
