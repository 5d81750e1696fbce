"""The inner cross-validation's fits, side by side in worker processes, each on one core.

`score_all` gives every candidate's score on every inner fold, the same numbers whether the
fits run one after another in this process or in a pool: each fit is seeded by its fold
(`training.choice.inner.fold_score`), and each worker is a process of its own. Threads were
tried and not used: torch's global random generator (weight initialisation, dropout) is shared
by a process's threads, so two fits side by side drew from one stream and their scores depended
on timing.

Why a `multiprocessing` pool: a cancelled job must stop its fits at once, and `Pool.terminate`
kills the workers; `concurrent.futures` can cancel only fits not yet started, and loky's
executor (tried) raced in its manager thread when shut down with fits pending. The pool's
processes fork from a server process that has already imported torch and the training code
(`forkserver`, preloaded): only the first pool of a process pays that import; later pools start
in a fraction of a second. Each worker watches a pipe only the caller can write to and exits
when it closes, so a killed service leaves no fit running.

The workers report each fit's start and its epochs through a queue; the caller's thread relays
them to the training hook in effect (a job's progress) and checks it for cancellation between
waits. As in every `multiprocessing` program, a script that calls `score_all` (through
`choose`) guards its entry point with ``if __name__ == "__main__"``: workers import the
caller's main module.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import pickle
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.pool import AsyncResult
from multiprocessing.queues import SimpleQueue
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from threadpoolctl import threadpool_limits

from contract import defaults
from contract.allocator import keep_freed_memory
from training.choice.candidates import Candidate, Problem
from training.choice.inner import InnerCV, fold_score, fold_scores
from training.nn.device import SMALL_MODEL_GENES
from training.train import progress

OnCandidate = Callable[[str, int, int], None]

# how often the caller's thread checks for cancellation while the workers fit
POLL_S = 0.05
# below this many labelled values (samples × genes) the fits are too short for a pool to pay for
# its start-up and its messages: 60 samples × 40 genes took 4.8 s in one process and 4.8-6.6 s in
# two; 160 × 2,000 took 24.7 s in one and 14.0 s in two (2 cores, tests/perf/RESULTS.md)
POOL_MIN_VALUES = 100_000
# a worker reports an epoch at most this often (the job's progress is written every few seconds)
EPOCH_EVERY_S = 0.2
# this process's CPU quota, where a container has one
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
# the serving process's default (`GENEXFER_MALLOC_TRIM_THRESHOLD_MB`)
WORKER_TRIM_THRESHOLD_MB = 1024


def workers_for(candidates: Sequence[Candidate], problem: Problem, n_fits: int) -> int:
    """How many processes fit side by side: one per core this process may use (`cores`), at most
    `defaults.INNER_WORKERS` and one per fit; one (no pool) for a problem too small to pay for
    the pool (`POOL_MIN_VALUES`); for a model too large for one thread a fit (`SMALL_MODEL_GENES`:
    it trains on every core here, and a worker's one thread would sum in another order); and
    when a candidate trains on a GPU, where the fits would share the device, not the cores."""
    devices = {c.options.device for c in candidates if c.options is not None}
    if "cuda" in devices or ("auto" in devices and torch.cuda.is_available()):
        return 1
    if problem.matrix.X.size < POOL_MIN_VALUES or problem.pipeline.n_genes > SMALL_MODEL_GENES:
        return 1
    return max(1, min(cores(), defaults.INNER_WORKERS, n_fits))


def cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a
    container's `cpus:`), which the affinity does not show."""
    n = len(os.sched_getaffinity(0))
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()
        if quota != "max":
            n = min(n, max(1, int(quota) // int(period)))
    except (OSError, ValueError):  # no cgroup v2 here, or a format not known
        pass
    return n


def score_all(
    candidates: Sequence[Candidate],
    problem: Problem,
    cv: InnerCV,
    *,
    seed: int,
    workers: int | None = None,
    on_candidate: OnCandidate | None = None,
) -> list[list[float]]:
    """Each candidate's score on each of `cv`'s folds (fold ``i`` seeded ``seed + i``), fitted
    in `workers` processes (default `workers_for`), or in this one when that is 1."""
    features = problem.features()
    if workers is None:
        workers = workers_for(candidates, problem, len(candidates) * len(cv.folds))
    if workers <= 1:
        return [
            _in_process(i, c, candidates, problem, cv, seed, features, on_candidate)
            for i, c in enumerate(candidates)
        ]
    return _in_pool(candidates, problem, cv, seed, features, workers, on_candidate)


def _in_process(
    index: int,
    candidate: Candidate,
    candidates: Sequence[Candidate],
    problem: Problem,
    cv: InnerCV,
    seed: int,
    features: npt.NDArray[np.float32],
    on_candidate: OnCandidate | None,
) -> list[float]:
    if on_candidate is not None:
        on_candidate(candidate.name, index, len(candidates))
    return fold_scores(candidate, problem, cv, seed=seed, features=features)


def _in_pool(
    candidates: Sequence[Candidate],
    problem: Problem,
    cv: InnerCV,
    seed: int,
    features: npt.NDArray[np.float32],
    workers: int,
    on_candidate: OnCandidate | None,
) -> list[list[float]]:
    context = _context()
    events: SimpleQueue[tuple[Any, ...]] = context.SimpleQueue()
    hook = progress.current()
    started: set[int] = set()
    fitting: dict[tuple[int, int], int] = {}  # (candidate, fold) → the worker's pid

    def relay() -> None:
        while not events.empty():
            kind, *rest = events.get()
            if kind == "failed":
                raise RuntimeError(
                    f"a worker of the inner cross-validation failed to start: {rest[0]}"
                )
            if kind == "start":
                index, fold, pid = rest
                fitting[(index, fold)] = pid
                if index not in started:
                    started.add(index)
                    if on_candidate is not None:
                        on_candidate(candidates[index].name, index, len(candidates))
            elif kind == "epoch" and hook is not None:
                hook.epoch(*rest)

    def check_workers(fits: list[list[AsyncResult[float]]]) -> None:
        """A worker killed mid-fit (out of memory, a signal) never answers: the pool starts
        another, and the fit would be waited for for ever."""
        alive = {p.pid for p in multiprocessing.active_children()}
        for (index, fold), pid in fitting.items():
            if pid not in alive and not fits[index][fold].ready():
                raise RuntimeError(
                    f"the worker fitting {candidates[index].name} on inner fold {fold} stopped "
                    f"before it answered (killed, or out of memory?)"
                )

    # only this process holds `alive`: if it dies, the workers see `lifeline` close and exit
    lifeline, alive = context.Pipe(duplex=False)
    with tempfile.TemporaryDirectory(prefix="genexfer-choice-") as tmp, alive, lifeline:
        # a file, not the pool's arguments: a worker keeps those for its life, a second copy of
        # the data beside the one it loads; plain pickle: by value, every worker trains copies
        # of its own (torch's reducer would move the caller's encoder into shared memory)
        state = Path(tmp) / "problem.pickle"
        with state.open("wb") as out:
            pickle.dump((problem, cv, features), out, protocol=pickle.HIGHEST_PROTOCOL)
        # leaving the block terminates the workers: at once on cancellation or a failed fit
        with context.Pool(workers, _start_worker, (str(state), events, lifeline)) as pool:
            fits = [
                [pool.apply_async(_worker_fit, (i, c, f, seed)) for f in range(len(cv.folds))]
                for i, c in enumerate(candidates)
            ]
            waiting = [f for row in fits for f in row]
            while waiting:
                relay()
                if hook is not None:
                    hook.batch()  # raises if the job was cancelled
                waiting[0].wait(POLL_S)
                for f in waiting:
                    if f.ready():
                        f.get()  # a failed fit raises its error here, at once
                waiting = [f for f in waiting if not f.ready()]
                check_workers(fits)
            relay()
            return [[f.get() for f in row] for row in fits]


def _context() -> Any:
    """The forkserver context, its server preloading this module (torch, the training code)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


# each worker's problem, folds and features, unpickled once when it starts
_worker: dict[str, Any] = {}


def _start_worker(path: str, events: SimpleQueue[tuple[Any, ...]], lifeline: Connection) -> None:
    try:
        threading.Thread(target=_exit_with_caller, args=(lifeline,), daemon=True).start()
        # a fresh process with glibc's defaults maps and unmaps every large tensor it frees: a
        # whole-network fit took 1.3-1.5x as long as in the long-running service process
        keep_freed_memory(WORKER_TRIM_THRESHOLD_MB)
        # one core each, for torch and for the BLAS under numpy and scikit-learn (as
        # `training.nn.device.cpu_threads_for` in the caller): the pool is the parallelism
        torch.set_num_threads(1)
        threadpool_limits(limits=1)
        with open(path, "rb") as state:
            problem, cv, features = pickle.load(state)  # noqa: S301 (the caller's own file)
    except BaseException as exc:  # the pool would start another worker, which fails the same way
        events.put(("failed", f"{type(exc).__name__}: {exc}"))
        raise
    _worker.update(problem=problem, cv=cv, features=features, events=events)


def _worker_fit(index: int, candidate: Candidate, fold: int, seed: int) -> float:
    events = _worker["events"]
    events.put(("start", index, fold, os.getpid()))
    with progress.watching(_Relay(events)):
        return fold_score(
            candidate,
            _worker["problem"],
            _worker["cv"],
            fold,
            seed=seed,
            features=_worker["features"],
        )


class _Relay:
    """A worker's training hook: epochs go to the caller's thread (at most one per
    `EPOCH_EVERY_S`), which also checks for cancellation and terminates the pool to cancel."""

    def __init__(self, events: SimpleQueue[tuple[Any, ...]]) -> None:
        self.events = events
        self.last = -math.inf

    def batch(self) -> None:
        pass

    def epoch(
        self, description: str, epoch: int, max_epochs: int, train_loss: float, val_loss: float
    ) -> None:
        now = time.monotonic()
        if now - self.last >= EPOCH_EVERY_S:
            self.last = now
            self.events.put(("epoch", description, epoch, max_epochs, train_loss, val_loss))


def _exit_with_caller(lifeline: Connection) -> None:
    """Wait (in a thread of the worker) for the caller's end of the lifeline to close, then exit:
    the caller died without terminating the pool (a pool terminated normally kills its workers
    first). The fork server cannot do this: every worker holds its liveness pipe."""
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()
    os._exit(1)
