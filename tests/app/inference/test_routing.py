"""The registry's routing: who sees a model, which version an unpinned request gets, which
versions stay loaded, and what happens while the routes cannot be read (nothing changes)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from app.caller import ANONYMOUS, Caller
from app.db.repository.models import Route
from app.errors import InvalidRequest, ModelNotFound, ServiceUnavailable
from app.inference.onnx import onnx_backend_factory
from app.inference.registry import ModelRegistry
from app.inference.routing import EVERYONE
from tests.factories import GENES, LABELS, make_settings, write_model

LAB_A = Caller("lab-a", frozenset({"predict"}))
LAB_B = Caller("lab-b", frozenset({"predict"}))
ADMIN = Caller("ops", frozenset({"admin"}))


class Routes:
    """A route source whose answer the test sets (or breaks)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.broken = False

    def __call__(self) -> Mapping[str, Route]:
        if self.broken:
            raise ConnectionError("the database is away")
        return self.routes


def _registry(root: Path, routes: Routes, keep: int = 2) -> ModelRegistry:
    backend = onnx_backend_factory(make_settings("sqlite://", root))
    return ModelRegistry(root, backend, keep_versions=keep, routes=routes)


def _write(root: Path, name: str, *versions: int) -> None:
    for v in versions:
        write_model(root=root, name=name, version=v, genes=GENES, labels=LABELS, seed=v)


def test_owned_models_are_seen_by_their_tenant_and_admins_only(tmp_path: Path) -> None:
    routes = Routes()
    routes.routes = {"lab": Route(owner="lab-a")}
    _write(tmp_path, "lab", 1)
    _write(tmp_path, "public", 1)
    registry = _registry(tmp_path, routes)
    registry.scan()
    for viewer, seen in ((LAB_A, {"lab", "public"}), (ADMIN, {"lab", "public"}),
                         (LAB_B, {"public"}), (ANONYMOUS, {"public"})):  # fmt: skip
        assert {m.card.name for m in registry.models(viewer=viewer)} == seen
        if "lab" not in seen:
            with pytest.raises(ModelNotFound, match="no model named 'lab'"):
                registry.get("lab", viewer=viewer)
        else:
            assert registry.get("lab", viewer=viewer).card.version == 1


def test_the_default_version_follows_the_production_alias_else_the_rule(tmp_path: Path) -> None:
    routes = Routes()
    _write(tmp_path, "public", 1, 2)
    _write(tmp_path, "lab", 1, 2)
    routes.routes = {"lab": Route(owner="lab-a")}
    registry = _registry(tmp_path, routes)
    registry.scan()
    assert registry.get("public", viewer=EVERYONE).card.version == 2  # the operator's: latest
    assert registry.default_version("public") == (2, "latest version")
    assert registry.get("lab", viewer=EVERYONE).card.version == 1  # a tenant's: its first
    assert registry.default_version("lab") == (1, "first version (no production alias yet)")
    routes.routes = {
        "lab": Route(owner="lab-a", aliases={"production": 2, "canary": 1}),
        "public": Route(aliases={"production": 1}),
    }
    registry.scan()
    assert registry.get("lab", viewer=EVERYONE).card.version == 2
    assert registry.get("public", viewer=EVERYONE).card.version == 1
    assert registry.get("lab@canary", viewer=EVERYONE).card.version == 1
    assert registry.get("public@latest", viewer=EVERYONE).card.version == 2
    assert registry.get("public", 2, viewer=EVERYONE).card.version == 2
    with pytest.raises(InvalidRequest, match="not both"):
        registry.get("lab@canary", 2, viewer=EVERYONE)
    with pytest.raises(ModelNotFound, match="has no alias 'stable'"):
        registry.get("lab@stable", viewer=EVERYONE)


def test_routed_versions_stay_loaded_and_a_missing_one_is_never_replaced(tmp_path: Path) -> None:
    routes = Routes()
    routes.routes = {"lab": Route(owner="lab-a")}
    _write(tmp_path, "lab", 1, 2, 3, 4)
    registry = _registry(tmp_path, routes, keep=2)
    registry.scan()
    # the newest two, and the first: what unpinned requests get until one is promoted
    assert [m.card.version for m in registry.models(viewer=EVERYONE)] == [1, 3, 4]
    routes.routes = {"lab": Route(owner="lab-a", aliases={"production": 2})}
    retired = registry.scan()
    assert [m.card.version for m in retired] == [1]
    assert [m.card.version for m in registry.models(viewer=EVERYONE)] == [2, 3, 4]
    routes.routes = {"lab": Route(owner="lab-a", aliases={"production": 7})}  # no such folder
    registry.scan()
    with pytest.raises(ServiceUnavailable, match="lab@production is version 7"):
        registry.get("lab", viewer=EVERYONE)  # not another version in its place
    assert registry.get("lab", 4, viewer=EVERYONE).card.version == 4


def test_while_the_routes_cannot_be_read_nothing_changes(tmp_path: Path) -> None:
    routes = Routes()
    routes.broken = True
    _write(tmp_path, "lab", 1)
    registry = _registry(tmp_path, routes)
    assert registry.scan() == []
    assert registry.models(viewer=EVERYONE) == []  # never served without knowing whose it is
    with pytest.raises(ServiceUnavailable, match="cannot be read"):
        registry.get("lab", viewer=EVERYONE)
    routes.broken = False
    routes.routes = {"lab": Route(owner="lab-a")}
    registry.scan()
    assert registry.routes_error is None
    assert registry.get("lab", viewer=LAB_A).card.version == 1
    routes.broken = True
    _write(tmp_path, "lab", 2)
    registry.scan()  # the routes are away again: the known snapshot keeps serving, unchanged
    assert registry.routes_error is not None
    assert registry.get("lab", viewer=LAB_A).card.version == 1
    with pytest.raises(ModelNotFound):
        registry.get("lab", viewer=LAB_B)
