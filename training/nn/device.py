"""Where a model trains: the device, and the CPU threads of small fits.

`cpu_threads_for` holds one torch thread and one BLAS/OpenMP thread (threadpoolctl) while a
small model trains; `resolve_device` turns ``cpu``/``cuda``/``auto`` into a torch device.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch
from threadpoolctl import threadpool_limits

DEVICES = ("cpu", "cuda", "auto")


# up to this many input genes a model's CPU ops are small (a minibatch of ≤ 64 rows through a few
# hundred units): one intra-op thread is then as fast on a quiet machine, and on a busy one far
# faster, as OpenMP's waiting threads contend for the cores. Measured on the 2-core machine at
# load 10: a frozen head on 28 pbmc68k cells took 17.9 s with 2 threads and 1.1 s with one. The
# same holds for the BLAS under numpy and scikit-learn: a logistic regression on 128 samples ×
# 2,000 genes took 0.27 s with OpenBLAS's two threads and 0.022 s with one (quiet machine).
SMALL_MODEL_GENES = 5_000


class _OneThread:
    """One torch thread and one BLAS/OpenMP thread while any small fit runs, the process's
    settings back when the last one ends. Both settings are process-wide, and a service runs
    several jobs in threads: each job saving and restoring them itself could restore one thread
    for good (A saves 2, B saves 1, A restores 2, B restores 1). ONNX Runtime's threads are its
    own and not affected."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.saved: tuple[int, threadpool_limits] | None = None

    def enter(self) -> None:
        with self.lock:
            if self.users == 0:
                self.saved = (torch.get_num_threads(), threadpool_limits(limits=1))
                torch.set_num_threads(1)
            self.users += 1

    def leave(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0 and self.saved is not None:
                threads, blas = self.saved
                torch.set_num_threads(threads)
                blas.restore_original_limits()
                self.saved = None


_ONE_THREAD = _OneThread()


@contextlib.contextmanager
def cpu_threads_for(n_genes: int) -> Iterator[None]:
    """One torch CPU thread and one BLAS/OpenMP thread (threadpoolctl) inside this block when
    the model is small (`SMALL_MODEL_GENES`); the settings are restored when the last such block
    in the process ends."""
    if n_genes > SMALL_MODEL_GENES:
        yield
        return
    _ONE_THREAD.enter()
    try:
        yield
    finally:
        _ONE_THREAD.leave()


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (CUDA when present) as a device; ValueError otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in DEVICES:
        raise ValueError(f"device must be cpu, cuda or auto, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for but CUDA is not available")
    return torch.device(name)
