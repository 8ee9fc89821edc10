"""The ClusterNetwork component: the stack's VNet, its node subnet and the subnet delegated to PostgreSQL."""

from __future__ import annotations

import ipaddress

import pulumi
import pytest

from components import network
from components.network import ClusterNetwork, NetworkArgs
from harness import FAKE_SUBSCRIPTION_ID, ProgramRun, run_function

VNET = "azure-native:network:VirtualNetwork"
COMPONENT = "confidential-vault:network:ClusterNetwork"
TAGS = {"environment": "dev", "stack": "dev", "owner": "platform-team"}


def _network_program() -> None:
    created = ClusterNetwork(
        "network", NetworkArgs(resource_group_name="cv-dev", location="westeurope", stack="dev", tags=TAGS)
    )
    pulumi.export("virtualNetworkId", created.virtual_network_id)
    pulumi.export("nodeSubnetId", created.node_subnet_id)
    pulumi.export("databaseSubnetId", created.database_subnet_id)


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_function(_network_program)


def test_one_vnet_with_both_subnets_declared_inside_it(run: ProgramRun) -> None:
    vnet = run.one(VNET)
    assert vnet.inputs["virtualNetworkName"] == "vnet-dev"
    assert vnet.inputs["resourceGroupName"] == "cv-dev"
    assert vnet.inputs["location"] == "westeurope"
    assert vnet.inputs["addressSpace"] == {"addressPrefixes": ["10.224.0.0/16"]}
    assert vnet.inputs["tags"] == TAGS
    subnets = {subnet["name"]: subnet for subnet in vnet.inputs["subnets"]}
    assert set(subnets) == {"nodes", "postgres"}
    assert subnets["nodes"]["addressPrefix"] == "10.224.0.0/20"
    assert "delegations" not in subnets["nodes"]
    assert subnets["postgres"]["addressPrefix"] == "10.224.16.0/24"
    assert subnets["postgres"]["delegations"] == [
        {"name": "postgres", "serviceName": "Microsoft.DBforPostgreSQL/flexibleServers"}
    ]
    # Declared inline: a separate Subnet resource would be removed by the next update of the VNet.
    assert not run.of_type("azure-native:network:Subnet")


def test_subnet_ids_extend_the_vnet_id(run: ProgramRun) -> None:
    group = f"/subscriptions/{FAKE_SUBSCRIPTION_ID}/resourceGroups/cv-dev"
    vnet_id = f"{group}/providers/Microsoft.Network/virtualNetworks/vnet-dev"
    assert run.outputs == {
        "virtualNetworkId": vnet_id,
        "nodeSubnetId": f"{vnet_id}/subnets/nodes",
        "databaseSubnetId": f"{vnet_id}/subnets/postgres",
    }


def test_vnet_is_parented_to_the_component(run: ProgramRun) -> None:
    assert run.one(VNET).parent == run.one(COMPONENT).urn


def test_address_plan_fits_together() -> None:
    space = ipaddress.IPv4Network(network.ADDRESS_SPACE)
    nodes = ipaddress.IPv4Network(network.NODE_SUBNET_PREFIX)
    database = ipaddress.IPv4Network(network.DATABASE_SUBNET_PREFIX)
    assert nodes.subnet_of(space)
    assert database.subnet_of(space)
    assert not nodes.overlaps(database)
    # Azure's minimum for a delegated flexible-server subnet is /28.
    assert database.prefixlen <= 28
    # Overlay: pods and services live outside the VNet, and must not collide with it or with each other.
    pods = ipaddress.IPv4Network(network.POD_CIDR)
    services = ipaddress.IPv4Network(network.SERVICE_CIDR)
    assert not pods.overlaps(space)
    assert not services.overlaps(space)
    assert not pods.overlaps(services)
    assert ipaddress.ip_address(network.DNS_SERVICE_IP) in services
