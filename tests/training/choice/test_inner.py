"""Inner cross-validation in worker processes: the same scores as one fit after another."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.training.choice.conftest import problem_on
from training.choice import candidates as cands
from training.choice.inner import candidate_scores, inner_folds, inner_workers
from training.data.synthetic import make_synthetic
from training.methods.options import FinetuneOptions
from training.train import progress

POOL = [
    cands.transfer(FinetuneOptions("frozen")),
    cands.transfer(FinetuneOptions("full")),
    cands.baseline("logistic"),
    cands.baseline("random_forest"),
]


def test_worker_processes_give_the_scores_of_one_fit_after_another(encoder: Path) -> None:
    problem = problem_on(encoder, make_synthetic(40, 40, n_classes=2, separation=1.0, seed=4))
    cv = inner_folds(problem, seed=3)
    started: list[tuple[str, int, int]] = []
    steps: list[tuple[str, int, int]] = []

    class Hook:
        def batch(self) -> None:
            pass

        def epoch(self, stage: str, epoch: int, of: int, *losses: float) -> None:
            steps.append((stage, epoch, of))

    with progress.watching(Hook()):
        parallel = candidate_scores(
            POOL, problem, cv, seed=3, on_candidate=lambda *a: started.append(a), workers=2
        )
    one_by_one = candidate_scores(POOL, problem, cv, seed=3, workers=1)
    assert parallel == one_by_one
    assert all(len(s) == len(cv.folds) for s in parallel)
    assert started == [(c.name, i, len(POOL)) for i, c in enumerate(POOL)]
    # the job's progress and cancellation check hear every fit that came back
    fits = len(POOL) * len(cv.folds)
    assert [(e, n) for _, e, n in steps] == [(done, fits) for done in range(fits)]
    assert steps[0][0] == f"frozen fold 1 of {len(cv.folds)}"


def test_the_worker_count_follows_the_setting_the_fits_and_the_device() -> None:
    assert inner_workers(POOL, 50, 3) == 3
    assert inner_workers(POOL, 2, 3) == 2
    assert 1 <= inner_workers(POOL, 50) <= min(len(os.sched_getaffinity(0)), 8)
    with pytest.raises(ValueError, match="workers must be ≥ 0"):
        inner_workers(POOL, 50, -1)
    if torch.cuda.is_available():  # a GPU is shared: the fits stay in this process
        on_gpu = [cands.transfer(FinetuneOptions("frozen", device="cuda")), *POOL[2:]]
        assert inner_workers(on_gpu, 50, 4) == 1
