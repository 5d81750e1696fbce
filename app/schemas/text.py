"""Text as the service accepts it: no NUL character (U+0000), which no database stores as text.

A NUL in a stored field would fail the write (PostgreSQL refuses it) after the request was
checked, so it is refused at the edge, with the field named: bodies through `Text`, the URL by
`app.middleware.nul_in_url`, decoded payloads' ids by `app.codecs.payloads.check_text`, and
uploaded tables by `app.services.datasets`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def no_nul(value: str) -> str:
    """The value, or a ValueError that pydantic reports at the field's location."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (U+0000)")
    return value


def no_nul_opt(value: str | None) -> str | None:
    """`no_nul` for an optional field (a form field left out is None)."""
    return value if value is None else no_nul(value)


Text = Annotated[str, AfterValidator(no_nul)]
