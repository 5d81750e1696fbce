"""Bad data, named: what the shared core raises, for the service to answer as a 4xx.

The service renders each class as a problem+json type of its own (`app.errors.from_contract`);
training prints the message. Each subclasses ValueError, so a caller that only needs "the input
is wrong" can catch that. `extra` holds the JSON-safe details: the samples, genes or scales at
fault, never expression values.
"""

from __future__ import annotations

from typing import Any


class DataError(ValueError):
    """The expression data cannot be used as given; `extra` names what is wrong."""

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class GeneOverlapError(DataError):
    """Too few of a model's panel genes are in the input."""


class InputScaleError(DataError):
    """The values are not on the scale a model or pipeline takes."""
