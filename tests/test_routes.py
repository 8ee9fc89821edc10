"""The shared route helper: every published service goes through it."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.routes import Backend, EdgeRouting, RouteRule, ingress_route, passthrough_route_spec, route_spec
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


# --- TLS passthrough: the backend terminates TLS -------------------------------------------------------------------


def registered_passthrough_route(rules: list[RouteRule]) -> ProgramRun:
    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="fake")
        parent = pulumi.ComponentResource("test:index:App", "app")
        crds = k8s.core.v1.ConfigMap("traefik-crds", opts=pulumi.ResourceOptions(provider=provider))
        ingress_route(
            "vault",
            namespace="vault",
            host="vault.example.org",
            rules=rules,
            routing=EdgeRouting("letsencrypt", "websecure", crds),
            parent=parent,
            provider=provider,
            tls_passthrough=True,
        )

    return run_function(program)


def test_passthrough_route_is_a_tcp_route_by_sni_without_a_certificate(reference: Path) -> None:
    run = registered_passthrough_route([RouteRule(Backend("openbao", 8200))])
    assert run.of_type("kubernetes:traefik.io/v1alpha1:IngressRoute") == []
    route = run.one("kubernetes:traefik.io/v1alpha1:IngressRouteTCP")
    body = custom_resource_body(route)
    validate_custom_resource(reference, body)
    assert body["spec"] == {
        "entryPoints": ["websecure"],
        "routes": [{"match": "HostSNI(`vault.example.org`)", "services": [{"name": "openbao", "port": 8200}]}],
        # Traefik forwards the TLS connection unopened and orders no ACME certificate for the host.
        "tls": {"passthrough": True},
    }
    assert route.dependencies == [run.one("kubernetes:core/v1:ConfigMap", "traefik-crds").urn]
    assert route.parent == run.one("test:index:App").urn


@pytest.mark.parametrize(
    ("rules", "unmet"),
    [
        ([RouteRule(Backend("api@internal", kind="TraefikService"))], "a Kubernetes Service backend, a backend port"),
        ([RouteRule(Backend("app", 80), extra_match="PathPrefix(`/api`)")], "no extra matcher"),
        ([RouteRule(Backend("app", 80), middlewares=("auth",))], "no middlewares"),
        ([RouteRule(Backend("app", 80, scheme="h2c"), priority=11)], "no priority, no backend scheme"),
    ],
)
def test_passthrough_refuses_what_only_a_tls_terminating_route_can_do(rules: list[RouteRule], unmet: str) -> None:
    """Traefik cannot read paths or headers, run HTTP middlewares or pick a scheme inside a connection it does not
    open: such a route would be silently different from what was asked for."""
    with pytest.raises(ValueError, match=f"needs {re.escape(unmet)}$"):
        passthrough_route_spec("app.example.org", rules, ROUTING)


def test_passthrough_has_exactly_one_rule() -> None:
    rule = RouteRule(Backend("app", 80))
    with pytest.raises(ValueError, match="exactly one rule, got 2"):
        passthrough_route_spec("app.example.org", [rule, rule], ROUTING)


def test_tcp_conformance_check_rejects_unknown_fields(reference: Path) -> None:
    """The IngressRouteTCP schema is checked as strictly as the IngressRoute one: a misspelt key fails."""
    spec = passthrough_route_spec("vault.example.org", [RouteRule(Backend("openbao", 8200))], ROUTING)
    spec["tls"] = {"passThrough": True}  # the API server would prune it: Traefik would then terminate TLS
    body = {"apiVersion": "traefik.io/v1alpha1", "kind": "IngressRouteTCP", "metadata": {}, "spec": spec}
    with pytest.raises(jsonschema.ValidationError, match="passThrough"):
        validate_custom_resource(reference, body)
