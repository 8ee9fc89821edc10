"""The secret store: OpenBao inside an SGX enclave (the EGo-OpenBao image), from the official OpenBao chart."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.charts import OPENBAO, deep_merge, load_values, pinned_release
from components.config import VaultImage, VaultSettings
from components.config.database import StorageKind
from components.passwords import configured_or_generated
from components.routes import Backend, EdgeRouting, RouteRule, ingress_route
from components.seal import ENV_SEAL_PREVIOUS_KEY_ID, SealAccess

# The secret store's area keeps its name across servers: namespace, host `vault.<domain>`, config `vault.*`.
NAMESPACE = "vault"
RELEASE_NAME = "openbao"
BASE_VALUES = load_values(OPENBAO.chart)
# The chart names its objects after `fullnameOverride`; its main Service is that name (templates/server-service.yaml).
SERVICE_NAME: str = BASE_VALUES["fullnameOverride"]
# In HA the chart adds a Service for the pod that labelled itself active (`openbao-active: "true"`, set by OpenBao's
# `service_registration "kubernetes"`; templates/server-ha-active-service.yaml) and the headless `-internal` Service
# for every replica (templates/server-headless-service.yaml).
ACTIVE_SERVICE_NAME = f"{SERVICE_NAME}-active"
INTERNAL_SERVICE_NAME = f"{SERVICE_NAME}-internal"
PORT = 8200
# Standbys forward requests to the active server over the cluster port (`cluster_address` in the measured config).
CLUSTER_PORT = 8201
# The server's service account: the chart names it after the fullname (templates/_helpers.tpl
# "openbao.serviceAccount.name", `server.serviceAccount.name` unset). Attested unseal federates an Azure identity with
# exactly this account (components/seal.py), so its name is part of the trust the release grant gives.
SERVICE_ACCOUNT_NAME = SERVICE_NAME
# Labels of the server pods (templates/server-statefulset.yaml), not of the injector's (`<name>-agent-injector`).
SERVER_POD_LABELS = {
    "app.kubernetes.io/name": BASE_VALUES["nameOverride"],
    "app.kubernetes.io/instance": RELEASE_NAME,
    "component": "server",
}
EPC_RESOURCE = "sgx.intel.com/epc"
# The SGX provisioning device, which in-process DCAP quoting (EGo's attestation) needs besides EPC (EGo
# samples/aks/aks.yml); the AKS device plugin advertises it next to the EPC.
PROVISION_RESOURCE = "sgx.intel.com/provision"
DEV_ROOT_TOKEN_SECRET = "openbao-dev-root-token"
DEV_ROOT_TOKEN_KEY = "token"
# OpenBao's dev server reads the root token from BAO_DEV_ROOT_TOKEN_ID, and from the chart's VAULT_DEV_ROOT_TOKEN_ID
# only when the BAO_ variable is absent (openbao api/env.go LookupBaoVariable, command/server.go).
DEV_ROOT_TOKEN_ENV = "BAO_DEV_ROOT_TOKEN_ID"
# The Secret in which the enclave keeps its store identity record (attested unseal; the bootstrap's
# storeidentity.SecretName): the server's service account may read, replace and create it (store_identity_access).
STORE_IDENTITY_SECRET = "openbao-store-identity"
# `vaultEnclave.clusterId` while the stack has no `vault.clusterId`: scripts/verify.py reads it as "no pin".
CLUSTER_ID_NOT_PINNED = "not pinned"
# Read by `ego run`: loads the enclave without SGX hardware (no protection, no attestation).
SIMULATION_ENV = "OE_SIMULATION"
# Read by the enclave's bootstrap (images/ego-openbao/bootstrap/README.md, "What the host decides"): the attestation
# provider it asks for a token, and the names its listener certificate carries. Neither is attested or needs to be:
# clients take the provider from the stack, not from the enclave (another provider's token has another issuer and
# signing key and is refused), and they trust the key the token binds, not the names (a wrong name only fails the
# client's host name check).
ATTESTATION_PROVIDER_ENV = "CV_MAA_URL"
LISTENER_NAMES_ENV = "CV_LISTENER_NAMES"
# Read by the bootstrap (bootstrap/launch.go): which of the two measured storage configurations the server runs.
# A host choice between two measured files cannot weaken secrecy: OpenBao's barrier encrypts whatever reaches either
# (images/ego-openbao/README.md, "Storage").
STORAGE_ENV = "CV_STORAGE"
# OpenBao's `storage "postgresql"` reads its connection URL from this variable (physical/postgresql connectionURL,
# BAO_ first, VAULT_ as fallback): it comes from a Kubernetes Secret, never from values or the pod spec.
CONNECTION_URL_ENV = "BAO_PG_CONNECTION_URL"
STORAGE_SECRET = "openbao-storage"
STORAGE_SECRET_KEY = "connection-url"
# Kubernetes' default cluster domain, which AKS keeps.
CLUSTER_DOMAIN = "cluster.local"
# Helm waits for the pod to be ready; pulling the image and loading the enclave heap takes minutes.
RELEASE_TIMEOUT_SECONDS = 900
# Wave 1 registered the component as `EgoVault`: the alias keeps the identity of its children (the protected
# `vault` namespace with the data volume above all), which would otherwise be created anew and the old ones deleted.
WAVE1_COMPONENT_TYPE = "confidential-vault:vault:EgoVault"


@dataclass(frozen=True)
class PostgresStorage:
    """`vault.storage: postgresql`: where OpenBao's data lives and how many servers share it."""

    connection_url: pulumi.Input[str]
    """Secret: `SecretStoreDatabase.connection_url`; reaches the pod only through a Kubernetes Secret."""
    ready: Sequence[pulumi.Resource] = ()
    """What must exist before OpenBao connects (`SecretStoreDatabase.release_dependencies`)."""
    replicas: int = 1
    """Servers: one active, the others standbys (`openbao_replicas`)."""


@dataclass(frozen=True)
class OpenBaoArgs:
    """Inputs of `OpenBao`.

    `sgx_pool` and `sgx_node_selector` come from the cluster (None on existing clusters);
    `monitoring_crds` is the kube-prometheus-stack release, None when monitoring is disabled.
    """

    settings: VaultSettings
    host: str
    provider: k8s.Provider
    routing: EdgeRouting
    attestation_provider: str | None = None
    """The MAA provider (`attestation_provider_url` of the settings); None in simulation without one."""
    sgx_pool: pulumi.Resource | None = None
    sgx_node_selector: Mapping[str, str] | None = None
    monitoring_crds: pulumi.Resource | None = None
    image_pull_access: Sequence[pulumi.Resource] = ()
    """Grants that let the nodes pull the image (AcrPull); the pod starts only once they exist."""
    seal_access: SealAccess | None = None
    """Attested unseal (`vault.unseal.mode: attested`): the Key Vault key, identity and grant the enclave's release
    needs (`AttestedSeal.access`); None unseals with Shamir shares."""
    postgres: PostgresStorage | None = None
    """`vault.storage: postgresql` (server mode only); None keeps `storage "file"` on the data volume."""
    edge_namespace: str = "traefik"
    monitoring_namespace: str = "monitoring"
    protect: bool = False


def _is_registry_host(component: str) -> bool:
    """Whether the first path component of an image reference names a registry (the Docker reference rules)."""
    return "." in component or ":" in component or component == "localhost"


def image_values(image: VaultImage) -> dict[str, str]:
    """`server.image` for the chart, which renders `<registry>/<repository>:<tag>` (registry default docker.io).

    A digest pins the image when set: with a tag as `tag@digest`, alone as `repository@sha256` + `:hex`.
    """
    if image.digest is None and image.tag is None:
        raise ValueError("vault.image needs a tag or a digest")
    host, _, path = image.repository.partition("/")
    registry, repository = (host, path) if path and _is_registry_host(host) else ("docker.io", image.repository)
    if image.digest is None:
        return {"registry": registry, "repository": repository, "tag": str(image.tag)}
    if image.tag is not None:
        return {"registry": registry, "repository": repository, "tag": f"{image.tag}@{image.digest}"}
    algorithm, hex_digest = image.digest.split(":", 1)
    return {"registry": registry, "repository": f"{repository}@{algorithm}", "tag": hex_digest}


def listener_names(host: str, *, ha: bool = False) -> list[str]:
    """The names clients reach the listener by: the public host and the in-cluster names of the main Service (and
    in HA of the active Service, which always reaches the server that writes).

    Nothing else connects by name with verification: the kubelet does not verify probe certificates, and Prometheus
    scrapes pod addresses without verifying (values/openbao.yaml, `serverTelemetry`).
    """
    names = [host]
    for name in (SERVICE_NAME, ACTIVE_SERVICE_NAME) if ha else (SERVICE_NAME,):
        service = f"{name}.{NAMESPACE}"
        names += [name, service, f"{service}.svc", f"{service}.svc.{CLUSTER_DOMAIN}"]
    return names


def all_replicas_service_monitor(chart_monitor: Mapping[str, Any]) -> dict[str, Any]:
    """A ServiceMonitor like the chart's, on the headless Service of every replica.

    In HA the chart's own ServiceMonitor selects the active Service only (templates/prometheus-servicemonitor.yaml),
    so a standby that stopped answering would go unseen; the headless Service also keeps the `job` label the alerts
    and dashboards select (`openbao-internal`) the same as in standalone mode.
    """
    endpoint = {
        "port": "https",
        "interval": chart_monitor["interval"],
        "scrapeTimeout": chart_monitor["scrapeTimeout"],
        "scheme": "https",
        "path": "/v1/sys/metrics",
        "params": {"format": ["prometheus"]},
        "tlsConfig": dict(chart_monitor["tlsConfig"]),
    }
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {
            "name": SERVICE_NAME,
            "namespace": NAMESPACE,
            "labels": {**SERVER_POD_LABELS, "release": "prometheus"},
        },
        "spec": {
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": SERVER_POD_LABELS["app.kubernetes.io/name"],
                    "app.kubernetes.io/instance": RELEASE_NAME,
                    "openbao-internal": "true",
                }
            },
            "endpoints": [endpoint],
            "namespaceSelector": {"matchNames": [NAMESPACE]},
        },
    }


def ha_values(replicas: int) -> dict[str, Any]:
    """`server` values for OpenBao in HA on PostgreSQL: `replicas` servers, no data volume, at most one down."""
    return {
        "standalone": {"enabled": False},
        "ha": {
            "enabled": True,
            "replicas": replicas,
            # The chart computes maxUnavailable 0 for two replicas (and for one), which blocks every node drain:
            # one server down leaves the other serving. One replica gets no budget at all.
            "disruptionBudget": {"enabled": replicas > 1, "maxUnavailable": 1},
        },
        "dataStorage": {"enabled": False},
    }


def openbao_values(
    settings: VaultSettings,
    host: str,
    *,
    sgx_node_selector: Mapping[str, str] | None,
    service_monitor: bool,
    attestation_provider: str | None = None,
    seal_access: SealAccess | None = None,
    storage: StorageKind = "file",
    replicas: int = 1,
) -> dict[str, Any]:
    """The chart values: `values/openbao.yaml` plus what depends on the stack. Never contains a secret (the seal
    key id and the identity's client id are identifiers; the key never leaves Key Vault but into the enclave; the
    database URL comes from the `openbao-storage` Secret)."""
    if settings.image is None:
        raise ValueError("vault.image is required (the signed EGo-OpenBao image)")
    if settings.attests and attestation_provider is None:
        raise ValueError("an enclave that attests needs vault.attestation.providerUrl")
    if seal_access is not None and not settings.attests:
        raise ValueError("attested unseal needs an enclave that attests (server mode on SGX hardware)")
    ha = storage == "postgresql"
    if ha and settings.mode != "server":
        raise ValueError("PostgreSQL storage is for server mode: the dev server keeps everything in memory")
    if replicas > 1 and not ha:
        raise ValueError("only PostgreSQL storage runs more than one server")
    server: dict[str, Any] = {
        "image": image_values(settings.image),
        # The chart exports BAO_API_ADDR (the pod IP unless this is set), which OpenBao prefers over `api_addr`.
        # Harmless from the host: it is only the address OpenBao tells clients to redirect to.
        "ha": {"apiAddr": f"https://{host}"},
        "dataStorage": {"size": settings.storage_size},
    }
    extra_env: dict[str, str] = {}
    secret_env: list[dict[str, str]] = []
    if settings.mode == "server":
        extra_env[STORAGE_ENV] = storage
    if ha:
        server = deep_merge(server, ha_values(replicas))
        secret_env.append(
            {"envName": CONNECTION_URL_ENV, "secretName": STORAGE_SECRET, "secretKey": STORAGE_SECRET_KEY}
        )
    if settings.tls_in_enclave:
        extra_env[LISTENER_NAMES_ENV] = ",".join(listener_names(host, ha=ha))
        if attestation_provider is not None:
            extra_env[ATTESTATION_PROVIDER_ENV] = attestation_provider
    if settings.sgx.simulation:
        extra_env[SIMULATION_ENV] = "1"
    else:
        # Extended resources need equal requests and limits. The chart applies nodeSelector only outside dev
        # mode; the EPC request alone already keeps the pod on nodes whose device plugin offers EPC.
        sgx_resources = {EPC_RESOURCE: settings.epc}
        if settings.attests:
            sgx_resources[PROVISION_RESOURCE] = "1"
        server["resources"] = {"requests": dict(sgx_resources), "limits": dict(sgx_resources)}
        if sgx_node_selector:
            server["nodeSelector"] = dict(sgx_node_selector)
    if seal_access is not None:
        # AKS workload identity: the webhook injects AZURE_CLIENT_ID/TENANT_ID/AUTHORITY_HOST/FEDERATED_TOKEN_FILE
        # and the projected token into pods with this label whose service account names the identity.
        server["extraLabels"] = dict(seal_access.pod_labels)
        server["serviceAccount"] = {"annotations": seal_access.service_account_annotations}
        listener_env = dict(extra_env)
        server["extraEnvironmentVars"] = seal_access.env.apply(lambda seal_env: {**listener_env, **seal_env})
    elif extra_env:
        server["extraEnvironmentVars"] = extra_env
    if settings.mode == "dev":
        server["dev"] = {"enabled": True}
        secret_env.append(
            {"envName": DEV_ROOT_TOKEN_ENV, "secretName": DEV_ROOT_TOKEN_SECRET, "secretKey": DEV_ROOT_TOKEN_KEY}
        )
    if secret_env:
        server["extraSecretEnvironmentVars"] = secret_env
    computed: dict[str, Any] = {
        # The dev server listens in plain HTTP (TLS ends at Traefik): the chart's probes and URLs follow this.
        "global": {"tlsDisable": not settings.tls_in_enclave},
        "injector": {"enabled": settings.injector},
        "server": server,
        # In HA the chart's ServiceMonitor would scrape the active server only: ours scrapes every replica.
        "serverTelemetry": {"serviceMonitor": {"enabled": service_monitor and not ha}},
    }
    if service_monitor and ha:
        computed["extraObjects"] = [all_replicas_service_monitor(BASE_VALUES["serverTelemetry"]["serviceMonitor"])]
    return deep_merge(copy.deepcopy(BASE_VALUES), computed)


def network_policy_spec(allowed_namespaces: list[str], *, ha: bool = False) -> k8s.networking.v1.NetworkPolicySpecArgs:
    """Ingress to the server pods: port 8200, only from `allowed_namespaces`; in HA also 8201 between the servers
    (standbys forward requests to the active one); nothing else."""
    peers = k8s.networking.v1.NetworkPolicyIngressRuleArgs(
        from_=[
            k8s.networking.v1.NetworkPolicyPeerArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(SERVER_POD_LABELS))
            )
        ],
        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=CLUSTER_PORT, protocol="TCP")],
    )
    return k8s.networking.v1.NetworkPolicySpecArgs(
        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(SERVER_POD_LABELS)),
        policy_types=["Ingress"],
        ingress=[
            *([peers] if ha else []),
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
            ),
        ],
    )


def store_identity_access(namespace: pulumi.Input[str], opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
    """What the enclave needs to keep its store identity record (attested unseal only): its service account may read
    and replace the one Secret `STORE_IDENTITY_SECRET`, and create Secrets in its namespace, since Kubernetes cannot
    limit `create` to a name (the record does not exist until the first unseal). The Secret holds only ciphertext
    under a key derived from the released seal key (images/ego-openbao/bootstrap/storeidentity); the host can delete
    or keep an old copy of it, which only skips the enclave's refusal of a swapped store, never a client's."""
    role = k8s.rbac.v1.Role(
        "vault-store-identity",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=STORE_IDENTITY_SECRET, namespace=namespace),
        rules=[
            k8s.rbac.v1.PolicyRuleArgs(
                api_groups=[""], resources=["secrets"], resource_names=[STORE_IDENTITY_SECRET], verbs=["get", "update"]
            ),
            k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["secrets"], verbs=["create"]),
        ],
        opts=opts,
    )
    binding = k8s.rbac.v1.RoleBinding(
        "vault-store-identity",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=STORE_IDENTITY_SECRET, namespace=namespace),
        role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=role.metadata.name),
        subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=SERVICE_ACCOUNT_NAME, namespace=namespace)],
        opts=opts,
    )
    return [role, binding]


def unpinned_store_warning(stack: str) -> str:
    """What `pulumi up` says while a stack pins no store: clients refuse its store once it is initialised."""
    return (
        "vault.clusterId is not set (vaultEnclave.clusterId: not pinned): scripts/verify.py refuses this stack's "
        f"store once it is initialised. After the first `bao operator init`, run `scripts/verify.py {stack} "
        "--record-cluster-id`, run the `pulumi config set` line it prints, then `pulumi up` (README, First deploy)."
    )


class OpenBao(pulumi.ComponentResource):
    """OpenBao in an SGX enclave (the EGo-OpenBao image) from the official chart, published at `vault.<domain>`.

    Server mode runs the configuration measured into the enclave: one server on a data volume (`storage "file"`), or
    with PostgreSQL (`postgres`) `replicas` servers in HA on separate nodes, the route on the active one. It is sealed
    until an operator
    initialises it; it then unseals itself at every start with the seal key Key Vault releases to the attested
    enclave (`seal_access`), or waits for key holders' Shamir shares (README "Secret store"). Its TLS ends inside the
    enclave, on a key bound to the enclave's identity by an attestation token, and Traefik passes connections through
    by SNI.
    Dev mode runs the chart's in-memory dev server with a generated root token, in plain HTTP behind Traefik's TLS.
    The pod requests SGX EPC and runs on the SGX pool, or in EGo's simulation mode without SGX. A NetworkPolicy
    admits only Traefik, Prometheus and `vault.clientNamespaces` to port 8200.
    """

    url: str
    mode: str
    tls_termination: str
    """Where client TLS ends: `enclave` (server mode, verify with scripts/verify.py) or `traefik` (dev mode)."""
    expected_enclave: dict[str, Any]
    """The identity clients verify (scripts/verify.py reads it from the `vaultEnclave` output)."""
    release: k8s.helm.v3.Release
    namespace: k8s.core.v1.Namespace
    dev_root_token: pulumi.Output[str] | None
    """The dev server's root token (secret); None in server mode, where `bao operator init` creates it."""

    def __init__(self, name: str, args: OpenBaoArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        wave1 = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=WAVE1_COMPONENT_TYPE)])
        super().__init__("confidential-vault:vault:OpenBao", name, None, pulumi.ResourceOptions.merge(wave1, opts))
        settings = args.settings
        provider = args.provider
        in_cluster = pulumi.ResourceOptions(parent=self, provider=provider)
        monitoring_enabled = args.monitoring_crds is not None
        # The dev server's listener serves metrics only with a token: a ServiceMonitor would only record failures.
        service_monitor = monitoring_enabled and settings.exposes_metrics

        self.namespace = k8s.core.v1.Namespace(
            "vault",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE),
            # Deleting the namespace deletes the data volume with it.
            opts=pulumi.ResourceOptions.merge(in_cluster, pulumi.ResourceOptions(protect=args.protect)),
        )
        namespace = self.namespace.metadata.name

        allowed = [args.edge_namespace]
        if monitoring_enabled:
            allowed.append(args.monitoring_namespace)
        allowed += [ns for ns in settings.client_namespaces if ns not in allowed]
        network_policy = k8s.networking.v1.NetworkPolicy(
            "vault-ingress",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{SERVICE_NAME}-ingress", namespace=namespace),
            spec=network_policy_spec(allowed, ha=args.postgres is not None),
            opts=in_cluster,
        )

        # The pod starts only once its ingress is restricted, on a pool that exists, with its token Secret, and with
        # attested unseal once the key, the identity, its federated credential and its release grant exist (else the
        # first release attempts fail until Azure catches up).
        release_dependencies: list[pulumi.Resource] = [network_policy, *args.image_pull_access]
        if args.seal_access is not None:
            release_dependencies += args.seal_access.ready
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

        if args.postgres is not None:
            # The URL (with the password) reaches the pod as an environment variable from this Secret only.
            storage_secret = k8s.core.v1.Secret(
                "vault-storage",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=STORAGE_SECRET, namespace=namespace),
                type="Opaque",
                string_data={STORAGE_SECRET_KEY: pulumi.Output.secret(args.postgres.connection_url)},
                opts=in_cluster,
            )
            release_dependencies += [storage_secret, *args.postgres.ready]

        if args.seal_access is not None:
            release_dependencies += store_identity_access(namespace, in_cluster)

        values = openbao_values(
            settings,
            args.host,
            sgx_node_selector=args.sgx_node_selector,
            service_monitor=service_monitor,
            attestation_provider=args.attestation_provider,
            seal_access=args.seal_access,
            storage="postgresql" if args.postgres is not None else "file",
            replicas=args.postgres.replicas if args.postgres is not None else 1,
        )
        self.release = pinned_release(
            RELEASE_NAME,
            OPENBAO,
            release_name=RELEASE_NAME,
            namespace=namespace,
            values=values,
            timeout=RELEASE_TIMEOUT_SECONDS,
            opts=pulumi.ResourceOptions.merge(
                in_cluster, pulumi.ResourceOptions(depends_on=release_dependencies, protect=args.protect)
            ),
        )

        # Traefik finds the Service whenever it appears: the route waits for Traefik's CRDs only. In server mode
        # Traefik passes TLS through to the enclave; the dev server's plain HTTP gets Traefik's TLS.
        ingress_route(
            "vault",
            namespace=namespace,
            host=args.host,
            # In HA only the active server writes: the route goes to it (a standby would forward anyway).
            rules=[RouteRule(Backend(ACTIVE_SERVICE_NAME if args.postgres is not None else SERVICE_NAME, PORT))],
            routing=args.routing,
            parent=self,
            provider=provider,
            tls_passthrough=settings.tls_in_enclave,
        )

        self.url = f"https://{args.host}"
        self.mode = settings.mode
        self.tls_termination = "enclave" if settings.tls_in_enclave else "traefik"
        enclave = settings.enclave
        self.expected_enclave = {
            "signerId": enclave.signer_id,
            "uniqueId": enclave.unique_id,
            "productId": enclave.product_id,
            "securityVersion": enclave.security_version,
            "attestationProvider": args.attestation_provider,
            "simulation": settings.sgx.simulation,
            # Attested unseal: the Key Vault key (with version) the enclave must name in its attestation (binding
            # `seal_key_id`); None: Shamir, and clients accept an enclave that names no key only.
            "sealKeyId": args.seal_access.key_id if args.seal_access is not None else None,
            # During a rotation: the previous key the enclave gets (and binds, previous_seal_key_id), taken from what
            # the enclave is given so the two cannot differ; None: clients refuse an enclave that names one.
            "previousSealKeyId": (
                args.seal_access.env.apply(lambda env: env.get(ENV_SEAL_PREVIOUS_KEY_ID))
                if args.seal_access is not None
                else None
            ),
            # The store clients accept (binding cluster_id); until it is recorded they refuse an initialised store.
            "clusterId": settings.cluster_id or CLUSTER_ID_NOT_PINNED,
        }
        outputs: dict[str, Any] = {
            "url": self.url,
            "mode": self.mode,
            "tlsTermination": self.tls_termination,
            "expectedEnclave": self.expected_enclave,
        }
        if self.dev_root_token is not None:
            outputs["devRootToken"] = self.dev_root_token
        self.register_outputs(outputs)
