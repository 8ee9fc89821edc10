"""confidential-vault: HashiCorp Vault in Intel SGX enclaves on AKS, with everything around it.

settings → cluster → edge (Traefik) → monitoring, Argo CD, Vault (in parallel) → exports
"""

import pulumi

from components.argocd import ArgoCd, ArgoCdArgs
from components.cluster import ClusterArgs, ConfidentialCluster
from components.config import load_stack_settings
from components.edge import Edge, EdgeArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.vault import EgoVault, VaultArgs

settings = load_stack_settings()
stack = pulumi.get_stack()

cluster = ConfidentialCluster(
    "cluster",
    ClusterArgs(
        settings=settings.cluster,
        environment=settings.environment,
        stack=stack,
        owner=settings.owner,
        expires_at=settings.expires_at,
        protect=settings.protected,
    ),
)

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

vault = EgoVault(
    "vault",
    VaultArgs(
        settings=settings.vault,
        host=settings.host("vault"),
        provider=cluster.provider,
        routing=edge.routing,
        sgx_pool=cluster.sgx_pool,
        sgx_node_selector=cluster.sgx_node_selector,
        monitoring_crds=monitoring.crds if monitoring is not None else None,
        image_pull_access=cluster.image_pull_access,
        protect=settings.protected,
    ),
)

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
if argocd is not None:
    pulumi.export("argocdUrl", argocd.url)
    pulumi.export("argocdAdminUser", argocd.admin_user)
    pulumi.export("argocdAdminPassword", argocd.admin_password)
pulumi.export("vaultUrl", vault.url)
pulumi.export("vaultMode", vault.mode)
pulumi.export("vaultEnclave", {"uniqueId": vault.enclave_unique_id, "signerId": vault.enclave_signer_id})
if vault.dev_root_token is not None:
    pulumi.export("vaultDevRootToken", vault.dev_root_token)
