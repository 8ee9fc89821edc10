"""The one way the platform publishes an HTTP service: a Traefik `IngressRoute` on `websecure` with ACME TLS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

INGRESS_ROUTE_API_VERSION = "traefik.io/v1alpha1"


@dataclass(frozen=True)
class EdgeRouting:
    """What an application needs from the edge to publish a route.

    `crds` is the resource that installs Traefik's CRDs (the Traefik release): routes depend on it and
    on nothing else of the edge, so applications deploy in parallel with Traefik's rollout.
    """

    cert_resolver: str
    entry_point: str
    crds: pulumi.Resource | None


@dataclass(frozen=True)
class Backend:
    """A route target: a Service port, or a TraefikService such as `api@internal`."""

    name: str
    port: int | str | None = None
    kind: str = "Service"
    scheme: str | None = None  # "h2c" for gRPC backends


@dataclass(frozen=True)
class RouteRule:
    """One rule of a route: `Host(host)` plus an optional extra matcher, its backend and middlewares."""

    backend: Backend
    extra_match: str | None = None
    priority: int | None = None
    middlewares: Sequence[str] = field(default_factory=tuple)


def route_spec(host: str, rules: Sequence[RouteRule], routing: EdgeRouting) -> dict[str, Any]:
    """The `spec` of an IngressRoute serving `host` over HTTPS with a certificate from the resolver."""
    route_rules = []
    for rule in rules:
        match = f"Host(`{host}`)" + (f" && {rule.extra_match}" if rule.extra_match else "")
        service: dict[str, Any] = {"name": rule.backend.name, "kind": rule.backend.kind}
        if rule.backend.port is not None:
            service["port"] = rule.backend.port
        if rule.backend.scheme is not None:
            service["scheme"] = rule.backend.scheme
        route_rule: dict[str, Any] = {"kind": "Rule", "match": match, "services": [service]}
        if rule.priority is not None:
            route_rule["priority"] = rule.priority
        if rule.middlewares:
            route_rule["middlewares"] = [{"name": name} for name in rule.middlewares]
        route_rules.append(route_rule)
    return {
        "entryPoints": [routing.entry_point],
        "routes": route_rules,
        "tls": {"certResolver": routing.cert_resolver},
    }


def ingress_route(
    name: str,
    *,
    namespace: pulumi.Input[str],
    host: str,
    rules: Sequence[RouteRule],
    routing: EdgeRouting,
    parent: pulumi.Resource,
    provider: pulumi.ProviderResource,
    depends_on: Sequence[pulumi.Resource] = (),
) -> k8s.apiextensions.CustomResource:
    """Publish `host` through Traefik. The route waits for Traefik's CRDs and for `depends_on` only."""
    crds = [routing.crds] if routing.crds is not None else []
    return k8s.apiextensions.CustomResource(
        name,
        api_version=INGRESS_ROUTE_API_VERSION,
        kind="IngressRoute",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace),
        spec=route_spec(host, rules, routing),
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=[*crds, *depends_on]),
    )
