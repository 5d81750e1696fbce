"""Dependencies as Annotated aliases, so route signatures read as prose."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.caller import Caller
from app.config import Settings
from app.db.writer import PredictionWriter
from app.inference.registry import ModelRegistry
from app.jobs.executor import Executor
from app.jobs.housekeeping import Housekeeper
from app.metrics import Metrics
from app.security import authenticate

# the largest `offset` a list route takes: beyond it a database's integer would overflow (a 500)
MAX_OFFSET = 2**31
# the largest model version a query takes (the database's integer column)
MAX_VERSION = 2**31 - 1


def _state(name: str) -> Any:
    """A dependency on `request.app.state.<name>` (what lifespan built)."""

    # async: FastAPI runs a plain `def` dependency in its thread pool, a hop per request per
    # dependency that costs more than the lookup itself
    async def from_state(request: Request) -> Any:
        return getattr(request.app.state, name)

    return Depends(from_state)


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; it owns the transaction: commit on success, roll back on error."""
    with request.app.state.sessionmaker() as session:
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise


async def get_request_id(request: Request) -> str:
    request_id: str = request.state.request_id
    return request_id


SettingsDep = Annotated[Settings, _state("settings")]
RegistryDep = Annotated[ModelRegistry, _state("registry")]
# scope="function": commit before the response is sent, so a failed commit is never a 200
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
RequestIdDep = Annotated[str, Depends(get_request_id)]
ExecutorDep = Annotated[Executor, _state("executor")]
HousekeeperDep = Annotated[Housekeeper, _state("housekeeper")]
# who is calling: the key's tenant and scopes (router dependencies check the scope first)
CallerDep = Annotated[Caller, Depends(authenticate)]
WriterDep = Annotated[PredictionWriter, _state("writer")]
MetricsDep = Annotated[Metrics, _state("metrics")]
EngineDep = Annotated[Engine, _state("engine")]
