"""`vault.storage` and `vault.database`: per-environment defaults, where each key applies, and the HA pool rule."""

from __future__ import annotations

from typing import Any

import pytest
from test_config import PROD, load, problems

from components.config.database import DatabasePlan, database_plan, openbao_replicas, storage_kind

# A prod stack whose SGX pool holds the two OpenBao servers, and one whose pool has a single node.
PROD_HA: dict[str, Any] = {**PROD, "cluster.sgxPool.count": 2}
PROD_ONE_NODE: dict[str, Any] = {**PROD, "cluster.sgxPool.count": 1}
EXISTING: dict[str, Any] = {
    "cluster": {"provider": "existing", "kubeconfigPath": "/home/ops/.kube/config"},
    "vault.sgx.simulation": True,
}
URL = "postgres://bao:pg-pass-Tq3@pg.internal:5432/openbao?sslmode=verify-full"


# --- defaults ----------------------------------------------------------------------------------------------------


def test_aks_server_mode_defaults_to_postgresql_elsewhere_file() -> None:
    assert storage_kind(load()) == "postgresql"
    assert storage_kind(load({"vault.mode": "dev"})) == "file"
    assert storage_kind(load(EXISTING)) == "file"
    assert storage_kind(load({"vault.storage": "file"})) == "file"


def test_dev_gets_a_burstable_server_without_ha() -> None:
    assert database_plan("dev", load().vault.database) == DatabasePlan(
        sku="Standard_B1ms", storage_size_gb=32, backup_retention_days=7, geo_redundant_backup=False,
        high_availability=False,
    )  # fmt: skip
    assert database_plan("dev", load().vault.database).tier == "Burstable"


def test_prod_gets_zone_redundant_ha_geo_backups_and_the_longest_retention() -> None:
    plan = database_plan("prod", load(PROD_HA).vault.database)
    assert plan.tier == "GeneralPurpose"
    assert (plan.high_availability, plan.geo_redundant_backup, plan.backup_retention_days) == (True, True, 35)


def test_set_keys_override_the_environment_defaults() -> None:
    settings = load(
        {
            **PROD_HA,
            "vault.database": {"sku": "Standard_E2ds_v5", "geoRedundantBackup": False, "backupRetentionDays": 14},
        }
    )
    plan = database_plan("prod", settings.vault.database)
    assert (plan.sku, plan.tier) == ("Standard_E2ds_v5", "MemoryOptimized")
    assert (plan.geo_redundant_backup, plan.backup_retention_days, plan.high_availability) == (False, 14, True)


def test_two_openbao_servers_on_prod_with_postgresql_only() -> None:
    assert openbao_replicas(load(PROD_HA)) == 2
    assert openbao_replicas(load({**PROD_ONE_NODE, "vault.storage": "file"})) == 1
    assert openbao_replicas(load()) == 1


# --- where keys apply ----------------------------------------------------------------------------------------------


def test_storage_is_refused_in_dev_mode() -> None:
    assert problems({"vault.mode": "dev", "vault.storage": "postgresql"}) == [
        "confidential-vault:vault.storage: does nothing in dev mode: the dev server keeps everything in memory "
        "(got 'postgresql'; allowed: unset)"
    ]


def test_database_keys_are_refused_with_file_storage() -> None:
    assert problems(
        {"vault.storage": "file", "vault.database": {"sku": "Standard_B2s", "highAvailability": False}}
    ) == [
        "confidential-vault:vault.database.sku: only applies to vault.storage postgresql "
        "(got 'Standard_B2s'; allowed: unset with vault.storage file)",
        "confidential-vault:vault.database.highAvailability: only applies to vault.storage postgresql "
        "(got false; allowed: unset with vault.storage file)",
    ]


def test_connection_url_is_refused_on_aks_without_showing_it() -> None:
    assert problems({"vault.database.connectionUrl": URL}, secret_keys=("vault",)) == [
        "confidential-vault:vault.database.connectionUrl: only applies to existing clusters: on AKS the program "
        "creates the server (got [secret]; allowed: unset with cluster.provider aks)"
    ]


def test_existing_cluster_with_postgresql_needs_a_connection_url() -> None:
    assert problems({**EXISTING, "vault.storage": "postgresql"}) == [
        "confidential-vault:vault.database.connectionUrl: is required for vault.storage postgresql on existing "
        "clusters: the program creates no server there (allowed: your server's URL, set with --secret: "
        "postgres://<user>:<password>@<host>:5432/<database>?sslmode=verify-full; or vault.storage: file)"
    ]
    settings = load({**EXISTING, "vault.storage": "postgresql", "vault.database.connectionUrl": URL}, ("vault",))
    assert storage_kind(settings) == "postgresql"


def test_azure_server_keys_are_refused_on_existing_clusters() -> None:
    overrides = {
        **EXISTING,
        "vault.storage": "postgresql",
        "vault.database": {"connectionUrl": URL, "sku": "Standard_D2ds_v5", "backupRetentionDays": 14},
    }
    assert problems(overrides, secret_keys=("vault",)) == [
        "confidential-vault:vault.database.sku: only applies to the server the program creates on AKS "
        "(allowed: unset with cluster.provider existing)",
        "confidential-vault:vault.database.backupRetentionDays: only applies to the server the program creates on AKS "
        "(allowed: unset with cluster.provider existing)",
    ]


# --- values --------------------------------------------------------------------------------------------------------


def test_ha_is_refused_on_burstable() -> None:
    assert problems({"vault.database": {"sku": "Standard_B2ms", "highAvailability": True}}) == [
        "confidential-vault:vault.database.highAvailability: needs a GeneralPurpose or MemoryOptimized size: Azure "
        "offers no HA on Burstable (Standard_B2ms) (got true; allowed: false, or a vault.database.sku of the D or E "
        "family, e.g. Standard_D2ds_v5)"
    ]
    # prod's default HA on a Burstable size the operator chose
    assert [p.split(":")[1] for p in problems({**PROD_HA, "vault.database.sku": "Standard_B1ms"})] == [
        "vault.database.highAvailability"
    ]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"vault.database.sku": "B1ms"},
            "confidential-vault:vault.database.sku: is not a flexible server compute size (got 'B1ms'; "
            "allowed: e.g. Standard_B1ms, Standard_D2ds_v5, Standard_E2ds_v5)",
        ),
        (
            {"vault.database.storageSizeGb": 100},
            "confidential-vault:vault.database.storageSizeGb: is not a storage size Azure offers (got 100; "
            "allowed: 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32767 (GiB))",
        ),
        (
            {"vault.database.backupRetentionDays": 5},
            "confidential-vault:vault.database.backupRetentionDays: is out of range (got 5; allowed: 7 to 35)",
        ),
        (
            {"vault.database.restore": {"sourceServerId": "cv-dev-1234", "pointInTime": "2026-12-01T09:30:00Z"}},
            "confidential-vault:vault.database.restore.sourceServerId: is not the resource ID of a PostgreSQL "
            "flexible server (got 'cv-dev-1234'; allowed: /subscriptions/<id>/resourceGroups/<group>/providers/"
            "Microsoft.DBforPostgreSQL/flexibleServers/<name> (`pulumi stack output vaultDatabaseServerId`))",
        ),
        (
            {
                "vault.database.restore": {
                    "sourceServerId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/cv-dev/"
                    "providers/Microsoft.DBforPostgreSQL/flexibleServers/cv-dev-1234",
                    "pointInTime": "2026-12-01T09:30:00",
                }
            },
            "confidential-vault:vault.database.restore.pointInTime: needs a time zone (got '2026-12-01T09:30:00'; "
            "allowed: UTC ISO 8601 time, e.g. 2026-12-01T09:30:00Z)",
        ),
    ],
)
def test_values_azure_would_refuse_are_refused_before_deploying(overrides: dict[str, Any], expected: str) -> None:
    assert problems(overrides) == [expected]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgres://bao:pg-pass-Tq3@pg.internal:5432/openbao",
            "does not verify the server: OpenBao's driver would accept any certificate or none",
        ),
        (
            "postgres://bao:pg-pass-Tq3@pg.internal:5432/openbao?sslmode=require",
            "does not verify the server: OpenBao's driver would accept any certificate or none",
        ),
        ("mysql://bao:pg-pass-Tq3@pg.internal/openbao?sslmode=verify-full", "is not a postgres:// URL naming a host"),
        ("postgres://bao:pg-pass-Tq3@pg.internal:5432/?sslmode=verify-full", "names no database"),
        ("postgres://bao:pg-pass-Tq3@pg.internal:port/openbao?sslmode=verify-full", "is not a URL"),
    ],
)
def test_a_bad_connection_url_is_refused_without_showing_it(url: str, message: str) -> None:
    found = problems({**EXISTING, "vault.storage": "postgresql", "vault.database.connectionUrl": url}, ("vault",))
    assert len(found) == 1
    assert found[0].startswith(f"confidential-vault:vault.database.connectionUrl: {message} (got [secret]; allowed: ")
    assert "pg-pass-Tq3" not in found[0]


def test_a_connection_url_in_plaintext_is_refused_without_showing_it() -> None:
    found = problems({**EXISTING, "vault.storage": "postgresql", "vault.database.connectionUrl": URL})
    assert found == [
        "confidential-vault:vault.database.connectionUrl: is a secret but stored in plaintext; set it with "
        "`pulumi config set --secret --path confidential-vault:vault.database.connectionUrl` (got [secret])"
    ]


# --- OpenBao HA needs an SGX node per server --------------------------------------------------------------------


def test_prod_with_postgresql_needs_two_sgx_nodes() -> None:
    assert problems(PROD_ONE_NODE) == [
        "confidential-vault:cluster.sgxPool.count: is below the 2 OpenBao servers of a prod stack with PostgreSQL "
        "storage (active and standby, each on its own SGX node) (got 1; allowed: 2 or more)"
    ]


def test_an_autoscaled_pool_must_not_shrink_below_the_servers() -> None:
    overrides = {**PROD, "cluster.sgxPool": {"count": 2, "minCount": 1, "maxCount": 3}}
    assert problems(overrides) == [
        "confidential-vault:cluster.sgxPool.minCount: is below the 2 OpenBao servers of a prod stack with PostgreSQL "
        "storage (active and standby, each on its own SGX node) (got 1; allowed: 2 or more)"
    ]
    assert load({**PROD, "cluster.sgxPool": {"count": 2, "minCount": 2, "maxCount": 3}})


def test_one_node_is_enough_where_one_server_runs() -> None:
    assert load({**PROD_ONE_NODE, "vault.storage": "file"})
    assert load({"cluster.sgxPool.count": 1})
    # A deliberately paused pool (no SGX node at all) is the empty-pool rule's business.
    assert load({**PROD, "cluster.sgxPool": {"count": 0, "allowZeroCount": True}})
