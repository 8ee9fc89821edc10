"""The Kubernetes cluster the platform runs on: AKS with an SGX node pool, or an existing cluster."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import authorization, containerservice, resources

from components.config import ClusterSettings
from components.network import ClusterNetwork, NetworkArgs

SYSTEM_POOL_NAME = "system"
SGX_POOL_NAME = "sgx"
# Node label that marks the SGX pool; workloads that need enclaves select on it.
SGX_POOL_LABEL = "confidential-vault/pool"
# Azure built-in role "AcrPull".
ACR_PULL_ROLE = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
# Azure built-in role "Network Contributor": what AKS documents for its identity on a subnet it does not own.
NETWORK_CONTRIBUTOR_ROLE = "4d97b98b-1d4f-4787-a291-c67834d212e7"


@dataclass(frozen=True)
class ClusterArgs:
    """Inputs of `ConfidentialCluster`."""

    settings: ClusterSettings
    environment: str
    stack: str
    owner: str | None = None
    expires_at: datetime | None = None
    protect: bool = False
    own_network: bool = False
    """AKS: put the node pools into a VNet of the program's (`network`), where private services such as the
    secret store's database are reachable; otherwise AKS creates a VNet of its own. A cluster cannot move between
    the two: an existing one is rebuilt (README "Storage: PostgreSQL", upgrade note)."""


def azure_tags(args: ClusterArgs) -> dict[str, str]:
    """Tags for every Azure resource of the stack: who owns it, what it is, and when it may go."""
    tags = {**args.settings.tags, "environment": args.environment, "stack": args.stack}
    if args.owner:
        tags["owner"] = args.owner
    if args.expires_at is not None:
        tags["expires-at"] = args.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return tags


def _kubelet_object_id(profiles: Mapping[str, Any] | None) -> str:
    kubelet = (profiles or {}).get("kubeletidentity")
    return (kubelet.object_id if kubelet is not None else None) or ""


class ConfidentialCluster(pulumi.ComponentResource):
    """An AKS cluster with the confcom SGX add-on and a DC-series User pool, plus its Kubernetes provider.

    With `provider: existing` no Azure resource is created: the provider points at the given kubeconfig.
    """

    provider: k8s.Provider
    kubeconfig: pulumi.Output[str]
    sgx_pool: containerservice.AgentPool | None
    """The SGX node pool; enclave workloads depend on it so they never wait on a pool that does not exist."""
    sgx_node_selector: dict[str, str] | None
    """Node selector for pods that need SGX; None on existing clusters, whose labels we do not know."""
    cluster_name: pulumi.Output[str] | None
    resource_group_name: pulumi.Output[str] | None
    node_resource_group: pulumi.Output[str] | None
    location: pulumi.Output[str] | None
    image_pull_access: list[authorization.RoleAssignment]
    """AcrPull grants of the kubelet identity on `cluster.acrPullRegistryIds`; pods of private images wait for them."""
    identity_principal_id: pulumi.Output[str] | None
    """Principal id of the cluster's managed identity (for role assignments on resources outside the node group)."""
    azure_tags: dict[str, str]
    """Tags every Azure resource of the stack carries (empty on existing clusters)."""
    network: ClusterNetwork | None
    """The VNet the node pools are in, with the database subnet (`own_network`); None when AKS manages the VNet."""
    oidc_issuer_url: pulumi.Output[str] | None
    """The AKS OIDC issuer, which workload identity's federated credentials trust; None on existing clusters."""

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("confidential-vault:cluster:ConfidentialCluster", name, None, opts)
        settings = args.settings

        if settings.provider == "existing":
            self.sgx_pool = None
            self.sgx_node_selector = None
            self.cluster_name = self.resource_group_name = self.node_resource_group = self.location = None
            self.identity_principal_id = None
            self.image_pull_access = []
            self.azure_tags = {}
            self.network = None
            self.oidc_issuer_url = None
            self.kubeconfig = (
                pulumi.Output.secret(settings.kubeconfig.get_secret_value())
                if settings.kubeconfig is not None
                else pulumi.Output.from_input(settings.kubeconfig_path or "")
            )
            self.provider = k8s.Provider(
                "kubernetes",
                kubeconfig=self.kubeconfig,
                context=settings.kubeconfig_context,
                cluster_identifier=f"existing:{settings.kubeconfig_context or 'current-context'}",
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.register_outputs({})
            return

        tags = self.azure_tags = azure_tags(args)
        resource_group = resources.ResourceGroup(
            "resource-group",
            resource_group_name=settings.resource_group_name or f"cv-{args.stack}",
            location=settings.location,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.network = (
            ClusterNetwork(
                "network",
                NetworkArgs(
                    resource_group_name=resource_group.name,
                    location=resource_group.location,
                    stack=args.stack,
                    tags=tags,
                ),
                opts=pulumi.ResourceOptions(parent=self),
            )
            if args.own_network
            else None
        )
        node_subnet_id = self.network.node_subnet_id if self.network is not None else None

        managed_cluster = containerservice.ManagedCluster(
            "aks",
            resource_name_=f"aks-{args.stack}",
            resource_group_name=resource_group.name,
            location=resource_group.location,
            dns_prefix=f"cv-{args.stack}",
            kubernetes_version=settings.kubernetes_version,
            identity=containerservice.ManagedClusterIdentityArgs(
                type=containerservice.ResourceIdentityType.SYSTEM_ASSIGNED
            ),
            enable_rbac=True,
            agent_pool_profiles=[
                containerservice.ManagedClusterAgentPoolProfileArgs(
                    name=SYSTEM_POOL_NAME,
                    mode=containerservice.AgentPoolMode.SYSTEM,
                    vm_size=settings.system_pool.vm_size,
                    count=settings.system_pool.count,
                    os_type=containerservice.OSType.LINUX,
                    os_sku=containerservice.OSSKU.UBUNTU,
                    type=containerservice.AgentPoolType.VIRTUAL_MACHINE_SCALE_SETS,
                    orchestrator_version=settings.kubernetes_version,
                    node_labels={SGX_POOL_LABEL: SYSTEM_POOL_NAME},
                    vnet_subnet_id=node_subnet_id,
                    tags=tags,
                )
            ],
            network_profile=containerservice.ContainerServiceNetworkProfileArgs(
                network_plugin=containerservice.NetworkPlugin.AZURE,
                network_plugin_mode=containerservice.NetworkPluginMode.OVERLAY,
                network_dataplane=containerservice.NetworkDataplane.CILIUM,
                network_policy=containerservice.NetworkPolicy.CILIUM,
                load_balancer_sku=containerservice.LoadBalancerSku.STANDARD,
            ),
            oidc_issuer_profile=containerservice.ManagedClusterOIDCIssuerProfileArgs(enabled=True),
            security_profile=containerservice.ManagedClusterSecurityProfileArgs(
                workload_identity=containerservice.ManagedClusterSecurityProfileWorkloadIdentityArgs(enabled=True),
            ),
            auto_upgrade_profile=containerservice.ManagedClusterAutoUpgradeProfileArgs(
                upgrade_channel=containerservice.UpgradeChannel.PATCH,
                node_os_upgrade_channel=containerservice.NodeOSUpgradeChannel.NODE_IMAGE,
            ),
            api_server_access_profile=(
                containerservice.ManagedClusterAPIServerAccessProfileArgs(
                    authorized_ip_ranges=settings.authorized_ip_ranges
                )
                if settings.authorized_ip_ranges
                else None
            ),
            addon_profiles={
                "ACCSGXDevicePlugin": containerservice.ManagedClusterAddonProfileArgs(
                    enabled=True,
                    config={"ACCSGXQuoteHelperEnabled": "true" if settings.sgx_quote_helper else "false"},
                )
            },
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args.protect,
                # The SGX pool is a separate AgentPool; the API would otherwise report it as drift here
                # and reject updates that list pools differently from the cluster's current set.
                ignore_changes=["agentPoolProfiles"],
            ),
        )

        sgx = settings.sgx_pool
        self.sgx_pool = containerservice.AgentPool(
            "sgx-pool",
            agent_pool_name=SGX_POOL_NAME,
            resource_group_name=resource_group.name,
            resource_name_=managed_cluster.name,
            mode=containerservice.AgentPoolMode.USER,
            vm_size=sgx.vm_size,
            count=sgx.count,
            enable_auto_scaling=sgx.autoscaling,
            min_count=sgx.min_count,
            max_count=sgx.max_count,
            os_type=containerservice.OSType.LINUX,
            os_sku=containerservice.OSSKU.UBUNTU,
            type=containerservice.AgentPoolType.VIRTUAL_MACHINE_SCALE_SETS,
            orchestrator_version=settings.kubernetes_version,
            node_labels={SGX_POOL_LABEL: SGX_POOL_NAME},
            vnet_subnet_id=node_subnet_id,
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args.protect,
                # The cluster autoscaler owns the node count once autoscaling is on.
                ignore_changes=["count"] if sgx.autoscaling else None,
            ),
        )
        self.sgx_node_selector = {SGX_POOL_LABEL: SGX_POOL_NAME}

        credentials = containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=resource_group.name,
            resource_name=managed_cluster.name,
        )
        self.kubeconfig = pulumi.Output.secret(
            credentials.kubeconfigs.apply(lambda kubeconfigs: base64.b64decode(kubeconfigs[0].value).decode())
        )
        self.provider = k8s.Provider(
            "kubernetes",
            kubeconfig=self.kubeconfig,
            # Credentials rotate; only a new cluster should replace the Kubernetes resources.
            cluster_identifier=managed_cluster.id,
            opts=pulumi.ResourceOptions(parent=self),
        )

        # Nodes pull images with the kubelet identity, which exists only once the cluster does: the program
        # grants it, so a private registry works on the first `pulumi up`.
        kubelet_object_id = managed_cluster.identity_profile.apply(_kubelet_object_id)
        self.image_pull_access = [
            authorization.RoleAssignment(
                f"acr-pull-{registry_id.rstrip('/').split('/')[-1].lower()}",
                principal_id=kubelet_object_id,
                principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
                role_definition_id=(
                    f"/subscriptions/{registry_id.split('/')[2]}/providers/Microsoft.Authorization/"
                    f"roleDefinitions/{ACR_PULL_ROLE}"
                ),
                scope=registry_id,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for registry_id in settings.acr_pull_registry_ids
        ]

        self.cluster_name = managed_cluster.name
        self.resource_group_name = resource_group.name
        self.node_resource_group = managed_cluster.node_resource_group.apply(lambda group: group or "")
        self.location = resource_group.location
        self.oidc_issuer_url = managed_cluster.oidc_issuer_profile.apply(
            lambda profile: (profile.issuer_url if profile is not None else None) or ""
        )
        self.identity_principal_id = managed_cluster.identity.apply(
            lambda identity: identity.principal_id if identity is not None else ""
        )
        if node_subnet_id is not None:
            # The cloud provider joins load balancer backends to the nodes' NICs in a subnet AKS does not own: AKS
            # documents Network Contributor on it for the cluster identity (the Azure CLI would grant it, ARM does not).
            authorization.RoleAssignment(
                "aks-subnet-network-contributor",
                principal_id=self.identity_principal_id,
                principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
                role_definition_id=node_subnet_id.apply(
                    lambda subnet_id: (
                        f"/subscriptions/{subnet_id.split('/')[2]}/providers/Microsoft.Authorization/"
                        f"roleDefinitions/{NETWORK_CONTRIBUTOR_ROLE}"
                    )
                ),
                scope=node_subnet_id,
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.register_outputs(
            {
                "clusterName": self.cluster_name,
                "resourceGroupName": self.resource_group_name,
                "nodeResourceGroup": self.node_resource_group,
                "kubeconfig": self.kubeconfig,
            }
        )
