"""The error body every /v1 answer of 4xx/5xx has (RFC 9457 problem+json), and /v2's."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    """application/problem+json: the RFC 9457 members, then the extensions this service adds
    (each only where it applies; others may follow)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        description="A URI naming the kind of problem: https://genexfer.dev/problems/<slug>, "
        "or about:blank for a plain HTTP status.",
        examples=["https://genexfer.dev/problems/invalid-expression-data"],
    )
    title: str = Field(description="The kind of problem, in words (the same for every instance).")
    status: int = Field(description="The HTTP status code.", ge=400, le=599)
    detail: str = Field(description="This occurrence, in words: what is wrong and what to do.")
    instance: str | None = Field(default=None, description="The request path.")
    samples: list[str] | None = Field(default=None, description="Sample ids at fault (≤ 50).")
    genes: list[str] | None = Field(default=None, description="Gene ids at fault (≤ 50).")
    parameters: list[str] | None = Field(
        default=None, description="Query or path parameters at fault (`path`: the path itself)."
    )
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Validation errors: {loc, msg, type} each."
    )
    retry_after_s: int | None = Field(
        default=None, description="429 and 503: seconds to wait, as the Retry-After header says."
    )
    detected_scale: str | None = Field(default=None, description="wrong-input-scale")
    expected_scale: str | None = Field(default=None, description="wrong-input-scale")


class V2Error(BaseModel):
    """The Open Inference Protocol's error body (/v2 routes)."""

    error: str
