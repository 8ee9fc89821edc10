"""Azure REST API versions: which one each resource type is called with, and warnings before Microsoft retires one.

pulumi-azure-native 3.x ships each resource at one default API version (the SDK docstring "Uses Azure REST API version
…"); the provider plugin also serves every other published version under an explicit type token,
`azure-native:<module>/v<YYYYMMDD>:<Type>`, the token the SDK's own resources already list as aliases. `KeyVault` and
`KeyVaultKey` register the SDK's Key Vault resources under that token for `KEY_VAULT_API_VERSION`: same provider, same
inputs, and an alias to the default token, so a stack created with the default token keeps its vault and key (the
engine finds them under the alias and diffs them in place) while every later call uses the new version.

`azure-api-lifecycle.yaml` lists each resource type the program creates with the retirements Microsoft announced;
`retiring` finds the versions in use that retire within `WARNING_WINDOW` (the test suite fails on them, `pulumi up`
warns).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pulumi
import yaml
from pulumi_azure_native import keyvault

# Microsoft retires every Key Vault control-plane version before 2026-02-01 on 2027-02-27 (azure-api-lifecycle.yaml).
KEY_VAULT_API_VERSION = "2026-02-01"
LIFECYCLE_FILE = Path(__file__).resolve().parent.parent / "azure-api-lifecycle.yaml"
WARNING_WINDOW = timedelta(days=120)
_EXPLICIT_TOKEN = re.compile(
    r"^azure-native:(?P<module>[a-z0-9]+)/v(?P<date>\d{8})(?P<preview>preview)?:(?P<type>\w+)$"
)
_DEFAULT_TOKEN = re.compile(r"^azure-native:(?P<module>[a-z0-9]+):(?P<type>\w+)$")
_SDK_VERSION = re.compile(r"Uses Azure REST API version (\d{4}-\d{2}-\d{2}(?:-preview)?)\.")


def explicit_token(default_token: str, api_version: str) -> str:
    """`azure-native:keyvault:Vault` at `2026-02-01` → `azure-native:keyvault/v20260201:Vault`."""
    found = _DEFAULT_TOKEN.match(default_token)
    if found is None:
        raise ValueError(f"{default_token} is not a default azure-native resource token")
    return f"azure-native:{found['module']}/v{api_version.replace('-', '')}:{found['type']}"


def api_version(token: str) -> str:
    """The Azure REST API version the provider calls for a resource token.

    Explicit tokens name it; for a default token it is what the installed SDK's module documents.
    """
    explicit = _EXPLICIT_TOKEN.match(token)
    if explicit is not None:
        day = explicit["date"]
        return f"{day[:4]}-{day[4:6]}-{day[6:]}" + ("-preview" if explicit["preview"] else "")
    default = _DEFAULT_TOKEN.match(token)
    if default is None:
        raise ValueError(f"{token} is not an azure-native resource token")
    module = importlib.import_module(f"pulumi_azure_native.{default['module']}")
    source = inspect.getsource(inspect.getmodule(getattr(module, default["type"])))  # pyright: ignore[reportArgumentType]
    versions = set(_SDK_VERSION.findall(source))
    if len(versions) != 1:
        raise ValueError(f"the installed SDK documents {sorted(versions) or 'no'} API versions for {token}")
    return versions.pop()


class _ExplicitApiVersion(pulumi.CustomResource):
    """Registers an SDK resource class under its explicit-version token, aliased to the default token.

    Mixed in after the SDK class (`class KeyVault(keyvault.Vault, _ExplicitApiVersion)`), it receives the SDK's own
    `super().__init__(default_token, name, props, opts)`: the inputs are built by the SDK exactly as before, only the
    token (and so the API version) changes.
    """

    default_token: ClassVar[str]
    explicit_api_version: ClassVar[str]

    def __init__(
        self,
        t: str,
        name: str,
        props: Any = None,
        opts: pulumi.ResourceOptions | None = None,
        dependency: bool = False,
    ) -> None:
        if t != self.default_token:
            # A new SDK that renamed the resource must not be registered under a token nobody checked.
            raise TypeError(f"{type(self).__name__} expects the SDK to register {self.default_token}, not {t}")
        token = explicit_token(t, self.explicit_api_version)
        opts = copy.copy(opts) if opts is not None else pulumi.ResourceOptions()
        # The SDK aliases every explicit version to its default token; the one this resource now has is its own URN,
        # and the default token is where stacks created before keep the resource.
        kept = [alias for alias in opts.aliases or [] if not (isinstance(alias, pulumi.Alias) and alias.type_ == token)]
        opts.aliases = [*kept, pulumi.Alias(type_=self.default_token)]
        super().__init__(token, name, props, opts, dependency)


class KeyVault(keyvault.Vault, _ExplicitApiVersion):
    """`keyvault.Vault` at `KEY_VAULT_API_VERSION`."""

    default_token = "azure-native:keyvault:Vault"
    explicit_api_version = KEY_VAULT_API_VERSION


class KeyVaultKey(keyvault.Key, _ExplicitApiVersion):
    """`keyvault.Key` at `KEY_VAULT_API_VERSION`."""

    default_token = "azure-native:keyvault:Key"
    explicit_api_version = KEY_VAULT_API_VERSION


@dataclass(frozen=True)
class Retirement:
    """An announced retirement: the versions it covers, the day they stop working and where Microsoft says so."""

    retires_on: date
    source: str
    versions_before: str | None = None
    versions: tuple[str, ...] = ()

    def covers(self, version: str) -> bool:
        if version in self.versions:
            return True
        # Versions are dates (with an optional -preview): comparing the date part orders them.
        return self.versions_before is not None and version[:10] < self.versions_before[:10]


@dataclass(frozen=True)
class ResourceApi:
    """One row of azure-api-lifecycle.yaml."""

    type: str
    arm_type: str
    retirements: tuple[Retirement, ...]


@dataclass(frozen=True)
class RetiringApi:
    """A version in use that retires within the window."""

    type: str
    arm_type: str
    version: str
    retires_on: date
    source: str

    def __str__(self) -> str:
        return (
            f"{self.type} ({self.arm_type}) uses Azure API version {self.version}, which Microsoft retires on "
            f"{self.retires_on.isoformat()} ({self.source}): move it to a supported version before then "
            '(README, "Azure API versions")'
        )


def load_lifecycle(path: Path = LIFECYCLE_FILE) -> list[ResourceApi]:
    """The table, parsed strictly: a row the checks cannot read is an error, not a row without retirements."""
    document = yaml.safe_load(path.read_text())
    return [_resource_api(row) for row in document["resources"]]


def _resource_api(row: Mapping[str, Any]) -> ResourceApi:
    retirements = tuple(
        Retirement(
            retires_on=_date(entry["retiresOn"]),
            source=str(entry["source"]),
            versions_before=entry.get("versionsBefore"),
            versions=tuple(entry.get("versions") or ()),
        )
        for entry in row.get("retirements") or ()
    )
    return ResourceApi(type=str(row["type"]), arm_type=str(row["armType"]), retirements=retirements)


def _date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def retiring(table: Iterable[ResourceApi], today: date, window: timedelta = WARNING_WINDOW) -> list[RetiringApi]:
    """Every (type, version in use) that retires before `today + window`, already retired ones included."""
    found = []
    for row in table:
        version = api_version(row.type)
        found += [
            RetiringApi(row.type, row.arm_type, version, retirement.retires_on, retirement.source)
            for retirement in row.retirements
            if retirement.covers(version) and retirement.retires_on <= today + window
        ]
    return found


def today() -> date:
    return datetime.now(UTC).date()


def warn_about_retiring_api_versions() -> None:
    """`pulumi up`/`preview` warn about each version in use that retires within the window; deploying goes on."""
    for api in retiring(load_lifecycle(), today()):
        pulumi.warn(str(api))
