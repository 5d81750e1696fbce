"""The model registry: scans models/<name>/<int version>/, loads versions, hot-reloads the folder.

Which versions are served: per model, the newest `keep_versions` versions that load. A new version
folder is loaded on the next scan (every `reload_interval_s`) without a restart; a version that
drops out of the newest N, or whose folder disappears, is taken out of routing at once, then its
in-flight requests are drained and its session is closed. A folder that fails to parse, verify or
load is recorded in `errors` (shown by /readyz) and skipped; it is retried only when its files
change (folders are immutable, but a copy may still be arriving). Dot-folders (a training export
still being written) are ignored.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.errors import ModelNotFound
from app.inference.backend import BackendFactory, InferenceBackend
from app.inference.batcher import Batcher
from contract.align import PanelIndex
from contract.card import ModelCard

log = logging.getLogger(__name__)

BatcherFactory = Callable[[ModelCard, InferenceBackend], Batcher]


def default_batcher(card: ModelCard, backend: InferenceBackend) -> Batcher:
    """A batcher with the default policy and no metrics."""
    return Batcher(backend, label=(card.name, str(card.version)))


@dataclass(frozen=True)
class LoadedModel:
    """One servable model version."""

    card: ModelCard
    folder: Path
    backend: InferenceBackend
    index: PanelIndex
    batcher: Batcher


@dataclass(frozen=True)
class LoadError:
    path: str
    error: str
    stamp: tuple[tuple[str, int, int], ...] = ()


def _stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of a folder's files: changes when a copy is still arriving."""
    try:
        return tuple(
            sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir())
        )
    except OSError:
        return ()


class ModelRegistry:
    """Every loaded model version, by name and version."""

    def __init__(
        self,
        root: Path,
        factory: BackendFactory,
        *,
        make_batcher: BatcherFactory = default_batcher,
        keep_versions: int = 3,
    ) -> None:
        self.root = root
        self._factory = factory
        self._make_batcher = make_batcher
        self.keep_versions = keep_versions
        # replaced whole, never mutated: readers on the event loop see one consistent snapshot
        self._models: dict[str, dict[int, LoadedModel]] = {}
        self._errors: dict[Path, LoadError] = {}
        self._lock = threading.Lock()  # one scan at a time

    def scan(self) -> list[LoadedModel]:
        """Load new versions, record broken ones; return the versions taken out of routing."""
        with self._lock:
            folders = self._version_folders()
            by_name: dict[str, list[int]] = {}
            for name, version in folders:
                by_name.setdefault(name, []).append(version)
            models: dict[str, dict[int, LoadedModel]] = {}
            for name, versions in by_name.items():
                kept = self._keep_newest(name, sorted(versions, reverse=True))
                if kept:
                    models[name] = kept
            present = {self.root / n / str(v) for n, v in folders}
            self._errors = {p: e for p, e in self._errors.items() if p in present}
            retired = [
                m
                for name, versions in self._models.items()
                for version, m in versions.items()
                if version not in models.get(name, {})
            ]
            self._models = models
        for m in retired:
            log.info("unloading %s/%d (superseded or removed)", m.card.name, m.card.version)
        return retired

    def _keep_newest(self, name: str, versions: list[int]) -> dict[int, LoadedModel]:
        kept: dict[int, LoadedModel] = {}
        for version in versions:
            if len(kept) == self.keep_versions:
                break
            current = self._models.get(name, {}).get(version)
            if current is not None:
                kept[version] = current
                continue
            folder = self.root / name / str(version)
            stamp = _stamp(folder)
            known = self._errors.get(folder)
            if known is not None and known.stamp == stamp:
                continue
            try:
                kept[version] = self._load(folder, name, version)
            except Exception as exc:  # any broken folder is reported, never fatal
                log.error("cannot load %s: %s", folder, exc)
                self._errors[folder] = LoadError(str(folder), f"{type(exc).__name__}: {exc}", stamp)
                continue
            self._errors.pop(folder, None)
            runs_on = ", ".join(kept[version].backend.providers)
            log.info("loaded %s/%d: runs on %s", name, version, runs_on)
        return kept

    def _version_folders(self) -> list[tuple[str, int]]:
        if not self.root.is_dir():
            log.warning("model repository %s does not exist", self.root)
            return []
        return [
            (name_dir.name, int(version_dir.name))
            for name_dir in self.root.iterdir()
            if name_dir.is_dir() and not name_dir.name.startswith(".")
            for version_dir in name_dir.iterdir()
            if version_dir.is_dir() and version_dir.name.isdigit()
        ]

    def _load(self, folder: Path, name: str, version: int) -> LoadedModel:
        card = ModelCard.read(folder)
        if (card.name, card.version) != (name, version):
            raise ValueError(
                f"model.json says {card.name}/{card.version}, folder says {name}/{version}"
            )
        problems = card.verify_files(folder)
        if problems:
            raise ValueError("; ".join(problems))
        if card.preprocessing.steps and not card.preprocessing.fused_in_graph:
            # its graph expects input already through batch-level steps (ComBat) that predict
            # does not apply: serving it would answer garbage
            steps = [s.name for s in card.preprocessing.steps]
            raise ValueError(
                f"its preprocessing {steps} is not fused into the graph; classify/embed apply "
                "only fused preprocessing (run batch-level steps with POST /v1/preprocess)"
            )
        backend = self._factory(folder, card)
        batcher = self._make_batcher(card, backend)
        return LoadedModel(card, folder, backend, PanelIndex.of(card.panel), batcher)

    def get(self, name: str, version: int | None = None) -> LoadedModel:
        """The given version of a model, or its latest; ModelNotFound otherwise."""
        versions = self._models.get(name)
        if not versions:
            raise ModelNotFound(f"no model named {name!r}; GET /v1/models lists them")
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise ModelNotFound(
                f"model {name!r} has no version {version}; it has {sorted(versions)}"
            )
        return versions[version]

    def models(self) -> list[LoadedModel]:
        """Every loaded version, by name then version."""
        snapshot = self._models
        return [
            snapshot[name][version]
            for name in sorted(snapshot)
            for version in sorted(snapshot[name])
        ]

    @property
    def errors(self) -> list[LoadError]:
        return list(self._errors.values())

    @staticmethod
    async def unload(model: LoadedModel, timeout_s: float) -> None:
        """Drain a retired version's in-flight requests, then close its session."""
        if not await model.batcher.drain(timeout_s):
            name, version = model.card.name, model.card.version
            log.warning("%s/%d still busy after %.0f s; closing it", name, version, timeout_s)
        model.backend.close()

    async def rescan(self, drain_timeout_s: float) -> None:
        """Scan now (in a thread) and unload what the scan retires; errors are logged."""
        try:
            retired = await asyncio.to_thread(self.scan)
        except Exception:  # a failed scan (e.g. an unreadable folder) must not stop watching
            log.exception("scanning %s failed", self.root)
            return
        await asyncio.gather(*(self.unload(m, drain_timeout_s) for m in retired))

    async def watch(self, interval_s: float, drain_timeout_s: float) -> None:
        """Re-scan every `interval_s` (runs until cancelled); unload what each scan retires."""
        while True:
            await asyncio.sleep(interval_s)
            await self.rescan(drain_timeout_s)

    def close(self) -> None:
        """Release every session (at shutdown)."""
        with self._lock:
            for versions in self._models.values():
                for model in versions.values():
                    model.batcher.close()
                    model.backend.close()
            self._models = {}
