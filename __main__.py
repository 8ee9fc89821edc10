"""confidential-vault: a secret store (OpenBao, the MPL fork of HashiCorp Vault) in Intel SGX enclaves on AKS.

settings → cluster → database (PostgreSQL storage) → edge (Traefik) → monitoring, Argo CD, seal key (attested
unseal), secret store → exports
"""

import pulumi

from components.argocd import ArgoCd, ArgoCdArgs
from components.azure_api import warn_about_retiring_api_versions
from components.cluster import ClusterArgs, ConfidentialCluster
from components.config import load_stack_settings
from components.config.database import creates_database, openbao_replicas, storage_kind
from components.config.vault import attestation_provider_url
from components.database import SecretStoreDatabase, SecretStoreDatabaseArgs
from components.edge import Edge, EdgeArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.openbao import NAMESPACE as VAULT_NAMESPACE
from components.openbao import SERVICE_ACCOUNT_NAME as VAULT_SERVICE_ACCOUNT
from components.openbao import OpenBao, OpenBaoArgs, PostgresStorage, unpinned_store_warning
from components.release_policy import expected_enclave
from components.seal import AttestedSeal, AttestedSealArgs

settings = load_stack_settings()
stack = pulumi.get_stack()
# Azure API versions this program calls that Microsoft retires within 120 days (azure-api-lifecycle.yaml): a warning,
# so the deploy that still works says so before the one that would not.
if settings.cluster.provider == "aks":
    warn_about_retiring_api_versions()

cluster = ConfidentialCluster(
    "cluster",
    ClusterArgs(
        settings=settings.cluster,
        environment=settings.environment,
        stack=stack,
        owner=settings.owner,
        expires_at=settings.expires_at,
        protect=settings.protected,
        own_network=creates_database(settings),
    ),
)

database = None
if storage_kind(settings) == "postgresql":
    database = SecretStoreDatabase("database", SecretStoreDatabaseArgs.from_settings(settings, cluster, stack))

edge = Edge("edge", EdgeArgs.from_settings(settings, cluster, stack))

monitoring = None
if settings.monitoring.enabled:
    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            settings=settings.monitoring,
            host=settings.host("grafana"),
            routing=edge.routing,
            provider=cluster.provider,
            vault_alerts=settings.vault.exposes_metrics,
        ),
    )
    edge.add_service_monitor(monitoring.crds)

argocd = None
if settings.argocd.enabled:
    argocd = ArgoCd(
        "argocd",
        ArgoCdArgs(
            settings=settings.argocd,
            host=settings.host("argocd"),
            routing=edge.routing,
            provider=cluster.provider,
        ),
    )

# Attested unseal: Key Vault releases the seal key only to the attested enclave (the config rules allow it on AKS
# only, where the cluster has a resource group and an OIDC issuer).
seal = None
if settings.vault.unseal.mode == "attested":
    assert cluster.resource_group_name is not None
    assert cluster.location is not None
    assert cluster.oidc_issuer_url is not None
    seal = AttestedSeal(
        "vault-seal",
        AttestedSealArgs(
            settings=settings.vault.unseal,
            enclave=expected_enclave(settings),
            stack=stack,
            resource_group_name=cluster.resource_group_name,
            location=cluster.location,
            oidc_issuer_url=cluster.oidc_issuer_url,
            service_account_namespace=VAULT_NAMESPACE,
            service_account_name=VAULT_SERVICE_ACCOUNT,
            tags=cluster.azure_tags,
            protect=settings.protected,
        ),
    )

secret_store = OpenBao(
    "vault",
    OpenBaoArgs(
        settings=settings.vault,
        host=settings.host("vault"),
        provider=cluster.provider,
        routing=edge.routing,
        attestation_provider=attestation_provider_url(settings),
        sgx_pool=cluster.sgx_pool,
        sgx_node_selector=cluster.sgx_node_selector,
        monitoring_crds=monitoring.crds if monitoring is not None else None,
        image_pull_access=cluster.image_pull_access,
        seal_access=seal.access if seal is not None else None,
        postgres=(
            PostgresStorage(database.connection_url, database.release_dependencies, openbao_replicas(settings))
            if database is not None
            else None
        ),
        protect=settings.protected,
    ),
)
# Clients refuse an initialised store the stack does not pin (scripts/verify.py): prod says so on every run.
if settings.environment == "prod" and settings.vault.cluster_id is None:
    pulumi.log.warn(unpinned_store_warning(stack), secret_store)

pulumi.export("environment", settings.environment)
pulumi.export("kubeconfig", cluster.kubeconfig)
if cluster.cluster_name is not None:
    pulumi.export("clusterName", cluster.cluster_name)
    pulumi.export("resourceGroupName", cluster.resource_group_name)
    pulumi.export("nodeResourceGroup", cluster.node_resource_group)
if edge.public_ip is not None:
    pulumi.export("publicIp", edge.public_ip)
pulumi.export("urls", edge.urls)
pulumi.export("dashboardUser", edge.dashboard_user)
if edge.dashboard_password_generated:
    pulumi.export("dashboardPassword", edge.dashboard_password)
if edge.dns_records is not None:
    pulumi.export("dnsRecords", edge.dns_records)
if monitoring is not None:
    pulumi.export("grafanaUrl", monitoring.grafana_url)
    pulumi.export("grafanaAdminUser", monitoring.grafana_admin_user)
    pulumi.export("grafanaAdminPassword", monitoring.grafana_admin_password)
    pulumi.export("alertDelivery", monitoring.alert_delivery)
if argocd is not None:
    pulumi.export("argocdUrl", argocd.url)
    pulumi.export("argocdAdminUser", argocd.admin_user)
    pulumi.export("argocdAdminPassword", argocd.admin_password)
# The secret store's outputs keep their wave-1 names (`vault*`): users script against them.
pulumi.export("vaultUrl", secret_store.url)
pulumi.export("vaultMode", secret_store.mode)
# What scripts/verify.py checks the endpoint against; `vaultTlsTermination` says whether there is anything to verify
# (`enclave`) or TLS ends at Traefik (`traefik`: the dev server, not confidential).
pulumi.export("vaultEnclave", secret_store.expected_enclave)
pulumi.export("vaultTlsTermination", secret_store.tls_termination)
if seal is not None:
    # What a reviewer and a client check about attested unseal: where the key lives, which version the enclave must
    # name (also `vaultEnclave.sealKeyId`), which identity may ask for it, and the release policy on the key.
    pulumi.export(
        "vaultSeal",
        {
            "keyVaultUrl": seal.vault_uri,
            "keyId": seal.key_id_with_version,
            "clientId": seal.client_id,
            "releasePolicy": seal.release_policy_json,
        },
    )
if secret_store.dev_root_token is not None:
    pulumi.export("vaultDevRootToken", secret_store.dev_root_token)
if database is not None and database.server_id is not None:
    pulumi.export("vaultDatabaseHost", database.host)
    pulumi.export("vaultDatabaseServerId", database.server_id)
