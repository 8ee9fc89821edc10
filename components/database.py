"""The secret store's PostgreSQL: an Azure Database for PostgreSQL flexible server reachable only inside the VNet.

OpenBao keeps only ciphertext here (its barrier encrypts every entry before storage), so the database is about
availability and backups, not confidentiality. On `existing` clusters the operator's own server is used instead:
the component then creates nothing and passes the configured connection URL on.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_random as random
from pulumi_azure_native import dbforpostgresql, privatedns
from pydantic import SecretStr

from components.config.database import DatabasePlan, DatabaseRestore, creates_database, database_plan, storage_kind

if TYPE_CHECKING:
    from components.cluster import ConfidentialCluster
    from components.config import Settings

# The newest major version Azure offers that OpenBao 2.6.2's PostgreSQL test helper runs by default
# (sdk/helper/testhelpers/postgresql: `postgres:17`). Azure upgrades minor versions itself; a major upgrade is a
# deliberate change here.
POSTGRES_VERSION = "17"
PORT = 5432
DATABASE_NAME = "openbao"
# The server's password administrator, which OpenBao logs in as (README "Storage: PostgreSQL": why not a narrower
# role). Azure fixes the login name at creation.
LOGIN = "openbao"
# Server parameters (Azure docs "TLS in Azure Database for PostgreSQL", best configuration): TLS on every connection,
# TLS 1.3 only (Go's TLS, which OpenBao's pgx driver uses, speaks it).
SERVER_PARAMETERS = {"require_secure_transport": "on", "ssl_min_protocol_version": "TLSv1.3"}
_NAME_MAX = 63
_ZONE_SUFFIX = "private.postgres.database.azure.com"


@dataclass(frozen=True)
class DatabasePlacement:
    """Where the program's server goes: the stack's group and region, and the VNet with the delegated subnet."""

    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    virtual_network_id: pulumi.Input[str]
    delegated_subnet_id: pulumi.Input[str]
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretStoreDatabaseArgs:
    """Inputs of `SecretStoreDatabase`: a `plan` and a `placement` (AKS), or an existing server's `connection_url`."""

    stack: str
    plan: DatabasePlan | None = None
    placement: DatabasePlacement | None = None
    connection_url: SecretStr | None = None
    ca_file: str | None = None
    """Optional `sslrootcert` for the program's URL: a narrower CA bundle inside the enclave. Without it the driver
    verifies against the system bundle, which enclave.json embeds (measured) and which holds Azure's roots."""
    protect: bool = False

    @staticmethod
    def from_settings(
        settings: Settings, cluster: ConfidentialCluster, stack: str, ca_file: str | None = None
    ) -> SecretStoreDatabaseArgs:
        """The database of a stack with `vault.storage: postgresql`, in the cluster's own network on AKS."""
        assert storage_kind(settings) == "postgresql", "no database with vault.storage file"
        if not creates_database(settings):
            return SecretStoreDatabaseArgs(
                stack=stack, connection_url=settings.vault.database.connection_url, protect=settings.protected
            )
        network = cluster.network
        assert network is not None, "the cluster must be created with own_network=True"
        assert cluster.resource_group_name is not None
        assert cluster.location is not None
        return SecretStoreDatabaseArgs(
            stack=stack,
            plan=database_plan(settings.environment, settings.vault.database),
            placement=DatabasePlacement(
                resource_group_name=cluster.resource_group_name,
                location=cluster.location,
                virtual_network_id=network.virtual_network_id,
                delegated_subnet_id=network.database_subnet_id,
                tags=cluster.azure_tags,
            ),
            ca_file=ca_file,
            protect=settings.protected,
        )


def _slug(stack: str, room: int) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", stack.lower()).strip("-")[:room].rstrip("-") or "stack"


def point_in_time(restore: DatabaseRestore) -> str:
    """The restore time as Azure's `pointInTimeUTC` takes it."""
    return restore.point_in_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def server_name(stack: str, delegated_subnet_id: str, restore: DatabaseRestore | None = None) -> str:
    """The server's name, which is also its public DNS label `<name>.postgres.database.azure.com` (unique in Azure).

    A digest of the subnet (subscription, group, VNet) keeps stacks of the same name apart; a restore gets a new
    name, derived from what it restores, so setting `vault.database.restore` creates a new server next to the old.
    """
    suffix = "-" + hashlib.sha256(delegated_subnet_id.lower().encode()).hexdigest()[:8]
    if restore is not None:
        origin = f"{restore.source_server_id.lower()}@{point_in_time(restore)}"
        suffix += "-r" + hashlib.sha256(origin.encode()).hexdigest()[:6]
    return f"cv-{_slug(stack, _NAME_MAX - len(suffix) - 3)}{suffix}"


def connection_url(password: str, host: str, ca_file: str | None = None) -> str:
    """The URL OpenBao's `storage "postgresql"` takes (`connection_url` or `BAO_PG_CONNECTION_URL`): TLS verified."""
    query: dict[str, str] = {"sslmode": "verify-full"}
    if ca_file is not None:
        query["sslrootcert"] = ca_file
    credentials = f"{LOGIN}:{urllib.parse.quote(password, safe='')}"
    return f"postgres://{credentials}@{host}:{PORT}/{DATABASE_NAME}?{urllib.parse.urlencode(query)}"


class SecretStoreDatabase(pulumi.ComponentResource):
    """A PostgreSQL flexible server with VNet integration (no public endpoint), TLS enforced, for OpenBao's storage.

    OpenBao creates its tables (`openbao_kv_store`, and `openbao_ha_locks` with `ha_enabled`) on first start.
    """

    connection_url: pulumi.Output[str]
    """Secret: `postgres://openbao:<password>@<host>:5432/openbao?sslmode=verify-full…`, for a Kubernetes Secret."""
    password: pulumi.Output[str] | None
    """Secret: the login's password alone (e.g. for `PGPASSWORD`); None for an existing server."""
    host: pulumi.Output[str] | None
    """The server's FQDN (private address inside the VNet); None for an existing server."""
    database_name: str | None
    login: str | None
    server_id: pulumi.Output[str] | None
    """Resource ID of the server: the source of a point-in-time restore."""
    release_dependencies: list[pulumi.Resource]
    """What the OpenBao release must wait for: the server, its database, its name resolution and TLS settings."""

    def __init__(self, name: str, args: SecretStoreDatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("confidential-vault:database:SecretStoreDatabase", name, None, opts)
        if args.plan is None or args.placement is None:
            if args.connection_url is None:
                raise ValueError("SecretStoreDatabase needs a plan and a placement, or an existing connection URL")
            self.connection_url = pulumi.Output.secret(args.connection_url.get_secret_value())
            self.password = self.host = self.server_id = None
            self.database_name = self.login = None
            self.release_dependencies = []
            self.register_outputs({"connectionUrl": self.connection_url})
            return

        plan, placement = args.plan, args.placement
        tags = dict(placement.tags)
        # The server's name resolves to its private address through this zone; only VNets linked to it resolve it.
        zone = privatedns.PrivateZone(
            "private-dns-zone",
            private_zone_name=f"cv-{_slug(args.stack, _NAME_MAX - 3)}.{_ZONE_SUFFIX}",
            resource_group_name=placement.resource_group_name,
            location="global",
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Azure no longer checks the link when it creates the server: without it the cluster cannot resolve the name.
        link = privatedns.VirtualNetworkLink(
            "private-dns-link",
            virtual_network_link_name=f"vnet-{_slug(args.stack, 70)}",
            private_zone_name=zone.name,
            resource_group_name=placement.resource_group_name,
            location="global",
            virtual_network=privatedns.SubResourceArgs(id=placement.virtual_network_id),
            registration_enabled=False,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # Letters and digits only (nothing to escape in a URL); one of each class, as Azure's password rules want.
        generated = random.RandomPassword(
            "database-password",
            length=32,
            special=False,
            min_upper=1,
            min_lower=1,
            min_numeric=1,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.password = pulumi.Output.secret(generated.result)
        restore = plan.restore
        restore_inputs: dict[str, Any] = (
            {
                "create_mode": dbforpostgresql.CreateMode.POINT_IN_TIME_RESTORE,
                "source_server_resource_id": restore.source_server_id,
                "point_in_time_utc": point_in_time(restore),
            }
            if restore is not None
            else {}
        )
        data_protection = pulumi.ResourceOptions(
            parent=self,
            protect=args.protect,
            # On prod a replaced or destroyed server stays in Azure (with its backups) until someone deletes it:
            # a restore never deletes the server it restored from.
            retain_on_delete=args.protect,
        )
        server = dbforpostgresql.Server(
            "server",
            server_name=pulumi.Output.from_input(placement.delegated_subnet_id).apply(
                lambda subnet_id: server_name(args.stack, subnet_id, restore)
            ),
            resource_group_name=placement.resource_group_name,
            location=placement.location,
            version=POSTGRES_VERSION,
            sku=dbforpostgresql.SkuArgs(name=plan.sku, tier=plan.tier),
            storage=dbforpostgresql.StorageArgs(
                storage_size_gb=plan.storage_size_gb, auto_grow=dbforpostgresql.StorageAutoGrow.DISABLED
            ),
            backup=dbforpostgresql.BackupArgs(
                backup_retention_days=plan.backup_retention_days,
                geo_redundant_backup=(
                    dbforpostgresql.GeographicallyRedundantBackup.ENABLED
                    if plan.geo_redundant_backup
                    else dbforpostgresql.GeographicallyRedundantBackup.DISABLED
                ),
            ),
            high_availability=dbforpostgresql.HighAvailabilityArgs(
                mode=(
                    dbforpostgresql.PostgreSqlFlexibleServerHighAvailabilityMode.ZONE_REDUNDANT
                    if plan.high_availability
                    else dbforpostgresql.PostgreSqlFlexibleServerHighAvailabilityMode.DISABLED
                )
            ),
            network=dbforpostgresql.NetworkArgs(
                delegated_subnet_resource_id=placement.delegated_subnet_id,
                private_dns_zone_arm_resource_id=zone.id,
                public_network_access=dbforpostgresql.ServerPublicNetworkAccessState.DISABLED,
            ),
            # Password logins only: Entra tokens would need a refresh inside OpenBao's driver, which it lacks.
            auth_config=dbforpostgresql.AuthConfigArgs(
                active_directory_auth=dbforpostgresql.MicrosoftEntraAuth.DISABLED,
                password_auth=dbforpostgresql.PasswordBasedAuth.ENABLED,
            ),
            administrator_login=LOGIN,
            administrator_login_password=self.password,
            tags=tags,
            **restore_inputs,
            opts=pulumi.ResourceOptions.merge(
                data_protection,
                pulumi.ResourceOptions(
                    depends_on=[link],
                    # Azure picks the zones and swaps primary and standby on a failover.
                    ignore_changes=["availabilityZone", "highAvailability.standbyAvailabilityZone"],
                ),
            ),
        )
        release_dependencies: list[pulumi.Resource] = [link, server]
        # A restored server brings its database along; creating it again would fail (it exists).
        previous: pulumi.Resource = server
        if restore is None:
            database = dbforpostgresql.Database(
                "database",
                database_name=DATABASE_NAME,
                server_name=server.name,
                resource_group_name=placement.resource_group_name,
                charset="UTF8",
                collation="en_US.utf8",
                opts=data_protection,
            )
            release_dependencies.append(database)
            previous = database
        # Parameters change one at a time: Azure refuses a second operation on a server while one runs. A restored
        # server does not inherit them, so they are applied to every server the program creates.
        for parameter, value in SERVER_PARAMETERS.items():
            previous = dbforpostgresql.Configuration(
                parameter.replace("_", "-"),
                configuration_name=parameter,
                server_name=server.name,
                resource_group_name=placement.resource_group_name,
                value=value,
                source="user-override",
                opts=pulumi.ResourceOptions(parent=self, depends_on=[previous]),
            )
            release_dependencies.append(previous)

        self.host = server.fully_qualified_domain_name.apply(lambda fqdn: fqdn or "")
        self.database_name = DATABASE_NAME
        self.login = LOGIN
        self.server_id = server.id
        ca_file = args.ca_file
        self.connection_url = pulumi.Output.secret(
            pulumi.Output.all(self.password, self.host).apply(lambda parts: connection_url(parts[0], parts[1], ca_file))
        )
        self.release_dependencies = release_dependencies
        self.register_outputs(
            {
                "host": self.host,
                "databaseName": self.database_name,
                "login": self.login,
                "serverId": self.server_id,
                "connectionUrl": self.connection_url,
            }
        )
