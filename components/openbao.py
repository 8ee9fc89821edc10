"""EGo-Vault: HashiCorp Vault inside an SGX enclave, deployed with the official Vault chart on the SGX nodes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.charts import VAULT, deep_merge, load_values, pinned_release
from components.config import VaultImage, VaultSettings
from components.passwords import configured_or_generated
from components.routes import Backend, EdgeRouting, RouteRule, ingress_route

NAMESPACE = "vault"
RELEASE_NAME = "ego-vault"
# The chart names its objects after the release when the release name contains "vault".
SERVICE_NAME = RELEASE_NAME
PORT = 8200
# Labels the chart puts on the server pods (not on the injector's).
SERVER_POD_LABELS = {
    "app.kubernetes.io/name": "vault",
    "app.kubernetes.io/instance": RELEASE_NAME,
    "component": "server",
}
EPC_RESOURCE = "sgx.intel.com/epc"
DEV_ROOT_TOKEN_SECRET = "ego-vault-dev-root-token"
DEV_ROOT_TOKEN_KEY = "token"
# Vault reads the dev root token from this variable; the chart also sets it from values (emptied there).
DEV_ROOT_TOKEN_ENV = "VAULT_DEV_ROOT_TOKEN_ID"
# Read by `ego run`: loads the enclave without SGX hardware (no protection, no attestation).
SIMULATION_ENV = "OE_SIMULATION"
# Helm waits for the pod to be ready; pulling the image and loading the enclave heap takes minutes.
RELEASE_TIMEOUT_SECONDS = 900


@dataclass(frozen=True)
class VaultArgs:
    """Inputs of `EgoVault`.

    `sgx_pool` and `sgx_node_selector` come from the cluster (None on existing clusters);
    `monitoring_crds` is the kube-prometheus-stack release, None when monitoring is disabled.
    """

    settings: VaultSettings
    host: str
    provider: k8s.Provider
    routing: EdgeRouting
    sgx_pool: pulumi.Resource | None = None
    sgx_node_selector: Mapping[str, str] | None = None
    monitoring_crds: pulumi.Resource | None = None
    image_pull_access: Sequence[pulumi.Resource] = ()
    """Grants that let the nodes pull the image (AcrPull); the pod starts only once they exist."""
    edge_namespace: str = "traefik"
    monitoring_namespace: str = "monitoring"
    protect: bool = False


def image_values(image: VaultImage) -> dict[str, str]:
    """`server.image` for the chart, which renders `repository:tag`: a digest pins the image when set."""
    if image.digest is None:
        if image.tag is None:
            raise ValueError("vault.image needs a tag or a digest")
        return {"repository": image.repository, "tag": image.tag}
    if image.tag is not None:
        return {"repository": image.repository, "tag": f"{image.tag}@{image.digest}"}
    algorithm, hex_digest = image.digest.split(":", 1)
    return {"repository": f"{image.repository}@{algorithm}", "tag": hex_digest}


def vault_values(
    settings: VaultSettings,
    host: str,
    *,
    sgx_node_selector: Mapping[str, str] | None,
    service_monitor: bool,
) -> dict[str, Any]:
    """The chart values: `values/vault.yaml` plus what depends on the stack. Never contains a secret."""
    if settings.image is None:
        raise ValueError("vault.image is required (the signed EGo-Vault image)")
    api_addr = f"https://{host}"
    base = load_values("vault")
    server: dict[str, Any] = {
        "image": image_values(settings.image),
        # The chart exports VAULT_API_ADDR (pod IP by default), which overrides `api_addr` in the config file.
        "ha": {"apiAddr": api_addr},
        "dataStorage": {"size": settings.storage_size},
        "standalone": {"config": f'{base["server"]["standalone"]["config"]}\n\napi_addr = "{api_addr}"\n'},
    }
    extra_env: dict[str, str] = {}
    if settings.sgx.simulation:
        extra_env[SIMULATION_ENV] = "1"
    else:
        # Extended resources need equal requests and limits. The chart applies nodeSelector only outside dev
        # mode; the EPC request alone already keeps the pod on nodes whose device plugin offers EPC.
        server["resources"] = {"requests": {EPC_RESOURCE: settings.epc}, "limits": {EPC_RESOURCE: settings.epc}}
        if sgx_node_selector:
            server["nodeSelector"] = dict(sgx_node_selector)
    if extra_env:
        server["extraEnvironmentVars"] = extra_env
    if settings.mode == "dev":
        server["dev"] = {"enabled": True}
        # Kubernetes uses the last definition of a variable: this one follows the chart's VAULT_DEV_ROOT_TOKEN_ID.
        server["extraSecretEnvironmentVars"] = [
            {"envName": DEV_ROOT_TOKEN_ENV, "secretName": DEV_ROOT_TOKEN_SECRET, "secretKey": DEV_ROOT_TOKEN_KEY}
        ]
        # In-memory storage: nothing to lose on a restart, so updates roll out by themselves.
        server["updateStrategyType"] = "RollingUpdate"
    computed: dict[str, Any] = {
        "injector": {"enabled": settings.injector},
        "server": server,
        "serverTelemetry": {"serviceMonitor": {"enabled": service_monitor}},
    }
    return deep_merge(base, computed)


def network_policy_spec(allowed_namespaces: list[str]) -> k8s.networking.v1.NetworkPolicySpecArgs:
    """Ingress to the server pods: port 8200, only from `allowed_namespaces`; nothing else (8201 included)."""
    return k8s.networking.v1.NetworkPolicySpecArgs(
        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(SERVER_POD_LABELS)),
        policy_types=["Ingress"],
        ingress=[
            k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                from_=[
                    k8s.networking.v1.NetworkPolicyPeerArgs(
                        namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                            match_labels={"kubernetes.io/metadata.name": namespace}
                        )
                    )
                    for namespace in allowed_namespaces
                ],
                ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=PORT, protocol="TCP")],
            )
        ],
    )


class EgoVault(pulumi.ComponentResource):
    """Vault in an SGX enclave (the EGo-Vault image) from the official chart, published at `vault.<domain>`.

    Server mode runs a standalone server with file storage on a volume, sealed until an operator
    initialises and unseals it (README "Vault"); dev mode runs the chart's in-memory dev server with a
    generated root token. The pod requests SGX EPC and runs on the SGX pool, or in EGo's simulation mode
    without SGX. A NetworkPolicy admits only Traefik, Prometheus and `vault.clientNamespaces` to port 8200.
    """

    url: str
    mode: str
    enclave_unique_id: str | None
    enclave_signer_id: str | None
    release: k8s.helm.v3.Release
    namespace: k8s.core.v1.Namespace
    dev_root_token: pulumi.Output[str] | None
    """The dev server's root token (secret); None in server mode, where `vault operator init` creates it."""

    def __init__(self, name: str, args: VaultArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("confidential-vault:vault:EgoVault", name, None, opts)
        settings = args.settings
        provider = args.provider
        in_cluster = pulumi.ResourceOptions(parent=self, provider=provider)
        monitoring_enabled = args.monitoring_crds is not None
        # The dev server has no Prometheus telemetry configured: a ServiceMonitor would only record failures.
        service_monitor = monitoring_enabled and settings.exposes_metrics

        self.namespace = k8s.core.v1.Namespace(
            "vault",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE),
            # Deleting the namespace deletes Vault's data volume with it.
            opts=pulumi.ResourceOptions.merge(in_cluster, pulumi.ResourceOptions(protect=args.protect)),
        )
        namespace = self.namespace.metadata.name

        allowed = [args.edge_namespace]
        if monitoring_enabled:
            allowed.append(args.monitoring_namespace)
        allowed += [ns for ns in settings.client_namespaces if ns not in allowed]
        network_policy = k8s.networking.v1.NetworkPolicy(
            "vault-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="ego-vault-ingress", namespace=namespace),
            spec=network_policy_spec(allowed),
            opts=in_cluster,
        )

        # Vault's pod starts only once its ingress is restricted, on a pool that exists, with its token Secret.
        release_dependencies: list[pulumi.Resource] = [network_policy, *args.image_pull_access]
        if args.sgx_pool is not None and not settings.sgx.simulation:
            release_dependencies.append(args.sgx_pool)
        if service_monitor and args.monitoring_crds is not None:
            release_dependencies.append(args.monitoring_crds)

        self.dev_root_token = None
        if settings.mode == "dev":
            self.dev_root_token = configured_or_generated("dev-root-token", None, parent=self)
            token_secret = k8s.core.v1.Secret(
                "dev-root-token",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=DEV_ROOT_TOKEN_SECRET, namespace=namespace),
                type="Opaque",
                string_data={DEV_ROOT_TOKEN_KEY: self.dev_root_token},
                opts=in_cluster,
            )
            release_dependencies.append(token_secret)

        values = vault_values(
            settings,
            args.host,
            sgx_node_selector=args.sgx_node_selector,
            service_monitor=service_monitor,
        )
        self.release = pinned_release(
            RELEASE_NAME,
            VAULT,
            release_name=RELEASE_NAME,
            namespace=namespace,
            values=values,
            timeout=RELEASE_TIMEOUT_SECONDS,
            opts=pulumi.ResourceOptions.merge(
                in_cluster, pulumi.ResourceOptions(depends_on=release_dependencies, protect=args.protect)
            ),
        )

        # Traefik finds the Service whenever it appears: the route waits for Traefik's CRDs only.
        ingress_route(
            "vault",
            namespace=namespace,
            host=args.host,
            rules=[RouteRule(Backend(SERVICE_NAME, PORT))],
            routing=args.routing,
            parent=self,
            provider=provider,
        )

        self.url = f"https://{args.host}"
        self.mode = settings.mode
        self.enclave_unique_id = settings.enclave.unique_id
        self.enclave_signer_id = settings.enclave.signer_id
        outputs: dict[str, Any] = {
            "url": self.url,
            "mode": self.mode,
            "enclaveUniqueId": self.enclave_unique_id,
            "enclaveSignerId": self.enclave_signer_id,
        }
        if self.dev_root_token is not None:
            outputs["devRootToken"] = self.dev_root_token
        self.register_outputs(outputs)
