"""Turning pydantic's validation errors into operator-facing problems, secret values hidden."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from components.config.base import SECRET, InvalidValueError, Problem, render_value

_TIME = "UTC ISO 8601, e.g. 2026-12-01T12:00:00Z"
# Pydantic's own wording is written for developers; operators get these instead.
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
    "datetime_parsing": ("is not a time", _TIME),
    "datetime_from_date_parsing": ("is not a time", _TIME),
    "datetime_type": ("is not a time", _TIME),
}
_NUMBER_BOUNDS = {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}
_LENGTH_BOUNDS = {"string_too_short", "string_too_long", "too_short", "too_long"}
_BOUND_NAMES = ("ge", "gt", "le", "lt", "min_length", "max_length")


def problem_from(root: type[BaseModel], detail: Mapping[str, Any]) -> Problem:
    """The problem a pydantic error `detail` describes; `detail["loc"]` is the full path from the model `root`.

    A value of a secret-typed field shows as `[secret]` here; values under a secret top-level key are hidden
    afterwards (`Problem.hiding`), whatever the kind of error.
    """
    loc: tuple[str | int, ...] = tuple(detail["loc"])
    path = path_of(loc)
    kind = detail["type"]
    ctx = detail.get("ctx") or {}
    value = detail.get("input")
    got = SECRET if _is_secret_field(root, loc) else render_value(value)

    if kind == "extra_forbidden":
        return Problem(path, "unknown key", allowed=_allowed_keys(root, loc))
    if kind == "missing":
        return Problem(path, "is required")
    if kind in _TYPE_MESSAGES:
        message, allowed = _TYPE_MESSAGES[kind]
        return Problem(path, message, got, allowed)
    if kind == "literal_error":
        return Problem(path, "is not a known value", got, ctx.get("expected", "").replace("'", ""))
    if kind in _NUMBER_BOUNDS:
        low, high = _bounds(root, loc, ctx)
        return Problem(path, "is out of range", got, _range(low, high, ""))
    if kind in _LENGTH_BOUNDS:
        low, high = _bounds(root, loc, ctx)
        if isinstance(value, str):
            message = "is empty" if value == "" else "has the wrong length"
            return Problem(path, message, got, _range(low, high, "character"))
        return Problem(path, "has the wrong number of items", got, _range(low, high, "item"))
    error = ctx.get("error")
    if isinstance(error, InvalidValueError):
        return Problem(path, error.message, got, error.allowed)
    message = detail["msg"][0].lower() + detail["msg"][1:]
    return Problem(path, message, got)


def path_of(loc: tuple[str | int, ...]) -> str:
    """`("argocd", "applications", 0, "name")` → `argocd.applications[0].name`."""
    return ".".join(str(part) if isinstance(part, str) else f"[{part}]" for part in loc).replace(".[", "[")


def _range(low: Any, high: Any, unit: str) -> str:
    """`1 to 100`, `at least 1 character`, `at most 64 characters`: `unit` is singular, pluralised to fit."""
    last = high if high is not None else low
    suffix = f" {unit}" if last == 1 else f" {unit}s" if unit else ""
    if low is not None and high is not None:
        return f"{low} to {high}{suffix}"
    if low is not None:
        return f"at least {low}{suffix}"
    return f"at most {high}{suffix}"


def _bounds(root: type[BaseModel], loc: tuple[str | int, ...], ctx: Mapping[str, Any]) -> tuple[Any, Any]:
    """Both bounds of the field at `loc` (pydantic's error names only the one that failed)."""
    low, high = _bounds_in(ctx)
    field = _field_at(root, loc)
    if field is not None:
        for constraint in field.metadata:
            field_low, field_high = _bounds_in({name: getattr(constraint, name, None) for name in _BOUND_NAMES})
            low = field_low if field_low is not None else low
            high = field_high if field_high is not None else high
    return low, high


def _bounds_in(constraints: Mapping[str, Any]) -> tuple[Any, Any]:
    low = _first(constraints, "ge", "min_length")
    if low is None and constraints.get("gt") is not None:
        low = f"more than {constraints['gt']}"
    high = _first(constraints, "le", "max_length")
    if high is None and constraints.get("lt") is not None:
        high = f"less than {constraints['lt']}"
    return low, high


def _first(constraints: Mapping[str, Any], *names: str) -> Any:
    return next((constraints[name] for name in names if constraints.get(name) is not None), None)


def _model_at(root: type[BaseModel], path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class that holds the field at `path` (aliases), or None inside free-form data."""
    model: type[BaseModel] = root
    for part in path[:-1]:
        if isinstance(part, int):
            continue
        field = field_named(model, part)
        if field is None:
            return None
        nested = model_in(field.annotation)
        if nested is None:
            return None
        model = nested
    return model


def field_named(model: type[BaseModel], key: str) -> FieldInfo | None:
    """The field of `model` a config key names (its alias, or its Python name)."""
    return next((f for name, f in model.model_fields.items() if key in (f.alias, name)), None)


def _field_at(root: type[BaseModel], path: tuple[str | int, ...]) -> FieldInfo | None:
    model = _model_at(root, path)
    if model is None or not path or isinstance(path[-1], int):
        return None
    return field_named(model, path[-1])


def model_in(annotation: Any) -> type[BaseModel] | None:
    """The model class inside a type annotation (`X | None`, `list[X]`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = model_in(arg)
        if found is not None:
            return found
    return None


def _is_secret_field(root: type[BaseModel], path: tuple[str | int, ...]) -> bool:
    field = _field_at(root, path)
    return field is not None and contains(field.annotation, SecretStr)


def contains(annotation: Any, target: type) -> bool:
    """Whether a type annotation is or contains `target` (inside Optional, Annotated, list...)."""
    return annotation is target or any(contains(arg, target) for arg in get_args(annotation))


def _allowed_keys(root: type[BaseModel], path: tuple[str | int, ...]) -> str:
    model = _model_at(root, path)
    if model is None:
        return ""
    return ", ".join(sorted(f.alias or name for name, f in model.model_fields.items()))
