"""Stack settings: the one place that parses and validates the `confidential-vault:*` configuration.

`load_settings` turns the raw Pulumi config of a stack into a `Settings` object or raises `ConfigError` listing
every problem as `confidential-vault:<dotted.path>: <what is wrong> (got <value>; allowed: <...>)`.
Components never read `pulumi.Config`; they receive the parts of `Settings` they need.

Layout: `base` holds the shared value types and the problem format, `errors` the rendering of pydantic's
errors, one module per section (`cluster`, `edge`, `monitoring`, `alerting`, `argocd`, `vault`) its models and its
cross-key rules, `settings` the root model and `SECTION_RULES`. A new section is a new module, one field in
`Settings` (or in its parent section) and its rules in `SECTION_RULES`.

How every problem is found in one run: each top-level key is validated on its own, secrets stored in plaintext are
looked for in the raw config, and each rule runs on a view of the settings that holds only the keys that passed,
down to single fields of a section (a section with a broken field keeps its other fields) — a rule that reads a
broken key is skipped, the others still report, also the rules that read only the good fields of a broken section.
A value that came from a secret is shown as `[secret]`, whatever the problem.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from components.config.argocd import PLATFORM_NAMESPACES, ArgoApplication, ArgoCdSettings
from components.config.base import (
    NAMESPACE,
    SECRET,
    InvalidValueError,
    Problem,
    is_under,
    quantity_mib,
    render_value,
    top_level_key,
)
from components.config.cluster import AZURE_REGIONS, SGX_EPC_MIB, ClusterSettings, SgxPool, SystemPool
from components.config.edge import AcmeSettings, DnsSettings, EdgeSettings
from components.config.errors import contains, field_named, model_in, problem_from
from components.config.monitoring import MonitoringSettings
from components.config.settings import SECTION_RULES, Settings, expiry_problems
from components.config.vault import VaultEnclave, VaultImage, VaultSettings, VaultSgx

__all__ = [
    "AZURE_REGIONS",
    "NAMESPACE",
    "PLATFORM_NAMESPACES",
    "SGX_EPC_MIB",
    "AcmeSettings",
    "ArgoApplication",
    "ArgoCdSettings",
    "ClusterSettings",
    "ConfigError",
    "DnsSettings",
    "EdgeSettings",
    "InvalidValueError",
    "MonitoringSettings",
    "Problem",
    "Settings",
    "SgxPool",
    "SystemPool",
    "VaultEnclave",
    "VaultImage",
    "VaultSettings",
    "VaultSgx",
    "load_settings",
    "load_stack_settings",
    "quantity_mib",
]

# Top-level keys by the names an operator may use (camelCase, or the Python name), and a validator for each.
_FIELD_NAMES = {key: name for name, field in Settings.model_fields.items() for key in (field.alias or name, name)}
_VALIDATORS: dict[str, TypeAdapter[Any]] = {
    name: TypeAdapter(field.rebuild_annotation()) for name, field in Settings.model_fields.items()
}
_KEY_ORDER = {field.alias or name: index for index, (name, field) in enumerate(Settings.model_fields.items())}


class ConfigError(Exception):
    """Stack configuration is invalid; `problems` lists every finding."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid stack configuration ({len(problems)} problem(s)):\n{lines}")


def load_settings(raw: Mapping[str, str], secret_keys: Iterable[str] = (), *, now: datetime | None = None) -> Settings:
    """Validate the raw Pulumi config of a stack.

    `raw` maps full config keys (`confidential-vault:cluster`) to their string values as the Pulumi
    engine passes them (objects and lists JSON-encoded); keys of other namespaces are ignored.
    `secret_keys` names the keys set with `--secret`. `now` is the moment of the deployment: with it, an ephemeral
    stack whose `expiresAt` has passed is refused (`load_stack_settings` passes the clock; a check ahead of time,
    such as `tools/ephemeral.py`'s, which sets `expiresAt` itself, leaves it out).
    """
    prefix = f"{NAMESPACE}:"
    secret = frozenset(key.removeprefix(prefix) for key in secret_keys if key.startswith(prefix))
    data = {key.removeprefix(prefix): _decode(value) for key, value in raw.items() if key.startswith(prefix)}

    problems, valid = _validated_keys(data)
    problems += _plaintext_secret_problems(Settings, data, secret)
    view = _view(valid, secret)
    for rule in SECTION_RULES:
        problems += _judged(rule, view)
    if now is not None:
        problems += _judged(lambda settings: expiry_problems(settings, now), view)
    if problems:
        raise ConfigError(_listed(problems, secret))

    settings = Settings.model_construct(_fields_set={_FIELD_NAMES[key] for key in data}, **valid)
    settings._secret_keys = secret
    return settings


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _validated_keys(data: Mapping[str, Any]) -> tuple[list[Problem], dict[str, Any]]:
    """Each top-level key validated on its own: the problems, and the value of every key that passed."""
    problems: list[Problem] = []
    given: dict[str, Any] = {}
    for key, value in data.items():
        if key in _FIELD_NAMES:
            given[_FIELD_NAMES[key]] = value
        else:
            problems.append(_unknown_key(key, value))
    valid: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        key = field.alias or name
        if name not in given:
            if field.is_required():
                problems.append(Problem(key, "is required"))
            else:
                valid[name] = field.get_default(call_default_factory=True)
            continue
        try:
            valid[name] = _VALIDATORS[name].validate_python(given[name])
        except ValidationError as error:
            details = error.errors()
            problems += [problem_from(Settings, {**detail, "loc": (key, *detail["loc"])}) for detail in details]
            section = _section_model(field.annotation)
            if section is not None and isinstance(given[name], dict):
                valid[name] = _partial(section, given[name], {tuple(detail["loc"]) for detail in details})
    return problems, valid


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a section field (`X` or `X | None`); None for lists, maps and plain values."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    members = [arg for arg in get_args(annotation) if arg is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(members) == 1:
        return _section_model(members[0])
    return None


def _partial(model: type[BaseModel], data: Mapping[str, Any], failed: set[tuple[str | int, ...]]) -> BaseModel:
    """`model` built from `data` with every field that failed validation left out (reading it raises AttributeError).

    `failed` holds the locations of the errors relative to `model`. A field with no error is validated on its own,
    a nested section with errors is built the same way, so a rule that reads only good fields still runs.
    """
    values: dict[str, Any] = {}
    given: set[str] = set()
    left_out: list[str] = []
    for name, field in model.model_fields.items():
        key = next((key for key in (field.alias, name) if key is not None and key in data), None)
        if key is None:
            continue  # model_construct fills in the default; a required field stays unset, so reading it fails
        given.add(name)
        under = {loc[1:] for loc in failed if loc and loc[0] in (field.alias, name)}
        nested = _section_model(field.annotation)
        try:
            if not under:
                values[name] = _field_validator(model, name).validate_python(data[key])
            elif nested is not None and isinstance(data[key], dict) and () not in under:
                values[name] = _partial(nested, data[key], under)
            else:
                left_out.append(name)
        except ValidationError:
            left_out.append(name)
    built = model.model_construct(_fields_set=given, **values)
    for name in left_out:
        vars(built).pop(name, None)
    return built


@functools.cache
def _field_validator(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    return TypeAdapter(model.model_fields[name].rebuild_annotation())


def _unknown_key(key: str, value: Any) -> Problem:
    # `pulumi config set ns:cluster.sgxPool.vmSize X` without --path stores one key with dots in its name.
    parent = top_level_key(key)
    if parent != key and parent in _FIELD_NAMES:
        full_key = f"{NAMESPACE}:{key}"
        return Problem(
            key,
            "is a top-level key with dots in its name, set without --path; nested keys need --path",
            render_value(value),
            f"`pulumi config rm {full_key}`, then `pulumi config set --path {full_key} <value>`",
        )
    return Problem(key, "unknown key", allowed=", ".join(sorted(_KEY_ORDER)))


def _plaintext_secret_problems(root: type[BaseModel], data: Mapping[str, Any], secret: frozenset[str]) -> list[Problem]:
    """Secret fields must come from `pulumi config set --secret`, never from plaintext stack files.

    Looked for in the raw config, so a plaintext secret is reported even when its section is broken otherwise.
    """
    return [
        Problem(
            path,
            f"is a secret but stored in plaintext; set it with `pulumi config set --secret --path {NAMESPACE}:{path}`",
            SECRET,
        )
        for path in _secret_paths(root, data, "")
        if not is_under(path, secret)
    ]


def _secret_paths(model: type[BaseModel], data: Mapping[str, Any], prefix: str) -> list[str]:
    paths: list[str] = []
    for key, value in data.items():
        field = field_named(model, key)
        if field is None or value is None:
            continue
        path = f"{prefix}.{key}" if prefix else key
        if contains(field.annotation, SecretStr):
            paths.append(path)
        nested = model_in(field.annotation)
        if nested is not None and isinstance(value, dict):
            paths += _secret_paths(nested, value, path)
        elif nested is not None and isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    paths += _secret_paths(nested, item, f"{path}[{index}]")
    return paths


def _view(valid: Mapping[str, Any], secret: frozenset[str]) -> Settings:
    """The settings with only the keys that passed validation; reading any other raises AttributeError."""
    view = Settings.model_construct(**valid)
    for name in Settings.model_fields:
        if name not in valid:
            vars(view).pop(name, None)  # model_construct filled in the default, if the field has one
    view._secret_keys = secret
    return view


def _judged(rule: Callable[[Settings], list[Problem]], view: Settings) -> list[Problem]:
    """The problems `rule` finds, or none when it reads a key that failed validation (nothing to judge)."""
    try:
        return rule(view)
    except AttributeError as error:
        if _reads_left_out_field(error):
            return []
        raise


def _reads_left_out_field(error: AttributeError) -> bool:
    """Whether `error` comes from reading a field the view left out, at any depth (`_view`, `_partial`).

    A model the program builds has every field set, so a missing one can only be a field that failed validation.
    A property reading a missing field surfaces under the property's name (Python retries `__getattr__`).
    """
    obj = error.obj
    if not isinstance(obj, BaseModel):
        return False
    missing = set(type(obj).model_fields) - set(vars(obj))
    name = str(error.name)
    return bool(missing) and (name in missing or isinstance(getattr(type(obj), name, None), property))


def _listed(problems: list[Problem], secret: frozenset[str]) -> list[Problem]:
    """Problems with secret values hidden, grouped by top-level key in the order of `Settings`."""
    hidden = [problem.hiding(secret) for problem in problems]
    return sorted(hidden, key=lambda problem: _KEY_ORDER.get(top_level_key(problem.path), len(_KEY_ORDER)))


def load_stack_settings(now: datetime | None = None) -> Settings:
    """Settings of the running stack; stops the program with `pulumi.RunError` when invalid.

    Reads the whole config the engine passed (environment for the CLI, the in-process map for the
    Automation API and tests) so unknown top-level keys are reported too. `now` defaults to the clock: the
    moment of `pulumi preview`/`up` (`pulumi destroy` does not run the program unless given `--run-program`).
    """
    import pulumi
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = [key for key in raw if runtime_config.is_config_secret(key)]
    secret_keys += runtime_config.get_config_secret_keys_env()
    try:
        return load_settings(raw, secret_keys, now=now or datetime.now(UTC))
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None
