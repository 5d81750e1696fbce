"""A bad setting in one line: the environment variable, the value given and what it accepts.

pydantic's own report is a multi-line traceback naming the field (`port`), not the variable a
person set (`GENEXFER_PORT`); `describe` turns a `ValidationError` or a pydantic-settings
parse error into one sentence, and `app.cli.main` prints it and exits 2.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import SettingsError as ParseError

PREFIX = "GENEXFER_"
_PARSE_FIELD = re.compile(r'field "(\w+)"')


class SettingsError(ValueError):
    """The settings do not validate; the message is one line naming each variable at fault."""


def variable(field: str) -> str:
    """The environment variable that sets a Settings field."""
    return PREFIX + field.upper()


def _bounds(info: FieldInfo) -> str:
    words = []
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            words.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            words.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            words.append(f"<= {item.le}")
        elif isinstance(item, annotated_types.Lt):
            words.append(f"< {item.lt}")
    return " and ".join(words)


def _kind(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        kinds = [_kind(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(kinds)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return f"a JSON list of {_kind(item).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict:
        _, value = typing.get_args(annotation)
        return f"a JSON object of name → {_kind(value)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        fields = ", ".join(annotation.model_fields)
        return f"an object with only {fields}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
    return names.get(annotation, "a path" if annotation is Path else str(annotation))


def accepts(info: FieldInfo) -> str:
    """What a field accepts, in words: its own `accepts` note, or its type then its bounds."""
    extra = info.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("accepts"), str):
        return str(extra["accepts"])
    bounds = _bounds(info)
    return _kind(info.annotation) + (f" {bounds}" if bounds else "")


def _one(error: Any, fields: dict[str, FieldInfo]) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    if not loc:  # a rule across settings: its message already names the variables
        return str(error.get("msg", "")).removeprefix("Value error, ")
    field = loc[0]
    info = fields.get(field)
    where = variable(field) + "".join(f"[{part}]" for part in loc[1:])
    given = error.get("input")
    shown = "" if len(loc) > 1 or isinstance(given, dict) else f"={given!r}"
    why = "not one of the choices" if error.get("type") == "literal_error" else error.get("msg")
    why = str(why).split(", unable to", 1)[0]
    what = f"; it accepts {accepts(info)}" if info is not None else ""
    return f"{where}{shown}: {why}{what}"


def describe(exc: ValidationError | ParseError, model: type[BaseModel]) -> str:
    """One line for every setting at fault."""
    fields = model.model_fields
    if isinstance(exc, ValidationError):
        parts = [_one(error, fields) for error in exc.errors()]
    else:
        found = _PARSE_FIELD.search(str(exc))
        field = found.group(1) if found else ""
        info = fields.get(field)
        what = f"; it accepts {accepts(info)}" if info is not None else ""
        parts = [f"{variable(field)} is not valid JSON{what}"]
    return "invalid setting: " + "; ".join(parts)
