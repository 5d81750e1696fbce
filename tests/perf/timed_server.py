"""`genexfer serve` with phase timers: the fine-tuning benchmark's server process.

It is the real server (same CLI, same uvicorn, same job executor); before it starts, wrappers
are put around the functions each phase of an upload and a fine-tuning job runs through, and
every call's start and end (wall clock) go as JSON lines to GENEXFER_BENCH_TIMINGS. The training
modules are wrapped only when the job runner first imports them, so their import time (torch)
stays inside the job as it is without the benchmark. Run:
`GENEXFER_BENCH_TIMINGS=t.jsonl python -m tests.perf.timed_server serve --port 8000`.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

_LOCK = threading.Lock()
_OUT = os.environ.get("GENEXFER_BENCH_TIMINGS", "timings.jsonl")

# module → [(attribute path, phase name)]; an attribute path "Class.method" wraps a method
WRAP: dict[str, list[tuple[str, str]]] = {
    "app.services.datasets": [("parse_upload", "upload.parse"), ("store", "upload.store")],
    "app.jobs.tasks": [("run_job", "job.run"), ("_record", "job.record")],
    "app.jobs.train": [
        ("load_npz", "job.load_dataset"),
        ("hold_out", "job.split"),
        ("choose_and_export", "job.choose_and_export"),
    ],
    # the automatic choice: its inner cross-validation, then the winner published (a head
    # through finetune_and_export, or a baseline through its ONNX export)
    "training.publish.chosen": [
        ("choose", "train.inner_cv"),
        ("finetune_and_export", "train.head_publish"),
        ("export_baseline", "export.baseline"),
    ],
    "training.publish.parent": [
        ("load_autoencoder", "train.load_encoder"),
        ("align_matrix", "train.align"),
    ],
    "training.publish.head": [
        ("finetune_classifier", "train.fit"),
        ("finetune_regressor", "train.fit"),
        ("_scores", "train.test_scores"),
        ("export_classifier", "export.total"),
        ("export_regressor", "export.total"),
    ],
    "training.export.graphs": [
        ("export_onnx", "export.onnx_export"),
        ("verify_onnx", "export.verify"),
        ("save_checkpoint", "export.checkpoint"),
        ("publish_version", "export.publish"),
    ],
    "app.inference.registry": [
        ("ModelRegistry.scan", "reload.scan"),
        ("ModelRegistry._load", "reload.load"),
    ],
}


def record(phase: str, start: float, end: float) -> None:
    line = json.dumps(
        {"phase": phase, "start": start, "end": end, "thread": threading.current_thread().name}
    )
    with _LOCK, open(_OUT, "a") as fh:
        fh.write(line + "\n")


def timed(phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            record(phase, start, time.time())

    return wrapper


def patch(module: ModuleType) -> None:
    for path, phase in WRAP.get(module.__name__, []):
        owner: Any = module
        *parents, name = path.split(".")
        for part in parents:
            owner = getattr(owner, part)
        if hasattr(owner, name):
            setattr(owner, name, timed(phase, getattr(owner, name)))


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        start = time.time()
        self.inner.exec_module(module)
        if module.__name__ == "app.jobs.train":  # torch and training load here, in the job
            record("job.import_training", start, time.time())
        patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in WRAP:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target)  # type: ignore[attr-defined]
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


def main() -> int:
    sys.meta_path.insert(0, _Finder())
    for name in list(WRAP):
        if name in sys.modules:
            patch(sys.modules[name])
    from app.cli import main as cli

    return cli(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
