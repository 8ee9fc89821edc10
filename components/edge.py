"""The edge: Traefik as the single public entry point, with Let's Encrypt, a static IP, DNS and a protected dashboard.

Every application publishes `<service>.<domain>` through `Edge.routing` and `components.routes.ingress_route`;
Traefik terminates TLS with certificates from the `letsencrypt` resolver and redirects plain HTTP to HTTPS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import authorization, dns, network

from components.charts import TRAEFIK, deep_merge, load_values, pinned_release
from components.cluster import ConfidentialCluster
from components.config import AcmeSettings, DnsSettings, EdgeSettings, Settings
from components.passwords import configured_or_generated, stable_bcrypt_hash
from components.routes import Backend, EdgeRouting, RouteRule, ingress_route

NAMESPACE = "traefik"
RELEASE_NAME = "traefik"
CERT_RESOLVER = "letsencrypt"
ENTRY_POINT = "websecure"
ACME_SERVERS: dict[str, str] = {
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
    "production": "https://acme-v02.api.letsencrypt.org/directory",
}
DASHBOARD_SERVICE = "traefik"
DASHBOARD_MIDDLEWARE = "dashboard-auth"
DASHBOARD_SECRET = "traefik-dashboard-auth"
# Selects the chart's metrics Service (metrics.prometheus.service) without depending on its generated labels.
METRICS_SERVICE_LABELS: dict[str, str] = {"confidential-vault/metrics": "traefik"}
# The port name the chart gives the metrics Service (templates/service-metrics.yaml).
METRICS_PORT_NAME = "metrics"
LOAD_BALANCER_RESOURCE_GROUP = "service.beta.kubernetes.io/azure-load-balancer-resource-group"
# Azure built-in role "Network Contributor".
NETWORK_CONTRIBUTOR_ROLE = "4d97b98b-1d4f-4787-a291-c67834d212e7"
DNS_RECORD_TTL = 300


@dataclass(frozen=True)
class EdgeArgs:
    """Inputs of `Edge`."""

    domain: str
    acme: AcmeSettings
    acme_server: Literal["staging", "production"]
    settings: EdgeSettings
    dns: DnsSettings | None
    cluster: ConfidentialCluster
    stack: str
    services: tuple[str, ...] = ("vault", "grafana", "argocd")
    """Services published as `<service>.<domain>` besides the dashboard; they get URLs and DNS records."""
    protect: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, cluster: ConfidentialCluster, stack: str) -> EdgeArgs:
        """Edge inputs of a stack: only enabled applications get a host name, URL and DNS record."""
        services = ("vault",)
        if settings.monitoring.enabled:
            services += ("grafana",)
        if settings.argocd.enabled:
            services += ("argocd",)
        return cls(
            domain=settings.domain,
            acme=settings.acme,
            acme_server=settings.acme_server,
            settings=settings.edge,
            dns=settings.dns,
            cluster=cluster,
            stack=stack,
            services=services,
            protect=settings.protected,
        )


def traefik_values(
    acme: AcmeSettings,
    acme_server: Literal["staging", "production"],
    load_balancer_ip: pulumi.Input[str] | None = None,
    load_balancer_resource_group: pulumi.Input[str] | None = None,
) -> dict[str, Any]:
    """Helm values of the Traefik release: `values/traefik.yaml` plus the resolver and the load balancer address."""
    base = load_values("traefik")
    resolver: dict[str, Any] = {
        "email": acme.email,
        "caServer": ACME_SERVERS[acme_server],
        # One file per CA: Traefik keeps the certificates of a file when the CA changes (it only resets the
        # account), so staging certificates would be served until renewal. A new file makes the switch clean.
        "storage": f"{base['persistence']['path']}/acme-{acme_server}.json",
    }
    if acme.challenge == "tls":
        # An empty map would render no flag at all and leave the resolver without a challenge.
        resolver["tlsChallenge"] = True
    else:
        resolver["httpChallenge"] = {"entryPoint": "web"}
    computed: dict[str, Any] = {
        "certificatesResolvers": {CERT_RESOLVER: {"acme": resolver}},
        "metrics": {"prometheus": {"service": {"labels": dict(METRICS_SERVICE_LABELS)}}},
    }
    if load_balancer_ip is not None:
        computed["service"] = {
            "spec": {"loadBalancerIP": load_balancer_ip},
            "annotations": {LOAD_BALANCER_RESOURCE_GROUP: load_balancer_resource_group},
        }
    return deep_merge(base, computed)


def relative_record_name(host: str, zone: str) -> str:
    """The record set name of `host` inside `zone` (`@` for the apex)."""
    return "@" if host == zone else host.removesuffix(f".{zone}")


class Edge(pulumi.ComponentResource):
    """Traefik with Let's Encrypt on one static public IP, HTTPS-only routes, DNS and a BasicAuth dashboard.

    On `cluster.provider: aks` it owns a static Standard public IP in the stack's resource group (so DNS
    survives re-creation of the load balancer Service) and lets the AKS identity use it; on `existing`
    the Service gets whatever address the cluster assigns, and no Azure resource is created.
    """

    release: k8s.helm.v3.Release
    routing: EdgeRouting
    public_ip: pulumi.Output[str] | None
    """The static IP; None on `existing` clusters."""
    hosts: dict[str, str]
    """Published host name per service, including the dashboard (`traefik`)."""
    urls: dict[str, str]
    dashboard_user: str
    dashboard_password: pulumi.Output[str]
    dashboard_password_generated: bool
    dns_records: pulumi.Output[list[dict[str, str]]] | None
    _kubernetes_provider: k8s.Provider
    """Records the operator must create when the program does not manage DNS (no `dns` setting)."""

    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("confidential-vault:edge:Edge", name, None, opts)
        cluster = args.cluster
        self._kubernetes_provider = cluster.provider
        self.hosts = {service: f"{service}.{args.domain}" for service in (*args.services, DASHBOARD_SERVICE)}
        self.urls = {service: f"https://{host}" for service, host in self.hosts.items()}
        self.urls[DASHBOARD_SERVICE] = f"https://{self.hosts[DASHBOARD_SERVICE]}/dashboard/"

        release_dependencies: list[pulumi.Resource] = []
        if cluster.resource_group_name is not None:
            public_ip, role_assignment = self._static_ip(args)
            self.public_ip = public_ip.ip_address.apply(lambda address: address or "")
            release_dependencies = [public_ip, role_assignment]
            values = traefik_values(args.acme, args.acme_server, self.public_ip, cluster.resource_group_name)
        else:
            self.public_ip = None
            values = traefik_values(args.acme, args.acme_server)

        self.release = pinned_release(
            "traefik",
            TRAEFIK,
            release_name=RELEASE_NAME,
            namespace=NAMESPACE,
            # Helm creates the namespace: the release then waits for nothing but the cluster (and its IP).
            create_namespace=True,
            values=values,
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=release_dependencies),
        )
        self.routing = EdgeRouting(cert_resolver=CERT_RESOLVER, entry_point=ENTRY_POINT, crds=self.release)

        self.dashboard_user = args.settings.dashboard_user
        self.dashboard_password_generated = args.settings.dashboard_password is None
        self.dashboard_password = configured_or_generated(
            "traefik-dashboard-password", args.settings.dashboard_password, parent=self
        )
        self._dashboard(args)

        self.dns_records = None
        if args.dns is not None and self.public_ip is not None:
            self._dns_records(args.dns, self.public_ip)
        else:
            value: pulumi.Input[str] = (
                self.public_ip
                if self.public_ip is not None
                else f"EXTERNAL-IP of `kubectl -n {NAMESPACE} get service {RELEASE_NAME}`"
            )
            self.dns_records = pulumi.Output.from_input(value).apply(
                lambda address: [{"name": host, "type": "A", "value": address} for host in self.hosts.values()]
            )

        outputs: dict[str, Any] = {"urls": self.urls, "dashboardUser": self.dashboard_user}
        if self.public_ip is not None:
            outputs["publicIp"] = self.public_ip
        self.register_outputs(outputs)

    def _static_ip(self, args: EdgeArgs) -> tuple[network.PublicIPAddress, authorization.RoleAssignment]:
        """A static Standard IP in the stack's resource group, usable by the AKS cluster identity."""
        cluster = args.cluster
        assert cluster.resource_group_name is not None
        assert cluster.identity_principal_id is not None
        public_ip = network.PublicIPAddress(
            "ingress-ip",
            public_ip_address_name=f"pip-traefik-{args.stack}",
            resource_group_name=cluster.resource_group_name,
            location=cluster.location,
            sku=network.PublicIPAddressSkuArgs(
                name=network.PublicIPAddressSkuName.STANDARD, tier=network.PublicIPAddressSkuTier.REGIONAL
            ),
            public_ip_allocation_method=network.IPAllocationMethod.STATIC,
            public_ip_address_version=network.IPVersion.I_PV4,
            tags=cluster.azure_tags,
            # DNS records and ACME certificates point at this address: losing it by accident breaks every URL.
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        # The IP lives outside the node resource group, where AKS has no rights. The cloud provider looks the
        # address up among the group's public IPs (it is given by value, not by name), hence the group scope,
        # as in the AKS static-IP documentation.
        client = authorization.get_client_config_output()
        role_assignment = authorization.RoleAssignment(
            "aks-network-contributor",
            principal_id=cluster.identity_principal_id,
            principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
            role_definition_id=client.subscription_id.apply(
                lambda subscription: (
                    f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/"
                    f"{NETWORK_CONTRIBUTOR_ROLE}"
                )
            ),
            scope=pulumi.Output.all(client.subscription_id, cluster.resource_group_name).apply(
                lambda parts: f"/subscriptions/{parts[0]}/resourceGroups/{parts[1]}"
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return public_ip, role_assignment

    def _dashboard(self, args: EdgeArgs) -> None:
        """traefik.<domain>: `/dashboard` and `/api` of `api@internal`, behind BasicAuth."""
        provider = self._kubernetes_provider
        password_hash = stable_bcrypt_hash(
            "traefik-dashboard-password", self.dashboard_password, parent=self, variant="2y"
        )
        users = pulumi.Output.secret(password_hash.apply(lambda hashed: f"{self.dashboard_user}:{hashed}"))
        # Helm creates the namespace, so the Secret and the Middleware wait for the release.
        secret = k8s.core.v1.Secret(
            "dashboard-auth",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=DASHBOARD_SECRET, namespace=NAMESPACE),
            type="Opaque",
            string_data={"users": users},
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[self.release]),
        )
        middleware = k8s.apiextensions.CustomResource(
            "dashboard-auth",
            api_version="traefik.io/v1alpha1",
            kind="Middleware",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=DASHBOARD_MIDDLEWARE, namespace=NAMESPACE),
            spec={"basicAuth": {"secret": secret.metadata.name, "removeHeader": True}},
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[self.release]),
        )
        ingress_route(
            "traefik-dashboard",
            namespace=NAMESPACE,
            host=self.hosts[DASHBOARD_SERVICE],
            rules=[
                RouteRule(
                    Backend("api@internal", kind="TraefikService"),
                    extra_match="(PathPrefix(`/dashboard`) || PathPrefix(`/api`))",
                    middlewares=(DASHBOARD_MIDDLEWARE,),
                )
            ],
            routing=self.routing,
            parent=self,
            provider=provider,
            depends_on=[middleware],
        )

    def _dns_records(self, zone: DnsSettings, address: pulumi.Output[str]) -> None:
        """One A record per published host in the Azure DNS zone, pointing at the static IP."""
        for service, host in self.hosts.items():
            dns.RecordSet(
                f"dns-{service}",
                zone_name=zone.zone_name,
                resource_group_name=zone.resource_group_name,
                relative_record_set_name=relative_record_name(host, zone.zone_name),
                record_type="A",
                ttl=DNS_RECORD_TTL,
                a_records=[dns.ARecordArgs(ipv4_address=address)],
                opts=pulumi.ResourceOptions(parent=self),
            )

    def add_service_monitor(self, monitoring_crds: pulumi.Resource) -> None:
        """Let Prometheus scrape Traefik's metrics Service; waits for the Prometheus Operator CRDs and Traefik only."""
        k8s.apiextensions.CustomResource(
            "traefik-metrics",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="traefik", namespace=NAMESPACE),
            spec={
                "jobLabel": "app.kubernetes.io/name",
                "namespaceSelector": {"matchNames": [NAMESPACE]},
                "selector": {"matchLabels": dict(METRICS_SERVICE_LABELS)},
                "endpoints": [{"port": METRICS_PORT_NAME, "path": "/metrics", "interval": "30s"}],
            },
            opts=pulumi.ResourceOptions(
                parent=self, provider=self._kubernetes_provider, depends_on=[monitoring_crds, self.release]
            ),
        )
