"""One typed Settings object, read from GENEXFER_* environment variables (or a .env file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as ParseError

from app.config_errors import SettingsError, describe

KNOWN_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)


class BatchPolicy(BaseModel):
    """Dynamic batching of one model; unset fields take the service-wide settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool | None = None
    max_batch_size: int | None = Field(default=None, ge=1)
    max_queue_delay_ms: float | None = Field(default=None, ge=0.0)


class Settings(BaseSettings):
    """Service configuration; every field is GENEXFER_<FIELD NAME> in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="GENEXFER_", env_file=".env", extra="ignore", frozen=True
    )

    environment: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    database_url: str = "sqlite:///./data/genexfer.db"
    auto_migrate: bool = Field(
        default=True, description="Apply Alembic migrations at start-up (embedded default)."
    )
    models_dir: Path = Path("models")

    providers: list[str] = Field(
        default=["CUDAExecutionProvider", "CPUExecutionProvider"],
        description="ONNX Runtime execution providers, in order of preference.",
        json_schema_extra={"accepts": "a JSON list of " + ", ".join(KNOWN_PROVIDERS)},
    )
    allow_cpu_fallback: bool = Field(
        default=True,
        description="Serve on CPU when a configured GPU provider is unavailable; else not ready.",
    )
    intra_op_threads: int = Field(default=0, ge=0, description="0: ONNX Runtime chooses.")
    inter_op_threads: int = Field(default=0, ge=0, description="0: ONNX Runtime chooses.")
    thread_spinning: bool = Field(
        default=False, description="Let idle ONNX Runtime threads spin (CPU held, less latency)."
    )
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    gpu_mem_limit_mb: int = Field(default=0, ge=0, description="CUDA arena limit; 0: none.")
    warmup_batch_sizes: list[int] = Field(
        default=[1, 64], description="Batch sizes run once at load (first-call latency, arenas)."
    )

    batching: bool = Field(default=True, description="Merge concurrent requests per version.")
    max_batch_size: int = Field(default=256, ge=1, description="Samples per ONNX Runtime call.")
    max_queue_delay_ms: float = Field(
        default=2.0, ge=0.0, description="How long a request waits for others to join its batch."
    )
    model_batching: dict[str, BatchPolicy] = Field(
        default_factory=dict, description="Per-model overrides: name → {max_batch_size, ...}."
    )
    reload_interval_s: float = Field(
        default=5.0, ge=0.0, description="How often models/ is re-scanned; 0: never."
    )
    keep_versions: int = Field(default=3, ge=1, description="Newest versions loaded per model.")
    drain_timeout_s: float = Field(default=30.0, gt=0.0)
    request_timeout_s: float = Field(default=60.0, gt=0.0, description="Longer requests: 504.")

    body_chunk_kb: int = Field(
        default=1024,
        ge=0,
        description="genexfer serve buffers up to this much of a request body per connection "
        "before pausing its socket (uvicorn's own is 64 KiB: a large body then reaches the app in "
        "hundreds of small messages); 0: uvicorn's default.",
    )
    gc_freeze: bool = Field(
        default=True,
        description="Freeze the objects built at start-up out of the garbage collector's full "
        "collections (shorter pauses: a better p99).",
    )
    fastapi_telemetry: bool = Field(
        default=False,
        description="FastAPI's built-in OpenTelemetry spans and metrics (for a configured "
        "OpenTelemetry provider); off, /metrics and the JSON logs are the service's telemetry "
        "and requests skip its per-request checks.",
    )

    # overload: rate limits, quotas, admission control
    rate_limit_per_s: float = Field(
        default=0.0,
        ge=0.0,
        description="Requests per second each API key may make on average (a token bucket per "
        "key; with auth off, one bucket for all); over it: 429 with Retry-After; 0: no limit.",
    )
    rate_limit_burst: int = Field(
        default=20, ge=1, description="Requests a key may make at once before its rate applies."
    )
    rate_limit_redis_url: str | None = Field(
        default=None,
        description="Keep the buckets in this Redis, so every replica shares them (e.g. the "
        "broker's redis://redis:6379/0); unset: in each process.",
    )
    max_active_jobs_per_tenant: int = Field(
        default=8,
        ge=0,
        description="Queued and running jobs a tenant may have at once; one more is a 429 "
        "with Retry-After; 0: no quota.",
    )
    max_inflight_inference: int = Field(
        default=256,
        ge=0,
        description="Inference requests in flight in one process; beyond it a request is shed "
        "at once with 503 and Retry-After; 0: no bound.",
    )
    retry_after_s: int = Field(
        default=1, ge=1, description="The Retry-After of a shed inference request (seconds)."
    )

    min_gene_overlap: float = Field(default=0.5, gt=0.0, le=1.0)
    max_samples_per_request: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    malloc_trim_threshold_mb: int = Field(
        default=1024,
        ge=0,
        description="genexfer serve keeps up to this much freed heap for reuse (glibc only; "
        "large bodies otherwise page-fault afresh on every request); 0: the C library's defaults.",
    )

    # fine-tuning service (datasets, jobs, workers, keys)
    data_dir: Path = Path("data")
    auth_enabled: bool = Field(
        default=False, description="Require an API key (docker compose turns this on)."
    )
    executor: Literal["local", "celery"] = Field(
        default="local", description="local: jobs run in the API process; celery: on workers."
    )
    broker_url: str = "redis://127.0.0.1:6379/0"
    job_queue: str = Field(default="genexfer-jobs", description="Celery queue of the jobs.")
    local_job_threads: int = Field(default=1, ge=1)
    job_lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A running job whose lease is not renewed this long is lost.",
    )
    job_max_attempts: int = Field(default=2, ge=1, description="Runs of a job before it fails.")
    job_redispatch_seconds: float = Field(
        default=600.0,
        gt=0,
        description="A job still queued this long after it was handed to the executor is handed "
        "over again (its message may have been lost with the broker's data); a duplicate message "
        "is skipped by the runner.",
    )
    train_device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where a job runner trains: auto (CUDA when this process sees a GPU), cpu, "
        "or cuda (a job fails if none is usable).",
    )
    max_dataset_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    idempotency_ttl_hours: float = Field(
        default=24.0,
        gt=0,
        description="How long an Idempotency-Key's first answer is replayed; older records "
        "(which may hold results) are deleted and the key may be used afresh.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        unknown = [p for p in self.providers if p not in KNOWN_PROVIDERS]
        if unknown:
            raise ValueError(
                f"GENEXFER_PROVIDERS names unknown execution providers {unknown}; "
                f"it accepts a JSON list of {', '.join(KNOWN_PROVIDERS)}"
            )
        if not self.providers:
            raise ValueError("GENEXFER_PROVIDERS must name at least one execution provider")
        if self.environment == "production" and self.database_url.startswith("sqlite"):
            raise ValueError(
                "GENEXFER_ENVIRONMENT=production needs a server database: GENEXFER_DATABASE_URL "
                "accepts a postgresql+psycopg:// URL there, not SQLite"
            )
        return self

    def batch_policy(self, model: str) -> tuple[bool, int, float]:
        """(enabled, max batch size, max queue delay in seconds) for one model."""
        own = self.model_batching.get(model, BatchPolicy())
        enabled = self.batching if own.enabled is None else own.enabled
        size = own.max_batch_size or self.max_batch_size
        delay = (
            self.max_queue_delay_ms if own.max_queue_delay_ms is None else own.max_queue_delay_ms
        )
        return enabled, size, delay / 1000.0

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once; a bad one is a `SettingsError` of one line."""
    try:
        return Settings()
    except (ValidationError, ParseError) as exc:
        raise SettingsError(describe(exc, Settings)) from None
