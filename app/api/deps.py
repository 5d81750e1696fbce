"""Dependencies as Annotated aliases, so route signatures read as prose."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.writer import PredictionWriter
from app.inference.registry import ModelRegistry
from app.jobs.executor import Executor
from app.metrics import Metrics


# async: FastAPI runs a plain `def` dependency in its thread pool, a hop per request per
# dependency that costs more than these lookups themselves
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


async def get_executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


async def get_writer(request: Request) -> PredictionWriter:
    writer: PredictionWriter = request.app.state.writer
    return writer


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


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


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
# scope="function": commit before the response is sent, so a failed commit is never a 200
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
RequestIdDep = Annotated[str, Depends(get_request_id)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
WriterDep = Annotated[PredictionWriter, Depends(get_writer)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
EngineDep = Annotated[Engine, Depends(get_engine)]
