"""The SecretStoreDatabase component: a private PostgreSQL flexible server for OpenBao, and how the program wires it.

Component tests run the component alone in the stack's network (`run_function`); the program tests run
`__main__.py` and check what waits for the database and what leaks.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pulumi
import pytest
from pydantic import SecretStr

from components.config.database import DatabaseRestore, DatabaseSettings, database_plan
from components.database import (
    DatabasePlacement,
    SecretStoreDatabase,
    SecretStoreDatabaseArgs,
    connection_url,
    server_name,
)
from components.network import ClusterNetwork, NetworkArgs
from harness import (
    FAKE_SUBSCRIPTION_ID,
    ProgramRun,
    fake_password,
    is_secret,
    run_function,
    run_program,
    with_overrides,
)

SERVER = "azure-native:dbforpostgresql:Server"
DATABASE = "azure-native:dbforpostgresql:Database"
CONFIGURATION = "azure-native:dbforpostgresql:Configuration"
ZONE = "azure-native:privatedns:PrivateZone"
LINK = "azure-native:privatedns:VirtualNetworkLink"
VNET = "azure-native:network:VirtualNetwork"
COMPONENT = "confidential-vault:database:SecretStoreDatabase"
PASSWORD = fake_password("database-password")
TAGS = {"environment": "dev", "stack": "dev", "owner": "platform-team"}
GROUP_ID = f"/subscriptions/{FAKE_SUBSCRIPTION_ID}/resourceGroups/cv-dev"
VNET_ID = f"{GROUP_ID}/providers/Microsoft.Network/virtualNetworks/vnet-dev"
SOURCE_SERVER_ID = f"{GROUP_ID}/providers/Microsoft.DBforPostgreSQL/flexibleServers/cv-dev-0123abcd"
RESTORE = DatabaseRestore(
    source_server_id=SOURCE_SERVER_ID, point_in_time=datetime(2026, 12, 1, 9, 30, 15, 123000, tzinfo=UTC)
)


def _database_program(
    environment: str = "dev",
    settings: DatabaseSettings | None = None,
    protect: bool = False,
    ca_file: str | None = None,
) -> Callable[[], None]:
    def program() -> None:
        network = ClusterNetwork(
            "network", NetworkArgs(resource_group_name="cv-dev", location="westeurope", stack="dev", tags=TAGS)
        )
        database = SecretStoreDatabase(
            "database",
            SecretStoreDatabaseArgs(
                stack="dev",
                plan=database_plan(environment, settings or DatabaseSettings()),
                placement=DatabasePlacement(
                    resource_group_name="cv-dev",
                    location="westeurope",
                    virtual_network_id=network.virtual_network_id,
                    delegated_subnet_id=network.database_subnet_id,
                    tags=TAGS,
                ),
                ca_file=ca_file,
                protect=protect,
            ),
        )
        assert database.host is not None
        assert database.server_id is not None
        assert database.password is not None
        pulumi.export("host", database.host)
        pulumi.export("serverId", database.server_id)
        pulumi.export("connectionUrl", database.connection_url)
        pulumi.export("password", database.password)
        pulumi.export("login", database.login)
        pulumi.export("databaseName", database.database_name)
        pulumi.export("releaseDependencies", [resource.urn for resource in database.release_dependencies])

    return program


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    return run_function(_database_program())


@pytest.fixture(scope="module")
def prod() -> ProgramRun:
    return run_function(_database_program("prod", protect=True), stack="prod")


def _server_name(run: ProgramRun) -> str:
    return run.one(SERVER).inputs["serverName"]


# --- the server ------------------------------------------------------------------------------------------------------


def test_dev_server_is_a_small_burstable_postgres_17(dev: ProgramRun) -> None:
    inputs = dev.one(SERVER).inputs
    assert inputs["version"] == "17"
    assert inputs["sku"] == {"name": "Standard_B1ms", "tier": "Burstable"}
    assert inputs["storage"] == {"storageSizeGB": 32, "autoGrow": "Disabled"}
    assert inputs["backup"] == {"backupRetentionDays": 7, "geoRedundantBackup": "Disabled"}
    assert inputs["highAvailability"]["mode"] == "Disabled"
    assert inputs["resourceGroupName"] == "cv-dev"
    assert inputs["location"] == "westeurope"
    assert inputs["tags"] == TAGS
    assert "createMode" not in inputs


def test_prod_server_is_zone_redundant_with_geo_redundant_backups(prod: ProgramRun) -> None:
    inputs = prod.one(SERVER).inputs
    assert inputs["sku"] == {"name": "Standard_D2ds_v5", "tier": "GeneralPurpose"}
    assert inputs["highAvailability"]["mode"] == "ZoneRedundant"
    assert inputs["backup"] == {"backupRetentionDays": 35, "geoRedundantBackup": "Enabled"}


def test_configured_sizes_reach_the_server() -> None:
    settings = DatabaseSettings(
        sku="Standard_E4ds_v5", storage_size_gb=128, backup_retention_days=21, geo_redundant_backup=True
    )
    inputs = run_function(_database_program("dev", settings)).one(SERVER).inputs
    assert inputs["sku"] == {"name": "Standard_E4ds_v5", "tier": "MemoryOptimized"}
    assert inputs["storage"]["storageSizeGB"] == 128
    assert inputs["backup"] == {"backupRetentionDays": 21, "geoRedundantBackup": "Enabled"}


def test_server_is_reachable_only_inside_the_vnet(dev: ProgramRun) -> None:
    network = dev.one(SERVER).inputs["network"]
    zone = dev.one(ZONE)
    assert network == {
        "delegatedSubnetResourceId": f"{VNET_ID}/subnets/postgres",
        "privateDnsZoneArmResourceId": (
            f"{GROUP_ID}/providers/Microsoft.Network/privateDnsZones/{zone.inputs['privateZoneName']}"
        ),
        "publicNetworkAccess": "Disabled",
    }
    # No way in from outside: no firewall rule, no private endpoint elsewhere.
    assert not [r for r in dev.registrations if "FirewallRule" in r.type or "PrivateEndpoint" in r.type]


def test_private_dns_zone_resolves_the_server_in_the_linked_vnet(dev: ProgramRun) -> None:
    zone = dev.one(ZONE)
    assert zone.inputs["privateZoneName"] == "cv-dev.private.postgres.database.azure.com"
    assert zone.inputs["location"] == "global"
    link = dev.one(LINK)
    assert link.inputs["privateZoneName"] == zone.inputs["privateZoneName"]
    assert link.inputs["virtualNetwork"] == {"id": VNET_ID}
    assert link.inputs["registrationEnabled"] is False
    assert dev.depends_on(link, zone)
    assert dev.depends_on(link, dev.one(VNET))
    # Azure no longer checks for the link when it creates the server: the server waits for it.
    assert dev.depends_on(dev.one(SERVER), link)


def test_login_is_a_generated_password_and_entra_is_off(dev: ProgramRun) -> None:
    server = dev.one(SERVER)
    assert server.inputs["administratorLogin"] == "openbao"
    assert server.inputs["administratorLoginPassword"] == PASSWORD
    assert is_secret(server.raw_inputs["administratorLoginPassword"])
    assert server.inputs["authConfig"]["passwordAuth"] == "Enabled"
    assert server.inputs["authConfig"]["activeDirectoryAuth"] == "Disabled"
    password = dev.one("random:index/randomPassword:RandomPassword", "database-password")
    # Azure wants three of four character classes; letters and digits leave nothing to escape in the URL.
    assert password.inputs["special"] is False
    assert (password.inputs["minUpper"], password.inputs["minLower"], password.inputs["minNumeric"]) == (1, 1, 1)
    assert password.inputs["length"] >= 32


def test_openbaos_database_exists_before_openbao_starts(dev: ProgramRun) -> None:
    database = dev.one(DATABASE)
    assert database.inputs["databaseName"] == "openbao"
    assert database.inputs["serverName"] == _server_name(dev)
    assert (database.inputs["charset"], database.inputs["collation"]) == ("UTF8", "en_US.utf8")
    assert dev.depends_on(database, dev.one(SERVER))


def test_tls_is_required_and_at_least_1_3(dev: ProgramRun) -> None:
    parameters = {r.inputs["configurationName"]: r for r in dev.of_type(CONFIGURATION)}
    assert {name: r.inputs["value"] for name, r in parameters.items()} == {
        "require_secure_transport": "on",
        "ssl_min_protocol_version": "TLSv1.3",
    }
    for parameter in parameters.values():
        assert parameter.inputs["source"] == "user-override"
        assert parameter.inputs["serverName"] == _server_name(dev)
    # One operation at a time on a server: the database, then each parameter after the one before.
    first, second = parameters["require_secure_transport"], parameters["ssl_min_protocol_version"]
    assert dev.depends_on(first, dev.one(DATABASE))
    assert dev.depends_on(second, first)


def test_failover_zone_swaps_are_not_drift(dev: ProgramRun) -> None:
    assert sorted(dev.one(SERVER).ignore_changes) == ["availabilityZone", "highAvailability.standbyAvailabilityZone"]


def test_prod_protects_and_retains_server_and_database(prod: ProgramRun, dev: ProgramRun) -> None:
    for type_ in (SERVER, DATABASE):
        assert prod.one(type_).protect, type_
        assert prod.one(type_).retain_on_delete, type_
        assert not dev.one(type_).protect, type_
        assert not dev.one(type_).retain_on_delete, type_


def test_children_are_parented_to_the_component(dev: ProgramRun) -> None:
    component = dev.one(COMPONENT).urn
    children = [r for r in dev.registrations if r.parent == component]
    assert sorted(r.type for r in children) == sorted(
        [ZONE, LINK, SERVER, DATABASE, CONFIGURATION, CONFIGURATION, "random:index/randomPassword:RandomPassword"]
    )


# --- what the component hands on ------------------------------------------------------------------------------------


def test_outputs_name_the_server_and_keep_secrets_secret(dev: ProgramRun) -> None:
    host = f"{_server_name(dev)}.postgres.database.azure.com"
    assert dev.outputs["host"] == host
    assert (
        dev.outputs["serverId"] == f"{GROUP_ID}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{_server_name(dev)}"
    )
    assert (dev.outputs["login"], dev.outputs["databaseName"]) == ("openbao", "openbao")
    assert is_secret(dev.raw_outputs["connectionUrl"])
    assert is_secret(dev.raw_outputs["password"])
    url = urllib.parse.urlsplit(dev.outputs["connectionUrl"])
    assert (url.scheme, url.username, url.password, url.hostname, url.port) == (
        "postgres",
        "openbao",
        PASSWORD,
        host,
        5432,
    )
    assert url.path == "/openbao"
    assert urllib.parse.parse_qs(url.query) == {"sslmode": ["verify-full"]}


def test_password_never_appears_outside_a_secret(dev: ProgramRun) -> None:
    assert PASSWORD not in dev.plaintext()


def test_ca_bundle_inside_the_enclave_goes_into_the_url() -> None:
    run = run_function(_database_program(ca_file="/etc/openbao/azure-postgres-roots.pem"))
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(run.outputs["connectionUrl"]).query)
    assert query == {"sslmode": ["verify-full"], "sslrootcert": ["/etc/openbao/azure-postgres-roots.pem"]}


def test_release_waits_for_server_database_name_resolution_and_tls(dev: ProgramRun) -> None:
    expected = {dev.one(t).urn for t in (SERVER, DATABASE, LINK)} | {r.urn for r in dev.of_type(CONFIGURATION)}
    assert set(dev.outputs["releaseDependencies"]) == expected


def test_database_resources_wait_for_the_network(dev: ProgramRun) -> None:
    vnet = dev.one(VNET)
    for resource in (dev.one(SERVER), dev.one(LINK)):
        assert dev.depends_on(resource, vnet), resource.name


# --- point-in-time restore -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def restored() -> ProgramRun:
    return run_function(_database_program("prod", DatabaseSettings(restore=RESTORE), protect=True), stack="prod")


def test_restore_creates_a_new_server_from_the_sources_backups(restored: ProgramRun, prod: ProgramRun) -> None:
    inputs = restored.one(SERVER).inputs
    assert inputs["createMode"] == "PointInTimeRestore"
    assert inputs["sourceServerResourceId"] == SOURCE_SERVER_ID
    assert inputs["pointInTimeUTC"] == "2026-12-01T09:30:15Z"
    # A new name: the server restored from stays, and the restored one joins the same subnet and zone.
    assert _server_name(restored) != _server_name(prod)
    assert inputs["network"] == prod.one(SERVER).inputs["network"]
    assert inputs["highAvailability"]["mode"] == "ZoneRedundant"


def test_restore_brings_the_database_and_reapplies_tls(restored: ProgramRun) -> None:
    # The restored server already holds `openbao`: creating it again would fail.
    assert not restored.of_type(DATABASE)
    parameters = {r.inputs["configurationName"]: r.inputs["value"] for r in restored.of_type(CONFIGURATION)}
    assert parameters == {"require_secure_transport": "on", "ssl_min_protocol_version": "TLSv1.3"}
    expected = {restored.one(t).urn for t in (SERVER, LINK)} | {r.urn for r in restored.of_type(CONFIGURATION)}
    assert set(restored.outputs["releaseDependencies"]) == expected


# --- names and URLs --------------------------------------------------------------------------------------------------


SUBNET_ID = f"{VNET_ID}/subnets/postgres"


def test_server_names_are_valid_dns_labels_and_tell_stacks_apart() -> None:
    names = {
        server_name("dev", SUBNET_ID),
        server_name("dev", SUBNET_ID.replace("cv-dev", "cv-other")),
        server_name("dev", SUBNET_ID, RESTORE),
        server_name("Feature_Branch.42" + "x" * 80, SUBNET_ID),
    }
    assert len(names) == 4
    for name in names:
        assert 3 <= len(name) <= 63, name
        assert name[0].isalnum(), name
        assert name[-1].isalnum(), name
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-"), name
    assert server_name("dev", SUBNET_ID) == server_name("dev", SUBNET_ID.upper())


def test_connection_url_escapes_the_password() -> None:
    url = urllib.parse.urlsplit(connection_url("p@ss/w:rd?#", "db.example"))
    assert urllib.parse.unquote(url.password or "") == "p@ss/w:rd?#"
    assert url.hostname == "db.example"


# --- an existing cluster's own server --------------------------------------------------------------------------------


def test_existing_server_creates_nothing_and_passes_the_url_on_as_a_secret() -> None:
    configured = "postgres://bao:s3cret@pg.internal:5432/openbao?sslmode=verify-full"

    def program() -> None:
        database = SecretStoreDatabase(
            "database", SecretStoreDatabaseArgs(stack="dev", connection_url=SecretStr(configured))
        )
        assert database.host is None
        assert database.server_id is None
        assert not database.release_dependencies
        pulumi.export("connectionUrl", database.connection_url)

    run = run_function(program)
    assert not [r for r in run.registrations if r.custom]
    assert is_secret(run.raw_outputs["connectionUrl"])
    assert run.outputs["connectionUrl"] == configured
    assert "s3cret" not in run.plaintext()


def test_neither_a_plan_nor_a_url_is_a_programming_error() -> None:
    def program() -> None:
        SecretStoreDatabase("database", SecretStoreDatabaseArgs(stack="dev"))

    with pytest.raises(ValueError, match="plan and a placement"):
        run_function(program)


# --- the program ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def program_run() -> ProgramRun:
    from harness import stack_config

    config, secret_keys = stack_config("dev")
    return run_program(config, stack="dev", secret_keys=secret_keys)


def _database_children(run: ProgramRun) -> set[str]:
    component = run.one(COMPONENT).urn
    return {r.urn for r in run.registrations if r.parent == component}


def _dependents(run: ProgramRun, urns: set[str]) -> set[tuple[str, str]]:
    return {
        (r.type, r.name)
        for r in run.registrations
        if r.urn not in urns and ({*r.dependencies, *(u for us in r.property_dependencies.values() for u in us)} & urns)
    }


# What may wait for the database besides its own parts: the Secret that carries its URL and the OpenBao release.
ALLOWED_DEPENDENTS = {"kubernetes:core/v1:Secret", "kubernetes:helm.sh/v3:Release"}


def test_program_creates_the_database_in_the_clusters_network_on_aks(program_run: ProgramRun) -> None:
    run = program_run
    server = run.one(SERVER)
    (node_pool_profile,) = run.one("azure-native:containerservice:ManagedCluster").inputs["agentPoolProfiles"]
    vnet_id = node_pool_profile["vnetSubnetID"].removesuffix("/subnets/nodes")
    assert server.inputs["network"]["delegatedSubnetResourceId"] == f"{vnet_id}/subnets/postgres"
    assert run.outputs["vaultDatabaseHost"] == f"{server.inputs['serverName']}.postgres.database.azure.com"
    assert run.outputs["vaultDatabaseServerId"].endswith(f"/flexibleServers/{server.inputs['serverName']}")


def test_nothing_else_waits_for_the_database(program_run: ProgramRun) -> None:
    dependents = _dependents(program_run, _database_children(program_run))
    assert {type_ for type_, _ in dependents} <= ALLOWED_DEPENDENTS, dependents


def test_program_never_shows_the_database_password(program_run: ProgramRun) -> None:
    assert program_run.one(SERVER).inputs["administratorLoginPassword"] == PASSWORD
    assert PASSWORD not in program_run.plaintext()


def test_file_storage_creates_no_database_and_keeps_the_managed_vnet(dev_config: dict[str, Any]) -> None:
    run = run_program(with_overrides(dev_config, {"vault.storage": "file"}))
    assert COMPONENT not in run.types()
    assert not run.of_type(VNET)
    assert "vaultDatabaseHost" not in run.outputs


def test_existing_cluster_uses_the_configured_server(dev_config: dict[str, Any]) -> None:
    url = "postgres://bao:s3cret@pg.internal:5432/openbao?sslmode=verify-full"
    config = with_overrides(
        dev_config,
        {
            "cluster": {"provider": "existing", "kubeconfigPath": "/home/ops/.kube/config"},
            "vault.storage": "postgresql",
            "vault.database": {"connectionUrl": url},
            "vault.sgx": {"simulation": True},
        },
    )
    run = run_program(config, secret_keys=["confidential-vault:vault"])
    assert not [r for r in run.registrations if r.type.startswith("azure-native:")]
    assert run.one(COMPONENT)
    assert "s3cret" not in run.plaintext()
