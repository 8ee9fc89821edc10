"""The one way the platform publishes a service on `websecure`.

Two kinds: an HTTPS service gets a Traefik `IngressRoute` whose TLS Traefik terminates with a certificate from the
ACME resolver; a service that terminates TLS itself (the secret store's enclave) gets an `IngressRouteTCP` that
Traefik routes by SNI and passes through unopened, with no certificate of Traefik's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

INGRESS_ROUTE_API_VERSION = "traefik.io/v1alpha1"
HTTP_ROUTE_KIND = "IngressRoute"
PASSTHROUGH_ROUTE_KIND = "IngressRouteTCP"


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


def passthrough_route_spec(host: str, rules: Sequence[RouteRule], routing: EdgeRouting) -> dict[str, Any]:
    """The `spec` of an IngressRouteTCP that hands TLS connections for `host` (by SNI) to the backend unopened.

    Traefik never sees the plaintext, so there is nothing for it to match but the SNI and nothing to add: one rule,
    a Kubernetes Service port, no extra matcher, HTTP middleware, scheme or certificate resolver.
    """
    if len(rules) != 1:
        raise ValueError(f"a passthrough route for {host} has exactly one rule, got {len(rules)}")
    [rule] = rules
    backend = rule.backend
    needs = {
        "a Kubernetes Service backend": backend.kind == "Service",
        "a backend port": backend.port is not None,
        "no extra matcher": rule.extra_match is None,
        "no priority": rule.priority is None,
        "no middlewares": not rule.middlewares,
        "no backend scheme": backend.scheme is None,
    }
    unmet = [need for need, met in needs.items() if not met]
    if unmet:
        raise ValueError(f"a passthrough route for {host} needs {', '.join(unmet)}")
    return {
        "entryPoints": [routing.entry_point],
        "routes": [{"match": f"HostSNI(`{host}`)", "services": [{"name": backend.name, "port": backend.port}]}],
        "tls": {"passthrough": True},
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
    tls_passthrough: bool = False,
) -> k8s.apiextensions.CustomResource:
    """Publish `host` through Traefik. The route waits for Traefik's CRDs and for `depends_on` only.

    `tls_passthrough`: the backend terminates TLS itself; Traefik routes the connection by SNI without opening it
    (an IngressRouteTCP, no ACME certificate for `host`). Otherwise Traefik terminates TLS (an IngressRoute).
    """
    crds = [routing.crds] if routing.crds is not None else []
    spec = passthrough_route_spec(host, rules, routing) if tls_passthrough else route_spec(host, rules, routing)
    return k8s.apiextensions.CustomResource(
        name,
        api_version=INGRESS_ROUTE_API_VERSION,
        kind=PASSTHROUGH_ROUTE_KIND if tls_passthrough else HTTP_ROUTE_KIND,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, namespace=namespace),
        spec=spec,
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=[*crds, *depends_on]),
    )
