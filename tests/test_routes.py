"""The shared route helper: every published service goes through it."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.routes import Backend, EdgeRouting, RouteRule, ingress_route, route_spec
from harness import ProgramRun, custom_resource_body, run_function, validate_custom_resource

ROUTING = EdgeRouting(cert_resolver="letsencrypt", entry_point="websecure", crds=None)


def test_spec_serves_host_on_websecure_with_acme_tls() -> None:
    spec = route_spec("grafana.example.org", [RouteRule(Backend("grafana", 80))], ROUTING)
    assert spec["entryPoints"] == ["websecure"]
    assert spec["tls"] == {"certResolver": "letsencrypt"}
    assert spec["routes"] == [
        {
            "kind": "Rule",
            "match": "Host(`grafana.example.org`)",
            "services": [{"name": "grafana", "kind": "Service", "port": 80}],
        }
    ]


def test_grpc_rule_with_priority_and_h2c(reference: Path) -> None:
    rules = [
        RouteRule(Backend("argocd-server", 80), priority=10),
        RouteRule(
            Backend("argocd-server", 80, scheme="h2c"),
            extra_match="Header(`Content-Type`, `application/grpc`)",
            priority=11,
        ),
    ]
    spec = route_spec("argocd.example.org", rules, ROUTING)
    grpc = spec["routes"][1]
    assert grpc["match"] == "Host(`argocd.example.org`) && Header(`Content-Type`, `application/grpc`)"
    assert grpc["priority"] > spec["routes"][0]["priority"]
    assert grpc["services"][0]["scheme"] == "h2c"
    validate_custom_resource(
        reference,
        {"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute", "metadata": {"name": "argocd"}, "spec": spec},
    )


def test_route_depends_on_the_crds_and_nothing_else() -> None:
    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="fake")
        parent = pulumi.ComponentResource("test:index:App", "app")
        crds = k8s.core.v1.ConfigMap("traefik-crds", opts=pulumi.ResourceOptions(provider=provider))
        unrelated = k8s.core.v1.ConfigMap("unrelated", opts=pulumi.ResourceOptions(provider=provider))
        del unrelated
        ingress_route(
            "app",
            namespace="apps",
            host="app.example.org",
            rules=[RouteRule(Backend("app", 8080), middlewares=("auth",))],
            routing=EdgeRouting("letsencrypt", "websecure", crds),
            parent=parent,
            provider=provider,
        )

    run: ProgramRun = run_function(program)
    route = run.one("kubernetes:traefik.io/v1alpha1:IngressRoute")
    assert route.dependencies == [run.one("kubernetes:core/v1:ConfigMap", "traefik-crds").urn]
    assert route.parent == run.one("test:index:App").urn
    assert route.inputs["spec"]["routes"][0]["middlewares"] == [{"name": "auth"}]
    assert route.inputs["metadata"] == {"name": "app", "namespace": "apps"}


def test_registered_route_is_conformant(reference: Path) -> None:
    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="fake")
        parent = pulumi.ComponentResource("test:index:App", "app")
        ingress_route(
            "app",
            namespace="apps",
            host="app.example.org",
            rules=[RouteRule(Backend("api@internal", kind="TraefikService"), extra_match="PathPrefix(`/api`)")],
            routing=ROUTING,
            parent=parent,
            provider=provider,
        )

    route = run_function(program).one("kubernetes:traefik.io/v1alpha1:IngressRoute")
    validate_custom_resource(reference, custom_resource_body(route))


def test_conformance_check_rejects_unknown_fields(reference: Path) -> None:
    spec = route_spec("app.example.org", [RouteRule(Backend("app", 80))], ROUTING)
    spec["tls"] = {"certresolver": "letsencrypt"}  # the API server would prune this silently
    with pytest.raises(jsonschema.ValidationError, match="certresolver"):
        validate_custom_resource(
            reference, {"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute", "metadata": {}, "spec": spec}
        )
