"""Which version of a model a request gets, and who may see the model at all.

A name a tenant owns is visible to that tenant's keys (and admins) only; a name nobody owns is
the operator's (demo models, models trained offline) and visible to everyone. A request that pins
nothing gets the version the `production` alias names; without one, a tenant's model serves its
first version (a new version never takes traffic until it is promoted) and an operator's model
its latest. `?version=N` and `name@alias` (`@latest` too) pin one.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from app.db.repository.models import Route
from app.errors import InvalidRequest, ModelNotFound, ServiceUnavailable

PRODUCTION = "production"
LATEST = "latest"  # `name@latest`: a built-in alias, never stored
NO_ROUTE = Route()

__all__ = ["EVERYONE", "LATEST", "NO_ROUTE", "PRODUCTION", "Route", "Viewer"]


class Viewer(Protocol):
    """Who looks: decides whether a model owned by `owner` (None: the operator's) is visible."""

    def sees(self, owner: str | None) -> bool: ...


class _Everyone:
    def sees(self, owner: str | None) -> bool:
        return True


# the service itself (readiness, metrics, the model scan), never a caller
EVERYONE: Viewer = _Everyone()


def choose(
    name: str, alias: str | None, version: int | None, loaded: Collection[int], route: Route
) -> int:
    """The version a request gets among the `loaded` ones (not empty)."""
    if alias is not None:
        if version is not None:
            raise InvalidRequest(f"pin {name} by ?version= or by @{alias}, not both")
        if alias == LATEST:
            return max(loaded)
        if alias not in route.aliases:
            raise ModelNotFound(
                f"model {name!r} has no alias {alias!r}; it has {sorted(route.aliases)}"
            )
        return _loaded(name, alias, route.aliases[alias], loaded)
    if version is not None:
        if version not in loaded:
            raise ModelNotFound(f"model {name!r} has no version {version}; it has {sorted(loaded)}")
        return version
    if PRODUCTION in route.aliases:
        return _loaded(name, PRODUCTION, route.aliases[PRODUCTION], loaded)
    return min(loaded) if route.owner is not None else max(loaded)


def describe_default(loaded: Collection[int], route: Route) -> tuple[int | None, str]:
    """The version an unpinned request gets (None: none loaded) and the rule, in words."""
    if PRODUCTION in route.aliases:
        return route.aliases[PRODUCTION], "production alias"
    if not loaded:
        return None, "no version loaded"
    if route.owner is not None:
        return min(loaded), "first version (no production alias yet)"
    return max(loaded), "latest version"


def pinned(route: Route, on_disk: Collection[int]) -> set[int]:
    """Versions to keep loaded whatever their age: aliased ones, and a tenant's first version
    while it has no production alias."""
    keep = set(route.aliases.values())
    if route.owner is not None and PRODUCTION not in route.aliases and on_disk:
        keep.add(min(on_disk))
    return keep & set(on_disk)


def _loaded(name: str, alias: str, version: int, loaded: Collection[int]) -> int:
    if version not in loaded:
        # never another version in its place: the alias says which one is wanted
        raise ServiceUnavailable(
            f"{name}@{alias} is version {version}, which is not loaded (see /readyz); "
            f"loaded: {sorted(loaded)}"
        )
    return version
