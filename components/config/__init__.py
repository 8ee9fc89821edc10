"""Stack settings: the one place that parses and validates the `confidential-vault:*` configuration.

`load_settings` turns the raw Pulumi config of a stack into a `Settings` object or raises `ConfigError` listing
every problem as `confidential-vault:<dotted.path>: <what is wrong> (got <value>; allowed: <...>)`.
Components never read `pulumi.Config`; they receive the parts of `Settings` they need.

One module per section (`cluster`, `edge`, `monitoring`, `argocd`, `vault`) holds its models and its cross-key
rules; `base` the shared types and the problem format; `errors` the rendering of pydantic's errors; `settings` the
root model. A new section is a new module plus one field and one entry in `settings.SECTION_RULES`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from components.config.argocd import PLATFORM_NAMESPACES, ArgoApplication, ArgoCdSettings
from components.config.base import NAMESPACE, InvalidValueError, Problem, quantity_mib
from components.config.cluster import SGX_EPC_MIB, ClusterSettings, SgxPool, SystemPool
from components.config.edge import AcmeSettings, DnsSettings, EdgeSettings
from components.config.errors import problem_from
from components.config.monitoring import MonitoringSettings
from components.config.settings import SECTION_RULES, Settings
from components.config.vault import VaultEnclave, VaultImage, VaultSettings, VaultSgx

__all__ = [
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


class ConfigError(Exception):
    """Stack configuration is invalid; `problems` lists every finding."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid stack configuration ({len(problems)} problem(s)):\n{lines}")


def load_settings(raw: Mapping[str, str], secret_keys: Iterable[str] = ()) -> Settings:
    """Validate the raw Pulumi config of a stack.

    `raw` maps full config keys (`confidential-vault:cluster`) to their string values as the Pulumi
    engine passes them (objects and lists JSON-encoded); keys of other namespaces are ignored.
    `secret_keys` names the keys set with `--secret`.
    """
    secret_top_level = {key.removeprefix(f"{NAMESPACE}:") for key in secret_keys}
    data: dict[str, Any] = {}
    for full_key, value in raw.items():
        namespace, _, key = full_key.partition(":")
        if namespace == NAMESPACE:
            data[key] = _decode(value)

    try:
        settings = Settings.model_validate(data)
    except ValidationError as error:
        raise ConfigError([problem_from(Settings, detail, secret_top_level) for detail in error.errors()]) from None

    problems = _secret_problems(settings, secret_top_level) + [p for rules in SECTION_RULES for p in rules(settings)]
    if problems:
        raise ConfigError(problems)
    return settings


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _secret_problems(settings: Settings, secret_top_level: set[str]) -> list[Problem]:
    """Secret fields must come from `pulumi config set --secret`, never from plaintext stack files."""
    problems = []
    for path in _set_secret_paths(settings, ()):
        if path[0] not in secret_top_level:
            dotted = ".".join(path)
            problems.append(
                Problem(
                    dotted,
                    f"is a secret but stored in plaintext; set it with "
                    f"`pulumi config set --secret --path {NAMESPACE}:{dotted}`",
                    "[hidden]",
                )
            )
    return problems


def _set_secret_paths(model: BaseModel, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        key = (*prefix, field.alias or name)
        if isinstance(value, SecretStr):
            paths.append(key)
        elif isinstance(value, BaseModel):
            paths.extend(_set_secret_paths(value, key))
    return paths


def load_stack_settings() -> Settings:
    """Settings of the running stack; stops the program with `pulumi.RunError` when invalid.

    Reads the whole config the engine passed (environment for the CLI, the in-process map for the
    Automation API and tests) so unknown top-level keys are reported too.
    """
    import pulumi
    from pulumi.runtime import config as runtime_config

    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = [key for key in raw if runtime_config.is_config_secret(key)]
    secret_keys += runtime_config.get_config_secret_keys_env()
    try:
        return load_settings(raw, secret_keys)
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None
