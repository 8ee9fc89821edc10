"""confidential-vault: HashiCorp Vault in Intel SGX enclaves on AKS, with everything around it.

settings → cluster → edge (Traefik) → monitoring, Argo CD, Vault (in parallel) → exports
"""

import pulumi

from components.cluster import ClusterArgs, ConfidentialCluster
from components.config import load_stack_settings

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

pulumi.export("environment", settings.environment)
pulumi.export("kubeconfig", cluster.kubeconfig)
if cluster.cluster_name is not None:
    pulumi.export("clusterName", cluster.cluster_name)
    pulumi.export("resourceGroupName", cluster.resource_group_name)
    pulumi.export("nodeResourceGroup", cluster.node_resource_group)
