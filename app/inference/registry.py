"""The model registry: scans models/<name>/<int version>/, loads versions, hot-reloads the folder.

Which versions are served: per model, the newest `keep_versions` versions that load, plus every
version an alias points at (and, for a name a tenant owns with no production alias yet, its first
version). A new version folder is loaded on the next scan (every `reload_interval_s`) without a
restart; a version that drops out of that set, or whose folder disappears, is taken out of routing
at once, then its in-flight requests are drained and its session is closed. A folder that fails
to parse, verify or load is recorded in `errors` (shown by /readyz) and skipped; it is retried
only when its files change (folders are immutable, but a copy may still be arriving).
Dot-folders (a training export still being written) are ignored. A version whose card has an
explanation graph gets its own session for it (`app.inference.explain`), loaded with the model.

Routes (who owns each name, its aliases) are read from the database at each scan; the rules
that use them are in `app.inference.routing`. If the routes cannot be read, the scan changes
nothing: it never serves a tenant's model without knowing whose it is.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import ModelNotFound, ServiceUnavailable
from app.inference import routing
from app.inference.backend import BackendFactory, Explainer, ExplainerFactory, InferenceBackend
from app.inference.batcher import Batcher
from app.inference.routing import NO_ROUTE, Route, Viewer
from contract.align import PanelIndex
from contract.card import ModelCard

log = logging.getLogger(__name__)
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")  # as ModelCard.name allows

BatcherFactory = Callable[[ModelCard, InferenceBackend], Batcher]
RouteSource = Callable[[], Mapping[str, Route]]


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
    explainer: Explainer | None = None  # the card's explanation graph, if it has one


@dataclass(frozen=True)
class Snapshot:
    """Loaded versions and the routes they were chosen with: replaced whole, never mutated."""

    models: dict[str, dict[int, LoadedModel]] = field(default_factory=dict)
    routes: Mapping[str, Route] = field(default_factory=dict)


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
        routes: RouteSource | None = None,
        explainers: ExplainerFactory | None = None,
    ) -> None:
        self.root = root
        self._factory = factory
        self._explainers = explainers
        self._make_batcher = make_batcher
        self.keep_versions = keep_versions
        self._routes = routes or dict
        # replaced whole, never mutated: readers on the event loop see one consistent snapshot
        self._snapshot = Snapshot()
        self._errors: dict[Path, LoadError] = {}
        self.routes_error: str | None = None  # why the last scan could not read the routes
        self._lock = threading.Lock()  # one scan at a time

    def scan(self) -> list[LoadedModel]:
        """Load new versions, record broken ones; return the versions taken out of routing."""
        with self._lock:
            folders = self._version_folders()
            # read after listing the folders: a name is claimed before its first version exists,
            # so every version seen here has its owner in these routes
            try:
                routes = dict(self._routes())
            except Exception as exc:  # the database is away: keep serving what we know
                log.error("cannot read model routes; the scan changes nothing: %s", exc)
                self.routes_error = f"{type(exc).__name__}: {exc}"
                return []
            self.routes_error = None
            by_name: dict[str, list[int]] = {}
            for name, version in folders:
                by_name.setdefault(name, []).append(version)
            models: dict[str, dict[int, LoadedModel]] = {}
            for name, versions in by_name.items():
                kept = self._keep(name, sorted(versions, reverse=True), routes.get(name, NO_ROUTE))
                if kept:
                    models[name] = kept
            present = {self.root / n / str(v) for n, v in folders}
            self._errors = {p: e for p, e in self._errors.items() if p in present}
            retired = [
                m
                for name, versions in self._snapshot.models.items()
                for version, m in versions.items()
                if version not in models.get(name, {})
            ]
            self._snapshot = Snapshot(models, routes)
        for m in retired:
            log.info("unloading %s/%d (superseded or removed)", m.card.name, m.card.version)
        return retired

    def _keep(self, name: str, versions: list[int], route: Route) -> dict[int, LoadedModel]:
        """The newest `keep_versions` versions that load (`versions` is newest first), and every
        version the routing needs."""
        kept: dict[int, LoadedModel] = {}
        for version in versions:
            if len(kept) == self.keep_versions:
                break
            if (model := self._load_once(name, version)) is not None:
                kept[version] = model
        for version in sorted(routing.pinned(route, versions) - set(kept)):
            if (model := self._load_once(name, version)) is not None:
                kept[version] = model
        return kept

    def _load_once(self, name: str, version: int) -> LoadedModel | None:
        """The loaded version (loading it if new), or None if its folder does not load."""
        current = self._snapshot.models.get(name, {}).get(version)
        if current is not None:
            return current
        folder = self.root / name / str(version)
        stamp = _stamp(folder)
        known = self._errors.get(folder)
        if known is not None and known.stamp == stamp:
            return None
        try:
            model = self._load(folder, name, version)
        except Exception as exc:  # any broken folder is reported, never fatal
            log.error("cannot load %s: %s", folder, exc)
            self._errors[folder] = LoadError(str(folder), f"{type(exc).__name__}: {exc}", stamp)
            return None
        self._errors.pop(folder, None)
        log.info("loaded %s/%d: runs on %s", name, version, ", ".join(model.backend.providers))
        return model

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
        try:
            explainer = self._explainers(folder, card) if self._explainers else None
        except Exception:
            backend.close()
            raise
        batcher = self._make_batcher(card, backend)
        return LoadedModel(card, folder, backend, PanelIndex.of(card.panel), batcher, explainer)

    def get(self, name: str, version: int | None = None, *, viewer: Viewer) -> LoadedModel:
        """The version `version` or `name@alias` pins, else the model's default version
        (`app.inference.routing`); ModelNotFound for a model `viewer` may not see, as for one
        that does not exist."""
        name, at, alias = name.partition("@")
        snapshot = self._snapshot
        versions = snapshot.models.get(name)
        route = snapshot.routes.get(name, NO_ROUTE)
        if not versions and self.routes_error is not None:
            # not a 404: the model may well exist, but whose it is cannot be read now
            raise ServiceUnavailable(
                "the model routes cannot be read from the database; try again shortly"
            )
        if not versions or not viewer.sees(route.owner):
            raise ModelNotFound(f"no model named {name!r}; GET /v1/models lists them")
        return versions[routing.choose(name, alias if at else None, version, versions, route)]

    def default_version(self, name: str) -> tuple[int | None, str]:
        """The version an unpinned request to `name` gets and the rule that chose it."""
        snapshot = self._snapshot
        loaded = snapshot.models.get(name, {})
        return routing.describe_default(loaded, snapshot.routes.get(name, NO_ROUTE))

    def models(self, *, viewer: Viewer) -> list[LoadedModel]:
        """Every loaded version `viewer` may see, by name then version."""
        snapshot = self._snapshot
        return [
            snapshot.models[name][version]
            for name in sorted(snapshot.models)
            if viewer.sees(snapshot.routes.get(name, NO_ROUTE).owner)
            for version in sorted(snapshot.models[name])
        ]

    def route(self, name: str) -> Route:
        """The name's owner and aliases as the last scan read them."""
        return self._snapshot.routes.get(name, NO_ROUTE)

    def on_disk(self, name: str) -> list[int]:
        """The version folders of `name` (loaded or not), ascending; none for a string that is
        not a model name (so '..' never reaches outside the model repository)."""
        folder = self.root / name
        if not MODEL_NAME.fullmatch(name) or not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())

    def load_error(self, name: str, version: int) -> str | None:
        """Why models/<name>/<version>/ did not load at the last scan (None: it did, or is new)."""
        error = self._errors.get(self.root / name / str(version))
        return error.error if error is not None else None

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
        if model.explainer is not None:
            model.explainer.close()

    async def rescan(self, drain_timeout_s: float) -> None:
        """Scan now (in a thread) and unload what the scan retires (e.g. after an alias moved
        here); errors are logged."""
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
            for versions in self._snapshot.models.values():
                for model in versions.values():
                    model.batcher.close()
                    model.backend.close()
                    if model.explainer is not None:
                        model.explainer.close()
            self._snapshot = Snapshot()
