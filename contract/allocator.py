"""glibc malloc tuning for long-lived processes: keep freed memory for the next request or fit.

Used by `genexfer serve` and by the automatic choice's worker processes
(`training.choice.workers`), where a fresh process with glibc's defaults took 1.3-1.5× as long
for a whole-network fit: its tensors were mapped and unmapped on every step.

A 20 MB request body passes through several short-lived buffers (uvicorn's, the joined body, numpy
masks). With glibc's defaults, memory that large goes back to the kernel after every request
(munmap, or a heap trim), and the next request takes page faults to get it back: on the benchmark
VM that doubled the event loop's cost of receiving a body. Fixing the mmap threshold at glibc's
maximum (32 MiB) and trimming the heap only when more than `trim_threshold_mb` is free keeps such
buffers in the process for reuse; the price is an RSS that stays at its high-water mark.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc refuses more on 64-bit


def keep_freed_memory(trim_threshold_mb: int) -> bool:
    """Tune glibc malloc (Linux only); 0 keeps the defaults. True when the tuning took effect."""
    if trim_threshold_mb <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # absent from musl: nothing to tune there
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    trim = min(trim_threshold_mb * 1024 * 1024, 2**31 - 1)
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) and mallopt(M_TRIM_THRESHOLD, trim))
    if not ok:
        log.warning("malloc tuning refused by the C library; running with its defaults")
    return ok
