"""The ConfidentialCluster component, as the real program registers it."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from components import network
from components.cluster import ClusterArgs, ConfidentialCluster
from components.config import ClusterSettings
from harness import (
    FAKE_KUBECONFIG,
    FAKE_KUBELET_OBJECT_ID,
    FAKE_PRINCIPAL_ID,
    FAKE_SUBSCRIPTION_ID,
    ProgramRun,
    is_secret,
    run_function,
    run_program,
    with_overrides,
)

CLUSTER = "azure-native:containerservice:ManagedCluster"
AGENT_POOL = "azure-native:containerservice:AgentPool"
RESOURCE_GROUP = "azure-native:resources:ResourceGroup"
K8S_PROVIDER = "pulumi:providers:kubernetes"
COMPONENT = "confidential-vault:cluster:ConfidentialCluster"


@pytest.fixture(scope="module")
def dev_run(stack_runs: dict[str, ProgramRun]) -> ProgramRun:
    return stack_runs["dev"]


def test_sgx_add_on_with_exact_key_casing(dev_run: ProgramRun) -> None:
    addons = dev_run.one(CLUSTER).inputs["addonProfiles"]
    assert set(addons) == {"ACCSGXDevicePlugin"}
    assert addons["ACCSGXDevicePlugin"] == {"enabled": True, "config": {"ACCSGXQuoteHelperEnabled": "false"}}


def test_quote_helper_follows_config(dev_config: dict[str, Any]) -> None:
    run = run_program(with_overrides(dev_config, {"cluster.sgxQuoteHelper": True}))
    config = run.one(CLUSTER).inputs["addonProfiles"]["ACCSGXDevicePlugin"]["config"]
    assert config == {"ACCSGXQuoteHelperEnabled": "true"}


def test_system_pool_is_inline_general_purpose_and_only_pool(dev_run: ProgramRun) -> None:
    profiles = dev_run.one(CLUSTER).inputs["agentPoolProfiles"]
    assert len(profiles) == 1
    system = profiles[0]
    assert system["mode"] == "System"
    assert system["name"] == "system"
    assert system["vmSize"] == "Standard_D2s_v5"
    assert system["count"] == 1
    assert not system["vmSize"].startswith("Standard_DC")


def test_sgx_pool_is_a_separate_user_agent_pool(dev_run: ProgramRun) -> None:
    pool = dev_run.one(AGENT_POOL)
    cluster = dev_run.one(CLUSTER)
    assert pool.inputs["mode"] == "User"
    assert pool.inputs["vmSize"] == "Standard_DC2s_v3"
    assert pool.inputs["enableAutoScaling"] is True
    assert (pool.inputs["count"], pool.inputs["minCount"], pool.inputs["maxCount"]) == (1, 1, 2)
    assert pool.inputs["nodeLabels"] == {"confidential-vault/pool": "sgx"}
    assert pool.inputs["resourceName"] == "aks-dev"
    assert dev_run.depends_on(pool, cluster)
    # The inline list would report the separate pool as drift: the cluster ignores it.
    assert cluster.ignore_changes == ["agentPoolProfiles"]
    # The autoscaler owns the count.
    assert pool.ignore_changes == ["count"]


def test_fixed_size_sgx_pool_has_no_autoscaler(dev_config: dict[str, Any]) -> None:
    run = run_program(
        with_overrides(dev_config, {"cluster.sgxPool": {"vmSize": "Standard_DC4s_v3", "count": 3}}),
    )
    pool = run.one(AGENT_POOL)
    assert pool.inputs["enableAutoScaling"] is False
    assert "minCount" not in pool.inputs
    assert pool.inputs["count"] == 3
    assert pool.ignore_changes == []


def test_identity_network_and_security_profile(dev_run: ProgramRun) -> None:
    inputs = dev_run.one(CLUSTER).inputs
    assert inputs["identity"] == {"type": "SystemAssigned"}
    assert inputs["enableRBAC"] is True
    network = inputs["networkProfile"]
    assert network["networkPlugin"] == "azure"
    assert network["networkPolicy"] == "cilium"
    assert inputs["oidcIssuerProfile"] == {"enabled": True}
    assert inputs["securityProfile"] == {"workloadIdentity": {"enabled": True}}
    assert inputs["autoUpgradeProfile"] == {"upgradeChannel": "patch", "nodeOSUpgradeChannel": "NodeImage"}
    assert "apiServerAccessProfile" not in inputs


def test_authorized_ip_ranges(dev_config: dict[str, Any]) -> None:
    run = run_program(with_overrides(dev_config, {"cluster.authorizedIpRanges": ["198.51.100.0/24"]}))
    assert run.one(CLUSTER).inputs["apiServerAccessProfile"] == {"authorizedIPRanges": ["198.51.100.0/24"]}


def test_tags_on_every_azure_resource(dev_config: dict[str, Any]) -> None:
    run = run_program(with_overrides(dev_config, {"cluster.tags": {"cost-center": "42"}}), stack="dev")
    expected = {"environment": "dev", "stack": "dev", "owner": "platform-team", "cost-center": "42"}
    component = run.one(COMPONENT)
    # Role assignments are not taggable in Azure.
    azure = [
        r
        for r in run.registrations
        if r.type.startswith("azure-native:") and r.parent == component.urn and "RoleAssignment" not in r.type
    ]
    assert {r.type for r in azure} == {RESOURCE_GROUP, CLUSTER, AGENT_POOL}
    for resource in azure:
        assert resource.inputs["tags"] == expected, resource.name


def test_ephemeral_stack_tags_expiry(dev_config: dict[str, Any]) -> None:
    config = with_overrides(dev_config, {"environment": "ephemeral", "expiresAt": "2099-11-24T01:30:00+01:00"})
    run = run_program(config, stack="pr-17")
    tags = run.one(CLUSTER).inputs["tags"]
    assert tags["expires-at"] == "2099-11-24T00:30:00Z"
    assert tags["environment"] == "ephemeral"
    assert tags["stack"] == "pr-17"


def test_resource_group_and_cluster_names_derive_from_the_stack(dev_run: ProgramRun) -> None:
    assert dev_run.one(RESOURCE_GROUP).inputs["resourceGroupName"] == "cv-dev"
    assert dev_run.one(RESOURCE_GROUP).inputs["location"] == "westeurope"
    assert dev_run.one(CLUSTER).inputs["resourceName"] == "aks-dev"
    assert dev_run.one(CLUSTER).inputs["dnsPrefix"] == "cv-dev"


def test_kubeconfig_is_decoded_and_secret(dev_run: ProgramRun) -> None:
    exported = dev_run.raw_outputs["kubeconfig"]
    assert is_secret(exported)
    assert exported["value"] == FAKE_KUBECONFIG
    assert base64.b64encode(FAKE_KUBECONFIG.encode()).decode() not in str(dev_run.raw_outputs)


def test_kubernetes_provider_uses_secret_kubeconfig_and_cluster_identifier(dev_run: ProgramRun) -> None:
    provider = dev_run.one(K8S_PROVIDER)
    assert is_secret(provider.raw_inputs["kubeconfig"])
    assert provider.inputs["kubeconfig"] == FAKE_KUBECONFIG
    cluster_id = provider.inputs["clusterIdentifier"]
    assert cluster_id.endswith("/ManagedCluster/aks-dev")
    assert dev_run.depends_on(provider, dev_run.one(CLUSTER))


def test_children_are_parented_to_the_component(dev_run: ProgramRun) -> None:
    component = dev_run.one(COMPONENT)
    for type_ in (RESOURCE_GROUP, CLUSTER, AGENT_POOL, K8S_PROVIDER):
        assert dev_run.one(type_).parent == component.urn, type_


def test_prod_protects_cluster_and_sgx_pool(stack_runs: dict[str, ProgramRun]) -> None:
    prod = stack_runs["prod"]
    assert prod.one(CLUSTER).protect
    assert prod.one(AGENT_POOL).protect
    dev = stack_runs["dev"]
    assert not dev.one(CLUSTER).protect
    assert not dev.one(AGENT_POOL).protect


def test_existing_cluster_registers_no_azure_resource(dev_config: dict[str, Any]) -> None:
    config = with_overrides(
        dev_config,
        {
            "cluster": {
                "provider": "existing",
                "kubeconfigPath": "/home/ops/.kube/config",
                "kubeconfigContext": "kind",
            },
            "vault.attestation.providerUrl": "https://sharedweu.weu.attest.azure.net",
        },
    )
    run = run_program(config)
    assert not [r for r in run.registrations if r.type.startswith("azure-native:")]
    provider = run.one(K8S_PROVIDER)
    assert provider.inputs["kubeconfig"] == "/home/ops/.kube/config"
    assert provider.inputs["context"] == "kind"
    assert "clusterName" not in run.outputs


def test_existing_cluster_kubeconfig_content_stays_secret(dev_config: dict[str, Any]) -> None:
    config = with_overrides(
        dev_config,
        {
            "cluster": {"provider": "existing", "kubeconfig": "secret-kubeconfig-text"},
            "vault.attestation.providerUrl": "https://sharedweu.weu.attest.azure.net",
        },
    )
    run = run_program(config, secret_keys=["confidential-vault:cluster"])
    provider = run.one(K8S_PROVIDER)
    assert is_secret(provider.raw_inputs["kubeconfig"])
    assert is_secret(run.raw_outputs["kubeconfig"])


REGISTRY_ID = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/images/providers/"
    "Microsoft.ContainerRegistry/registries/cvRegistry"
)


def test_nodes_may_pull_from_configured_registries(dev_config: dict[str, Any]) -> None:
    run = run_program(with_overrides(dev_config, {"cluster.acrPullRegistryIds": [REGISTRY_ID]}))
    grant = run.one("azure-native:authorization:RoleAssignment", "acr-pull-cvregistry")
    assert grant.inputs["scope"] == REGISTRY_ID
    assert grant.inputs["principalId"] == FAKE_KUBELET_OBJECT_ID
    assert grant.inputs["principalType"] == "ServicePrincipal"
    assert grant.inputs["roleDefinitionId"] == (
        "/subscriptions/11111111-1111-1111-1111-111111111111/providers/Microsoft.Authorization/roleDefinitions/"
        "7f951dda-4ed3-4680-a7ca-43fe172d538d"
    )
    assert grant.parent == run.one(COMPONENT).urn
    assert run.depends_on(grant, run.one(CLUSTER))
    vault_release = next(r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.name == "openbao")
    assert run.depends_on(vault_release, grant)


def test_no_registry_no_grant(dev_config: dict[str, Any]) -> None:
    run = run_program(with_overrides(dev_config, {"cluster.acrPullRegistryIds": None}))
    component = run.one(COMPONENT).urn
    grants = [r for r in run.of_type("azure-native:authorization:RoleAssignment") if r.parent == component]
    # What remains is the subnet grant of the stack's own network (with the database), never an AcrPull.
    assert [grant.name for grant in grants if grant.name != "aks-subnet-network-contributor"] == []


# --- the program's own network (vault.storage postgresql on AKS) ------------------------------------------------

NODE_SUBNET_ID = (
    f"/subscriptions/{FAKE_SUBSCRIPTION_ID}/resourceGroups/cv-dev/providers/Microsoft.Network/virtualNetworks/"
    "vnet-dev/subnets/nodes"
)


def _cluster_run(own_network: bool) -> ProgramRun:
    def program() -> None:
        ConfidentialCluster(
            "cluster",
            ClusterArgs(settings=ClusterSettings(), environment="dev", stack="dev", own_network=own_network),
        )

    return run_function(program)


@pytest.fixture(scope="module")
def own_network_run() -> ProgramRun:
    return _cluster_run(own_network=True)


def test_both_node_pools_join_the_programs_node_subnet(own_network_run: ProgramRun) -> None:
    run = own_network_run
    (system,) = run.one(CLUSTER).inputs["agentPoolProfiles"]
    assert system["vnetSubnetID"] == NODE_SUBNET_ID
    assert run.one(AGENT_POOL).inputs["vnetSubnetID"] == NODE_SUBNET_ID
    vnet = run.one("azure-native:network:VirtualNetwork")
    assert run.depends_on(run.one(CLUSTER), vnet)
    assert run.depends_on(run.one(AGENT_POOL), vnet)


def test_the_clusters_own_ranges_are_those_the_vnet_is_laid_out_around(own_network_run: ProgramRun) -> None:
    # Overlay takes pod IPs outside the VNet; network.py's plan (checked for overlaps in test_network.py) assumes
    # these ranges, which the SDK sends by default: a change of that default must show up here.
    profile = own_network_run.one(CLUSTER).inputs["networkProfile"]
    assert profile["networkPluginMode"] == "overlay"
    assert (profile["podCidr"], profile["serviceCidr"], profile["dnsServiceIP"]) == (
        network.POD_CIDR,
        network.SERVICE_CIDR,
        network.DNS_SERVICE_IP,
    )


def test_cluster_identity_may_use_the_node_subnet(own_network_run: ProgramRun) -> None:
    run = own_network_run
    grant = run.one("azure-native:authorization:RoleAssignment", "aks-subnet-network-contributor")
    assert grant.inputs["scope"] == NODE_SUBNET_ID
    assert grant.inputs["principalId"] == FAKE_PRINCIPAL_ID
    assert grant.inputs["principalType"] == "ServicePrincipal"
    assert grant.inputs["roleDefinitionId"] == (
        f"/subscriptions/{FAKE_SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/"
        "4d97b98b-1d4f-4787-a291-c67834d212e7"
    )
    assert run.depends_on(grant, run.one(CLUSTER))


def test_network_is_a_child_of_the_cluster_in_its_resource_group(own_network_run: ProgramRun) -> None:
    run = own_network_run
    network = run.one("confidential-vault:network:ClusterNetwork")
    assert network.parent == run.one(COMPONENT).urn
    vnet = run.one("azure-native:network:VirtualNetwork")
    assert vnet.inputs["resourceGroupName"] == "cv-dev"
    assert run.depends_on(vnet, run.one(RESOURCE_GROUP))
    assert vnet.inputs["tags"] == {"environment": "dev", "stack": "dev"}


def test_without_own_network_aks_keeps_its_managed_vnet() -> None:
    run = _cluster_run(own_network=False)
    assert not run.of_type("azure-native:network:VirtualNetwork")
    (system,) = run.one(CLUSTER).inputs["agentPoolProfiles"]
    assert "vnetSubnetID" not in system
    assert "vnetSubnetID" not in run.one(AGENT_POOL).inputs
    assert not run.of_type("azure-native:authorization:RoleAssignment")
