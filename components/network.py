"""The stack's own virtual network: the AKS nodes' subnet and the subnet delegated to the PostgreSQL server.

AKS creates and owns a VNet of its own unless the node pools name a subnet. The secret store's database is reachable
only from inside a VNet (VNet integration, no public endpoint), so the cluster must live in one the program controls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
from pulumi_azure_native import network

# The address plan. Azure CNI overlay takes pod IPs from POD_CIDR, outside the VNet, so the node subnet holds only
# nodes. POD_CIDR, SERVICE_CIDR and DNS_SERVICE_IP are the cluster's own ranges as the SDK sends them by default
# (ContainerServiceNetworkProfileArgs): the VNet is laid out around them (tests/test_network.py, test_cluster.py).
ADDRESS_SPACE = "10.224.0.0/16"
NODE_SUBNET = "nodes"
NODE_SUBNET_PREFIX = "10.224.0.0/20"
DATABASE_SUBNET = "postgres"
# Azure asks for at least /28; a server with HA takes four addresses, and a point-in-time restore puts a second
# server next to the first.
DATABASE_SUBNET_PREFIX = "10.224.16.0/24"
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.0.0.0/16"
DNS_SERVICE_IP = "10.0.0.10"
# Only flexible servers may use a subnet delegated to them (VNet integration, Azure docs "Networking with private
# access"); nothing else can be placed in it.
POSTGRES_DELEGATION = "Microsoft.DBforPostgreSQL/flexibleServers"


@dataclass(frozen=True)
class NetworkArgs:
    """Inputs of `ClusterNetwork`."""

    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    stack: str
    tags: Mapping[str, str] = field(default_factory=dict)


class ClusterNetwork(pulumi.ComponentResource):
    """A VNet with the node subnet and the subnet delegated to Azure Database for PostgreSQL flexible servers.

    Both subnets are declared inside the VNet: an update of a VNet declared without them would remove separately
    managed subnets (pulumi/pulumi-azure-native#611).
    """

    virtual_network: network.VirtualNetwork
    virtual_network_id: pulumi.Output[str]
    node_subnet_id: pulumi.Output[str]
    """The subnet of every node pool (System and SGX)."""
    database_subnet_id: pulumi.Output[str]
    """The subnet delegated to the PostgreSQL flexible server."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("confidential-vault:network:ClusterNetwork", name, None, opts)
        self.virtual_network = network.VirtualNetwork(
            "vnet",
            virtual_network_name=f"vnet-{args.stack}",
            resource_group_name=args.resource_group_name,
            location=args.location,
            address_space=network.AddressSpaceArgs(address_prefixes=[ADDRESS_SPACE]),
            subnets=[
                network.SubnetArgs(name=NODE_SUBNET, address_prefix=NODE_SUBNET_PREFIX),
                network.SubnetArgs(
                    name=DATABASE_SUBNET,
                    address_prefix=DATABASE_SUBNET_PREFIX,
                    delegations=[network.DelegationArgs(name=DATABASE_SUBNET, service_name=POSTGRES_DELEGATION)],
                ),
            ],
            tags=dict(args.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.virtual_network_id = self.virtual_network.id
        # A subnet's ID is its VNet's with `/subnets/<name>`; derived from the VNet's, so users wait for the VNet.
        self.node_subnet_id = self.virtual_network.id.apply(lambda vnet_id: f"{vnet_id}/subnets/{NODE_SUBNET}")
        self.database_subnet_id = self.virtual_network.id.apply(lambda vnet_id: f"{vnet_id}/subnets/{DATABASE_SUBNET}")
        self.register_outputs(
            {
                "virtualNetworkId": self.virtual_network_id,
                "nodeSubnetId": self.node_subnet_id,
                "databaseSubnetId": self.database_subnet_id,
            }
        )
