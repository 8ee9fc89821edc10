"""`vault.storage` and `vault.database`: where OpenBao keeps its (barrier-encrypted) data, and the rules.

`postgresql` (the default on AKS in server mode): an Azure Database for PostgreSQL flexible server the program
creates in the cluster's virtual network, or on `existing` clusters a server of your own given by a connection URL.
`file`: the deprecated single-server backend on a volume (OpenBao 2.6 deprecates it for removal in 2.7.0).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr

from components.config.base import InvalidValueError, Problem, Section, check, render_value, set_but_inapplicable

if TYPE_CHECKING:
    from components.config.settings import Settings

StorageKind = Literal["postgresql", "file"]
DatabaseTier = Literal["Burstable", "GeneralPurpose", "MemoryOptimized"]

# The compute tier follows from the size: the letter after `Standard_` is the VM family (Azure flexible server compute
# docs: Burstable B-series, General Purpose D-series, Memory Optimized E-series).
TIER_OF_FAMILY: dict[str, DatabaseTier] = {"B": "Burstable", "D": "GeneralPurpose", "E": "MemoryOptimized"}
_SKU = re.compile(r"^Standard_([BDE])[0-9]+[a-z]*(_v[0-9]+)?$")
# Premium SSD sizes a flexible server offers, in GiB (32 TiB is 32767 in the API).
STORAGE_SIZES_GB = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32767)
_SERVER_ID = re.compile(
    r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/Microsoft\.DBforPostgreSQL/flexibleServers/"
    r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
    re.IGNORECASE,
)
# OpenBao's server count when it keeps its data in PostgreSQL on a prod stack: one active, one standby on another
# SGX node. Anywhere else one server; `file` storage cannot be shared at all.
PROD_OPENBAO_REPLICAS = 2
_URL_EXAMPLE = "postgres://<user>:<password>@<host>:5432/<database>?sslmode=verify-full"


@dataclass(frozen=True)
class DatabaseDefaults:
    """What an environment gets for each unset `vault.database` key."""

    sku: str
    storage_size_gb: int
    backup_retention_days: int
    geo_redundant_backup: bool
    high_availability: bool


# dev/ephemeral: the cheapest server that runs (Burstable has no HA and no on-demand backups). prod: zone-redundant
# HA (failover < 120 s, no data loss), the longest retention Azure offers, backups copied to the paired region.
ENVIRONMENT_DEFAULTS: dict[str, DatabaseDefaults] = {
    "dev": DatabaseDefaults("Standard_B1ms", 32, 7, False, False),
    "ephemeral": DatabaseDefaults("Standard_B1ms", 32, 7, False, False),
    "prod": DatabaseDefaults("Standard_D2ds_v5", 32, 35, True, True),
}


def _storage_size(value: int) -> int:
    if value not in STORAGE_SIZES_GB:
        raise InvalidValueError(
            "is not a storage size Azure offers", ", ".join(str(size) for size in STORAGE_SIZES_GB) + " (GiB)"
        )
    return value


def _connection_url(value: SecretStr) -> SecretStr:
    # The messages never quote the URL: it carries the password.
    try:
        parsed = urllib.parse.urlsplit(value.get_secret_value())
        parsed.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        raise InvalidValueError("is not a URL", _URL_EXAMPLE) from None
    if parsed.scheme not in ("postgres", "postgresql") or not parsed.hostname:
        raise InvalidValueError("is not a postgres:// URL naming a host", _URL_EXAMPLE)
    if not parsed.path.strip("/"):
        raise InvalidValueError("names no database", _URL_EXAMPLE)
    sslmode = urllib.parse.parse_qs(parsed.query).get("sslmode", [""])[-1]
    if sslmode != "verify-full":
        raise InvalidValueError(
            "does not verify the server: OpenBao's driver would accept any certificate or none",
            f"sslmode=verify-full, e.g. {_URL_EXAMPLE}",
        )
    return value


def _utc_time(value: datetime) -> datetime:
    if value.utcoffset() is None:
        raise InvalidValueError("needs a time zone", "UTC ISO 8601 time, e.g. 2026-12-01T09:30:00Z")
    return value


class DatabaseRestore(Section):
    """A point-in-time restore: the server is created from another server's backups (README "Storage: PostgreSQL")."""

    source_server_id: Annotated[
        str,
        check(
            _SERVER_ID,
            "is not the resource ID of a PostgreSQL flexible server",
            "/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.DBforPostgreSQL/flexibleServers/<name> "
            "(`pulumi stack output vaultDatabaseServerId`)",
        ),
    ] = Field(description="Resource ID of the server whose backups to restore (the stack's server before).")
    point_in_time: Annotated[datetime, AfterValidator(_utc_time)] = Field(
        description="UTC time to restore to, within the source's backup retention."
    )


class DatabaseSettings(Section):
    """PostgreSQL for `vault.storage: postgresql`; unset keys take the environment's defaults."""

    sku: (
        Annotated[
            str,
            check(
                _SKU, "is not a flexible server compute size", "e.g. Standard_B1ms, Standard_D2ds_v5, Standard_E2ds_v5"
            ),
        ]
        | None
    ) = Field(
        default=None,
        description="Compute size, its family the tier (B Burstable, D GeneralPurpose, E MemoryOptimized); "
        "default Standard_B1ms, Standard_D2ds_v5 on prod.",
    )
    storage_size_gb: Annotated[int, AfterValidator(_storage_size)] | None = Field(
        default=None, description="Storage in GiB (grows only); default 32."
    )
    backup_retention_days: int | None = Field(
        default=None, ge=7, le=35, description="Days of point-in-time restore; default 7, 35 on prod."
    )
    geo_redundant_backup: bool | None = Field(
        default=None, description="Copy backups to the paired region (set at creation only); default on for prod."
    )
    high_availability: bool | None = Field(
        default=None, description="Zone-redundant standby server (not on Burstable); default on for prod."
    )
    restore: DatabaseRestore | None = Field(
        default=None, description="Create the server by point-in-time restore; keep it set afterwards."
    )
    connection_url: Annotated[SecretStr, AfterValidator(_connection_url)] | None = Field(
        default=None, description="`existing` clusters: your server's URL with sslmode=verify-full (--secret)."
    )


# Every key that shapes the Azure server; none of them applies to a server of your own.
_AZURE_KEYS = (
    "sku",
    "storage_size_gb",
    "backup_retention_days",
    "geo_redundant_backup",
    "high_availability",
    "restore",
)


@dataclass(frozen=True)
class DatabasePlan:
    """The Azure server a stack gets: its `vault.database` keys with the environment's defaults filled in."""

    sku: str
    storage_size_gb: int
    backup_retention_days: int
    geo_redundant_backup: bool
    high_availability: bool
    restore: DatabaseRestore | None = None

    @property
    def tier(self) -> DatabaseTier:
        match = _SKU.match(self.sku)
        assert match is not None, "validated by DatabaseSettings.sku"
        return TIER_OF_FAMILY[match.group(1)]


def database_plan(environment: str, database: DatabaseSettings) -> DatabasePlan:
    """The server for `environment`: each unset key takes that environment's default."""
    defaults = ENVIRONMENT_DEFAULTS[environment]
    return DatabasePlan(
        sku=database.sku or defaults.sku,
        storage_size_gb=database.storage_size_gb or defaults.storage_size_gb,
        backup_retention_days=database.backup_retention_days or defaults.backup_retention_days,
        geo_redundant_backup=(
            defaults.geo_redundant_backup if database.geo_redundant_backup is None else database.geo_redundant_backup
        ),
        high_availability=(
            defaults.high_availability if database.high_availability is None else database.high_availability
        ),
        restore=database.restore,
    )


def storage_kind(settings: Settings) -> StorageKind:
    """`vault.storage`, or its default: PostgreSQL for the server on AKS; `file` elsewhere (no database to use)."""
    configured = settings.vault.storage
    if configured is not None:
        return configured
    return "postgresql" if settings.cluster.provider == "aks" and settings.vault.mode == "server" else "file"


def creates_database(settings: Settings) -> bool:
    """Whether the program creates an Azure PostgreSQL server (and puts the cluster into its own network)."""
    return storage_kind(settings) == "postgresql" and settings.cluster.provider == "aks"


def openbao_replicas(settings: Settings) -> int:
    """How many OpenBao servers run: two (active and standby) on prod with PostgreSQL, else one."""
    if settings.environment == "prod" and storage_kind(settings) == "postgresql" and settings.vault.mode == "server":
        return PROD_OPENBAO_REPLICAS
    return 1


def storage_problems(settings: Settings) -> list[Problem]:
    """The storage must exist where the secret store runs, and only keys that do something may be set."""
    vault = settings.vault
    database = vault.database
    kind = storage_kind(settings)
    if vault.mode == "dev":
        problems = []
        if vault.storage is not None:
            problems.append(
                Problem(
                    "vault.storage",
                    "does nothing in dev mode: the dev server keeps everything in memory",
                    render_value(vault.storage),
                    "unset",
                )
            )
        return problems + set_but_inapplicable(
            database, "vault.database", (*_AZURE_KEYS, "connection_url"), "does nothing in dev mode", "unset"
        )
    if kind == "file":
        return set_but_inapplicable(
            database,
            "vault.database",
            (*_AZURE_KEYS, "connection_url"),
            "only applies to vault.storage postgresql",
            "unset with vault.storage file",
        )
    if settings.cluster.provider == "aks":
        return set_but_inapplicable(
            database,
            "vault.database",
            ("connection_url",),
            "only applies to existing clusters: on AKS the program creates the server",
            "unset with cluster.provider aks",
        )
    problems = set_but_inapplicable(
        database,
        "vault.database",
        _AZURE_KEYS,
        "only applies to the server the program creates on AKS",
        "unset with cluster.provider existing",
        show_value=False,
    )
    if database.connection_url is None:
        problems.append(
            Problem(
                "vault.database.connectionUrl",
                "is required for vault.storage postgresql on existing clusters: the program creates no server there",
                allowed=f"your server's URL, set with --secret: {_URL_EXAMPLE}; or vault.storage: file",
            )
        )
    return problems


def database_server_problems(settings: Settings) -> list[Problem]:
    """Azure offers zone-redundant HA on the GeneralPurpose and MemoryOptimized tiers only."""
    if not creates_database(settings):
        return []
    plan = database_plan(settings.environment, settings.vault.database)
    if not plan.high_availability or plan.tier != "Burstable":
        return []
    sku = settings.shown("vault.database.sku", plan.sku)
    return [
        Problem(
            "vault.database.highAvailability",
            f"needs a GeneralPurpose or MemoryOptimized size: Azure offers no HA on Burstable ({sku})",
            "true",
            "false, or a vault.database.sku of the D or E family, e.g. Standard_D2ds_v5",
        )
    ]


def openbao_replica_problems(settings: Settings) -> list[Problem]:
    """Each OpenBao server needs an SGX node of its own (anti-affinity): the pool must hold them all."""
    cluster = settings.cluster
    replicas = openbao_replicas(settings)
    if cluster.provider != "aks" or replicas <= 1:
        return []
    sgx = cluster.sgx_pool
    if sgx.count == 0 and sgx.allow_zero_count and not sgx.autoscaling:
        return []  # a deliberately paused pool (empty_sgx_pool_problems)
    key, nodes = ("minCount", sgx.min_count) if sgx.autoscaling else ("count", sgx.count)
    if nodes is None or nodes >= replicas:
        return []
    return [
        Problem(
            f"cluster.sgxPool.{key}",
            f"is below the {replicas} OpenBao servers of a prod stack with PostgreSQL storage "
            "(active and standby, each on its own SGX node)",
            settings.shown(f"cluster.sgxPool.{key}", nodes),
            f"{replicas} or more",
        )
    ]
