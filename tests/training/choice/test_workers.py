"""The inner folds' fits in worker processes: the same scores, progress relayed, a cancelled or
failed choice stops its workers at once, and workers die with the process that started them."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from contract.vocab import INNER_CV_STAGE
from tests.training.choice.conftest import QUICK, problem_on
from training.choice import candidates as cands
from training.choice import workers
from training.choice.auto import choose
from training.choice.inner import inner_folds
from training.choice.workers import POOL_MIN_VALUES, score_all, workers_for
from training.data.synthetic import make_synthetic
from training.methods.options import FinetuneOptions
from training.nn.config import TrainConfig
from training.train import progress

BASE = FinetuneOptions(strategy="frozen")
# a fit that would run for hours unless stopped
ENDLESS = TrainConfig(epochs=100_000, batch_size=32, lr=1e-4, val_fraction=0.2, patience=100_000)


def _candidates(*names: str) -> list[cands.Candidate]:
    return [cands.parse(n, "classification", BASE) for n in names]


def _problem(encoder: Path, train_cfg: TrainConfig = QUICK) -> cands.Problem:
    return problem_on(encoder, make_synthetic(60, 40, n_classes=3, seed=3), train_cfg=train_cfg)


class Stopped(Exception):
    pass


class Watcher:
    """A job's hook: records the stages and the pool's processes it hears of, and stops the
    training once `stop_after` epochs were reported."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.stages: list[str] = []
        self.workers: set[int] = set()
        self.stop_after = stop_after
        self.stopped_at: float | None = None

    def batch(self) -> None:
        if self.stop_after is not None and len(self.stages) >= self.stop_after:
            self.stopped_at = self.stopped_at or time.monotonic()
            raise Stopped("cancelled")

    def epoch(self, description: str, epoch: int, max_epochs: int, tl: float, vl: float) -> None:
        self.stages.append(description)
        self.workers |= {p.pid for p in multiprocessing.active_children() if p.pid is not None}


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}  # a zombie has stopped; its reaping is its parent's business


def test_a_pool_gives_the_scores_of_one_fit_after_another(encoder: Path) -> None:
    problem = _problem(encoder)
    candidates = _candidates("frozen", "full", "logistic", "random_forest")
    alone = choose(problem, candidates, seed=4, workers=1)
    pooled = choose(problem, candidates, seed=4, workers=2)
    assert pooled.selection == alone.selection
    assert all(len(c.folds) == 30 for c in pooled.selection.candidates)


def test_the_workers_progress_reaches_the_hook_as_inner_stages(encoder: Path) -> None:
    problem = _problem(encoder)
    watcher, heard = Watcher(), []
    with progress.watching(watcher):
        choose(
            problem,
            _candidates("frozen", "full", "logistic"),
            workers=2,
            on_candidate=lambda name, i, n: heard.append((name, i, n)),
        )
    assert watcher.stages
    assert all(s.startswith(INNER_CV_STAGE) for s in watcher.stages)
    assert sorted(heard) == [("frozen", 0, 3), ("full", 1, 3), ("logistic", 2, 3)]
    assert len(watcher.workers) == 2
    assert all(_gone(pid) for pid in watcher.workers)


def test_a_cancelled_choice_stops_its_workers_at_once(encoder: Path) -> None:
    problem = _problem(encoder, ENDLESS)
    watcher = Watcher(stop_after=3)
    with progress.watching(watcher), pytest.raises(Stopped):
        choose(problem, _candidates("full", "frozen"), workers=2)
    assert watcher.stopped_at is not None
    assert time.monotonic() - watcher.stopped_at < 5.0  # not the endless fits' hours
    assert watcher.workers
    assert all(_gone(pid) for pid in watcher.workers)
    assert multiprocessing.active_children() == []


def test_a_failed_fit_raises_in_the_caller_and_stops_the_others(encoder: Path) -> None:
    problem = _problem(encoder, ENDLESS)
    broken = cands.Candidate("broken", "baseline", baseline="no_such_model")
    watcher = Watcher()
    started = time.monotonic()
    with progress.watching(watcher), pytest.raises(ValueError, match="no_such_model"):
        score_all(
            [broken, *_candidates("full")],
            problem,
            inner_folds(problem, 0),
            seed=0,
            workers=2,
        )
    assert time.monotonic() - started < 60  # not the endless fits' hours
    assert multiprocessing.active_children() == []


class Killer(Watcher):
    """Kills one of the pool's workers at the first epoch it hears of."""

    def epoch(self, description: str, epoch: int, max_epochs: int, tl: float, vl: float) -> None:
        super().epoch(description, epoch, max_epochs, tl, vl)
        if self.workers and self.stopped_at is None:
            self.stopped_at = time.monotonic()
            os.kill(min(self.workers), signal.SIGKILL)


def test_a_worker_killed_mid_fit_fails_the_choice_instead_of_hanging(encoder: Path) -> None:
    problem = _problem(encoder, ENDLESS)
    killer = Killer()
    with progress.watching(killer), pytest.raises(RuntimeError, match="stopped before it answered"):
        choose(problem, _candidates("full"), workers=2)
    assert killer.stopped_at is not None
    assert time.monotonic() - killer.stopped_at < 10
    assert multiprocessing.active_children() == []


def test_workers_that_cannot_start_fail_the_choice(
    encoder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def garbage(obj: object, file: Any, protocol: int | None = None) -> None:
        file.write(b"not a pickle")

    monkeypatch.setattr(workers.pickle, "dump", garbage)
    with pytest.raises(RuntimeError, match="failed to start: UnpicklingError"):
        choose(_problem(encoder), _candidates("full"), workers=2)
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000", None), ("100000 100000", 1), ("150000 100000", 1), ("garbage", None)],
)
def test_a_cgroup_cpu_quota_caps_the_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu_max: str, expected: int | None
) -> None:
    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    monkeypatch.setattr(workers, "CGROUP_CPU_MAX", tmp_path / "cpu.max")
    assert workers.cores() == (affinity if expected is None else min(affinity, expected))
    monkeypatch.setattr(workers, "CGROUP_CPU_MAX", tmp_path / "absent")
    assert workers.cores() == affinity


def test_one_process_per_core_and_none_for_a_gpu_or_a_small_problem(encoder: Path) -> None:
    cores = workers.cores()
    plain = _candidates("frozen", "full", "logistic")
    big = problem_on(encoder, make_synthetic(POOL_MIN_VALUES // 40, 40, n_classes=3, seed=3))
    assert workers_for(plain, big, 50) == max(1, min(cores, 4))
    assert workers_for(plain, big, 1) == 1
    gpu = cands.transfer(dataclasses.replace(BASE, device="cuda"))
    assert workers_for([*plain, gpu], big, 50) == 1
    assert workers_for(plain, _problem(encoder), 50) == 1


ORPHAN = textwrap.dedent(
    """
    import multiprocessing, sys
    from pathlib import Path
    from tests.training.choice.test_workers import ENDLESS, _candidates, _problem
    from training.choice.inner import inner_folds
    from training.choice.workers import score_all
    from training.train import progress

    class Report:
        def batch(self):
            pass
        def epoch(self, *args):
            pids = [p.pid for p in multiprocessing.active_children()]
            print(" ".join(map(str, pids)), flush=True)

    if __name__ == "__main__":
        problem = _problem(Path(sys.argv[1]), ENDLESS)
        with progress.watching(Report()):
            score_all(_candidates("full"), problem, inner_folds(problem, 0), seed=0, workers=2)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_workers_die_with_a_killed_caller(encoder: Path, tmp_path: Path) -> None:
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN)
    root = Path(__file__).resolve().parents[3]
    with subprocess.Popen(
        [sys.executable, str(script), str(encoder)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    ) as caller:
        try:
            assert caller.stdout is not None
            ready = selectors.DefaultSelector()
            ready.register(caller.stdout, selectors.EVENT_READ)
            assert ready.select(timeout=120), "the caller never reported its workers"
            pids = [int(p) for p in caller.stdout.readline().split()]
            assert len(pids) == 2
            caller.send_signal(signal.SIGKILL)
            caller.wait(10)
            deadline = time.monotonic() + 10
            while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert all(_gone(pid) for pid in pids)
        finally:
            caller.kill()
