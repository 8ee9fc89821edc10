"""Turning pydantic's validation errors into operator-facing problems, secrets hidden."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, SecretStr

from components.config.base import InvalidValueError, Problem, render_value

# Pydantic's own wording for type errors is written for developers; operators get these instead.
_TYPE_MESSAGES: dict[str, tuple[str, str]] = {
    "bool_parsing": ("is not a boolean", "true or false"),
    "bool_type": ("is not a boolean", "true or false"),
    "int_parsing": ("is not a whole number", "e.g. 3"),
    "int_type": ("is not a whole number", "e.g. 3"),
    "int_from_float": ("is not a whole number", "e.g. 3"),
    "string_type": ("is not a string", "a quoted value"),
    "list_type": ("is not a list", "a YAML list"),
    "dict_type": ("is not a map", "a YAML mapping"),
    "model_type": ("is not an object", "a YAML mapping of its keys"),
    "model_attributes_type": ("is not an object", "a YAML mapping of its keys"),
    "datetime_parsing": ("is not a time", "UTC ISO 8601, e.g. 2026-12-01T12:00:00Z"),
    "datetime_from_date_parsing": ("is not a time", "UTC ISO 8601, e.g. 2026-12-01T12:00:00Z"),
    "datetime_type": ("is not a time", "UTC ISO 8601, e.g. 2026-12-01T12:00:00Z"),
}


def problem_from(root: type[BaseModel], detail: Mapping[str, Any], secret_top_level: set[str]) -> Problem:
    """The problem a pydantic error `detail` describes, for the model `root` the raw config was validated against."""
    loc: tuple[str | int, ...] = tuple(detail["loc"])
    path = ".".join(str(part) if isinstance(part, str) else f"[{part}]" for part in loc).replace(".[", "[")
    kind = detail["type"]
    ctx = detail.get("ctx") or {}
    secret = _is_secret_field(root, loc) or (bool(loc) and loc[0] in secret_top_level and kind == "extra_forbidden")
    got = "[secret]" if secret else render_value(detail.get("input"))

    if kind == "extra_forbidden":
        return Problem(path, "unknown key", allowed=_allowed_keys(root, loc))
    if kind == "missing":
        return Problem(path, "is required")
    if kind in _TYPE_MESSAGES:
        message, allowed = _TYPE_MESSAGES[kind]
        return Problem(path, message, got, allowed)
    if kind == "literal_error":
        return Problem(path, "is not a known value", got, ctx.get("expected", "").replace("'", ""))
    error = ctx.get("error")
    if isinstance(error, InvalidValueError):
        return Problem(path, error.message, got, error.allowed)
    message = detail["msg"][0].lower() + detail["msg"][1:]
    return Problem(path, message, got)


def _model_at(root: type[BaseModel], path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class that holds the field at `path` (aliases), or None inside free-form data."""
    model: type[BaseModel] = root
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        field = next((f for name, f in model.model_fields.items() if (f.alias or name) == part), None)
        if field is None:
            return None
        nested = _model_in(field.annotation)
        if nested is None:
            return None
        model = nested
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _is_secret_field(root: type[BaseModel], path: tuple[str | int, ...]) -> bool:
    model = _model_at(root, path)
    if model is None or not path or isinstance(path[-1], int):
        return False
    field = next((f for name, f in model.model_fields.items() if (f.alias or name) == path[-1]), None)
    return field is not None and _contains(field.annotation, SecretStr)


def _contains(annotation: Any, target: type) -> bool:
    return annotation is target or any(_contains(arg, target) for arg in get_args(annotation))


def _allowed_keys(root: type[BaseModel], path: tuple[str | int, ...]) -> str:
    model = _model_at(root, path)
    if model is None:
        return ""
    return ", ".join(sorted(f.alias or name for name, f in model.model_fields.items()))
