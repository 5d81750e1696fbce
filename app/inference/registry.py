"""The model registry: scans models/<name>/<int version>/, loads each version once.

A folder that fails to parse, verify or load is recorded in `errors` and skipped; it never takes the
service down. Dot-folders (a training export still being written) are ignored.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.errors import ModelNotFound
from app.inference.align import panel_lookup
from app.inference.backend import BackendFactory, InferenceBackend
from app.inference.card import ModelCard

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """One servable model version."""

    card: ModelCard
    folder: Path
    backend: InferenceBackend
    lookup: dict[str, int]
    fill: npt.NDArray[np.float32]


@dataclass(frozen=True)
class LoadError:
    path: str
    error: str


class ModelRegistry:
    """Every loaded model version, by name and version."""

    def __init__(self, root: Path, factory: BackendFactory) -> None:
        self.root = root
        self._factory = factory
        self._models: dict[str, dict[int, LoadedModel]] = {}
        self._errors: dict[Path, LoadError] = {}
        self._lock = threading.Lock()

    def scan(self) -> None:
        """Load every version folder not loaded yet; record the ones that fail."""
        if not self.root.is_dir():
            log.warning("model repository %s does not exist", self.root)
            return
        for folder in sorted(self._version_folders()):
            name, version = folder.parent.name, int(folder.name)
            if version in self._models.get(name, {}) or folder in self._errors:
                continue
            try:
                model = self._load(folder, name, version)
            except Exception as exc:  # any broken folder is reported, never fatal
                log.error("cannot load %s: %s", folder, exc)
                self._errors[folder] = LoadError(str(folder), f"{type(exc).__name__}: {exc}")
                continue
            with self._lock:
                self._models.setdefault(name, {})[version] = model
            log.info("loaded %s/%d on %s", name, version, model.backend.providers)

    def _version_folders(self) -> list[Path]:
        return [
            version_dir
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
        backend = self._factory(folder, card)
        fill = np.asarray(card.panel.fill_values, dtype=np.float32)
        return LoadedModel(card, folder, backend, panel_lookup(card.panel), fill)

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
        return [
            self._models[name][version]
            for name in sorted(self._models)
            for version in sorted(self._models[name])
        ]

    @property
    def errors(self) -> list[LoadError]:
        return list(self._errors.values())

    def close(self) -> None:
        """Release every session."""
        with self._lock:
            for versions in self._models.values():
                for model in versions.values():
                    model.backend.close()
            self._models.clear()
