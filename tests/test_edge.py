"""The edge: Traefik release, Let's Encrypt, static IP, DNS, dashboard and metrics, as the program registers them."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import bcrypt
import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.charts import TRAEFIK
from components.cluster import ClusterArgs, ConfidentialCluster
from components.config import ConfigError, load_settings
from components.edge import Edge, EdgeArgs, relative_record_name
from harness import (
    FAKE_PRINCIPAL_ID,
    FAKE_PUBLIC_IP,
    FAKE_SUBSCRIPTION_ID,
    PROJECT,
    ProgramRun,
    Registration,
    custom_resource_body,
    encode_config,
    fake_password,
    is_secret,
    run_function,
    run_program,
    validate_chart_values,
    validate_custom_resource,
    with_overrides,
)

RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
MIDDLEWARE = "kubernetes:traefik.io/v1alpha1:Middleware"
INGRESS_ROUTE = "kubernetes:traefik.io/v1alpha1:IngressRoute"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
PUBLIC_IP = "azure-native:network:PublicIPAddress"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
RECORD_SET = "azure-native:dns:RecordSet"
EDGE = "confidential-vault:edge:Edge"
# Keys of Kubernetes objects the chart passes through verbatim (PodSecurityContext, ServiceSpec) that its
# values.yaml does not list; the schema check still runs on them.
PASS_THROUGH_KEYS = (
    "podSecurityContext.fsGroup",
    "podSecurityContext.fsGroupChangePolicy",
    "service.spec.loadBalancerIP",
    "service.spec.externalTrafficPolicy",
)
STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
EXISTING = {
    "cluster": {"provider": "existing", "kubeconfigPath": "/home/operator/.kube/config"},
}


def traefik_release(run: ProgramRun) -> Registration:
    return run.one(RELEASE, "traefik")


def values(run: ProgramRun) -> dict[str, Any]:
    return traefik_release(run).inputs["values"]


def resolver(run: ProgramRun) -> dict[str, Any]:
    return values(run)["certificatesResolvers"]["letsencrypt"]["acme"]


def edge_children(run: ProgramRun) -> list[Registration]:
    """Everything registered below the edge component (any depth)."""
    edge = run.one(EDGE)
    below = {edge.urn}
    found = []
    for registration in run.registrations:
        if registration.parent in below:
            below.add(registration.urn)
            found.append(registration)
    return found


def existing_config(dev_config: dict[str, Any]) -> dict[str, Any]:
    config = {key: value for key, value in dev_config.items() if key != f"{PROJECT}:cluster"}
    return with_overrides(
        config,
        {"cluster": EXISTING["cluster"], "vault.attestation.providerUrl": "https://sharedweu.weu.attest.azure.net"},
    )


# --- the release -------------------------------------------------------------------------------


@pytest.mark.parametrize("challenge", ["tls", "http"])
def test_values_conform_to_the_chart(reference: Path, dev_config: dict[str, Any], challenge: str) -> None:
    run = run_program(with_overrides(dev_config, {"acme.challenge": challenge}))
    validate_chart_values(reference, TRAEFIK.chart, TRAEFIK.version, values(run), allowed_extra=PASS_THROUGH_KEYS)


def test_values_on_an_existing_cluster_conform(reference: Path, dev_config: dict[str, Any]) -> None:
    run = run_program(existing_config(dev_config))
    validate_chart_values(reference, TRAEFIK.chart, TRAEFIK.version, values(run), allowed_extra=PASS_THROUGH_KEYS)


def test_conformance_check_catches_the_old_redirect_key(reference: Path, stack_runs: dict[str, ProgramRun]) -> None:
    broken = json.loads(json.dumps(values(stack_runs["dev"])))
    broken["ports"]["web"]["redirectTo"] = {"port": "websecure"}
    with pytest.raises(AssertionError, match="redirectTo"):
        validate_chart_values(reference, TRAEFIK.chart, TRAEFIK.version, broken, allowed_extra=PASS_THROUGH_KEYS)


def test_release_is_the_pinned_chart_in_the_traefik_namespace(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    release = traefik_release(run)
    assert release.inputs["chart"] == "./charts/traefik-41.3.0.tgz" == TRAEFIK.path  # vendored, no repository
    assert release.inputs["version"] == TRAEFIK.version
    assert "repositoryOpts" not in release.inputs
    assert release.inputs["namespace"] == "traefik"
    assert release.inputs["createNamespace"] is True
    assert release.parent == run.one(EDGE).urn
    assert release.provider.startswith(run.one("pulumi:providers:kubernetes", "kubernetes").urn)


@pytest.mark.parametrize(("stack", "ca"), [("dev", STAGING), ("prod", PRODUCTION)])
def test_ca_server_follows_the_stack(stack: str, ca: str, stack_runs: dict[str, ProgramRun]) -> None:
    assert resolver(stack_runs[stack])["caServer"] == ca


def test_ca_server_can_be_switched_to_production(dev_config: dict[str, Any], stack_runs: dict[str, ProgramRun]) -> None:
    run = run_program(with_overrides(dev_config, {"acme.server": "production"}))
    assert resolver(run)["caServer"] == PRODUCTION
    # A fresh storage file, so no staging certificate outlives the switch.
    assert resolver(run)["storage"] != resolver(stack_runs["dev"])["storage"]


def test_resolver_uses_operator_email_and_the_persistent_volume(
    stack_runs: dict[str, ProgramRun], dev_config: dict[str, Any]
) -> None:
    run = stack_runs["dev"]
    acme = resolver(run)
    assert acme["email"] == dev_config[f"{PROJECT}:acme"]["email"]
    persistence = values(run)["persistence"]
    assert persistence["enabled"] is True
    assert Path(acme["storage"]).parent == Path(persistence["path"])
    assert acme["tlsChallenge"] is True
    assert "httpChallenge" not in acme


def test_http_challenge_on_the_web_entry_point(dev_config: dict[str, Any]) -> None:
    run = run_program(with_overrides(dev_config, {"acme.challenge": "http"}))
    acme = resolver(run)
    assert acme["httpChallenge"] == {"entryPoint": "web"}
    assert "tlsChallenge" not in acme
    # The challenge entry point is the one that keeps answering plain HTTP (and redirects everything else).
    assert "redirections" in values(run)["ports"][acme["httpChallenge"]["entryPoint"]]["http"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_acme_file_is_private_before_traefik_starts(stack: str, stack_runs: dict[str, ProgramRun]) -> None:
    chart_values = values(stack_runs[stack])
    storage = Path(resolver(stack_runs[stack])["storage"])
    persistence = chart_values["persistence"]
    (init,) = chart_values["deployment"]["initContainers"]
    script = " ".join(init["command"])
    found = re.search(r"find (\S+) -maxdepth 1 -name '([^']+)' -exec chmod -v 600 \{\} \+", script)
    assert found, script
    assert Path(found.group(1)) == storage.parent
    assert fnmatch.fnmatch(storage.name, found.group(2))
    assert {"name": persistence["name"], "mountPath": persistence["path"]} in init["volumeMounts"]
    assert ":" in init["image"]
    assert not init["image"].endswith(":latest")
    security = chart_values["podSecurityContext"]
    assert security["fsGroup"] == security["runAsGroup"] == 65532
    assert security["fsGroupChangePolicy"] == "OnRootMismatch"


def test_one_replica_replaced_not_surged(stack_runs: dict[str, ProgramRun]) -> None:
    chart_values = values(stack_runs["prod"])
    assert chart_values["deployment"]["replicas"] == 1
    assert chart_values["updateStrategy"]["type"] == "Recreate"


def test_web_redirects_permanently_to_websecure(stack_runs: dict[str, ProgramRun]) -> None:
    ports = values(stack_runs["dev"])["ports"]
    assert ports["web"]["http"]["redirections"]["entryPoint"] == {
        "to": "websecure",
        "scheme": "https",
        "permanent": True,
    }
    assert "redirectTo" not in ports["web"]


def test_release_waits_only_for_the_cluster_and_its_ip(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    release = traefik_release(run)
    cluster = run.one("confidential-vault:cluster:ConfidentialCluster")
    allowed = {r.urn for r in run.registrations if r.parent == cluster.urn}
    allowed |= {run.one(PUBLIC_IP).urn, run.one(ROLE_ASSIGNMENT, "aks-network-contributor").urn}
    waits_for = set(release.dependencies).union(*release.property_dependencies.values())
    assert waits_for <= allowed, [run.by_urn(urn).name for urn in waits_for - allowed]
    assert run.depends_on(release, run.one(PUBLIC_IP))
    assert run.depends_on(release, run.one(ROLE_ASSIGNMENT, "aks-network-contributor"))
    # Nothing of the other layers is awaited: they install in parallel.
    other_releases = [r for r in run.of_type(RELEASE) if r.urn != release.urn]
    assert not any(run.depends_on(release, other) for other in other_releases)


def test_chart_dashboard_route_is_off(stack_runs: dict[str, ProgramRun]) -> None:
    chart_values = values(stack_runs["dev"])
    assert chart_values["ingressRoute"]["dashboard"]["enabled"] is False
    assert chart_values["api"]["dashboard"] is True


# --- static IP, role assignment, DNS ---------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_static_standard_ip_wired_to_the_service(stack: str, stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs[stack]
    ip = run.one(PUBLIC_IP)
    group = run.one("azure-native:resources:ResourceGroup")
    assert ip.inputs["publicIPAllocationMethod"] == "Static"
    assert ip.inputs["sku"]["name"] == "Standard"
    assert ip.inputs["resourceGroupName"] == group.inputs["resourceGroupName"]
    assert ip.inputs["tags"]["stack"] == stack
    assert ip.protect is (stack == "prod")
    service = values(run)["service"]
    assert service["spec"]["loadBalancerIP"] == FAKE_PUBLIC_IP
    annotation = "service.beta.kubernetes.io/azure-load-balancer-resource-group"
    assert service["annotations"][annotation] == group.inputs["resourceGroupName"]
    assert run.outputs["publicIp"] == FAKE_PUBLIC_IP


def test_cluster_identity_may_use_the_ip(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    role = run.one(ROLE_ASSIGNMENT, "aks-network-contributor")
    group = run.one(PUBLIC_IP).inputs["resourceGroupName"]
    assert role.inputs["principalId"] == FAKE_PRINCIPAL_ID
    assert role.inputs["principalType"] == "ServicePrincipal"
    assert role.inputs["scope"] == f"/subscriptions/{FAKE_SUBSCRIPTION_ID}/resourceGroups/{group}"
    network_contributor = "4d97b98b-1d4f-4787-a291-c67834d212e7"
    assert role.inputs["roleDefinitionId"] == (
        f"/subscriptions/{FAKE_SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/{network_contributor}"
    )
    assert run.depends_on(role, run.one("azure-native:containerservice:ManagedCluster", "aks"))


def test_existing_cluster_gets_no_azure_resources(dev_config: dict[str, Any]) -> None:
    run = run_program(existing_config(dev_config))
    assert not [r.type for r in edge_children(run) if r.type.startswith("azure-native:")]
    assert "service" not in values(run) or "loadBalancerIP" not in values(run)["service"].get("spec", {})
    assert "publicIp" not in run.outputs
    records = run.outputs["dnsRecords"]
    assert {record["name"] for record in records} == {url.split("/")[2] for url in run.outputs["urls"].values()}
    assert all("kubectl -n traefik get service traefik" in record["value"] for record in records)


def test_dns_records_in_the_configured_zone(dev_config: dict[str, Any]) -> None:
    config = with_overrides(dev_config, {"dns": {"zoneName": "example.com", "resourceGroupName": "dns-rg"}})
    run = run_program(config)
    records = run.of_type(RECORD_SET)
    hosts = {url.split("/")[2] for url in run.outputs["urls"].values()}
    assert {f"{r.inputs['relativeRecordSetName']}.example.com" for r in records} == hosts
    assert len(records) == 4
    for record in records:
        assert record.inputs["recordType"] == "A"
        assert record.inputs["zoneName"] == "example.com"
        assert record.inputs["resourceGroupName"] == "dns-rg"
        assert record.inputs["aRecords"] == [{"ipv4Address": FAKE_PUBLIC_IP}]
        assert run.depends_on(record, run.one(PUBLIC_IP))
    assert "dnsRecords" not in run.outputs


def test_without_dns_the_output_lists_the_records(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    assert not run.of_type(RECORD_SET)
    hosts = sorted(url.split("/")[2] for url in run.outputs["urls"].values())
    records = run.outputs["dnsRecords"]
    assert sorted(record["name"] for record in records) == hosts
    assert {(record["type"], record["value"]) for record in records} == {("A", FAKE_PUBLIC_IP)}


def test_disabled_applications_get_no_host(dev_config: dict[str, Any]) -> None:
    run = run_program(with_overrides(dev_config, {"monitoring.enabled": False, "argocd.enabled": False}))
    domain = dev_config[f"{PROJECT}:domain"]
    assert run.outputs["urls"] == {
        "vault": f"https://vault.{domain}",
        "traefik": f"https://traefik.{domain}/dashboard/",
    }
    assert len(run.outputs["dnsRecords"]) == 2


def test_relative_record_names() -> None:
    assert relative_record_name("vault.dev.example.com", "example.com") == "vault.dev"
    assert relative_record_name("vault.example.com", "vault.example.com") == "@"


# --- dashboard -----------------------------------------------------------------------------------


def dashboard_users(run: ProgramRun) -> str:
    secret = run.one(SECRET, "dashboard-auth")
    assert set(secret.inputs["stringData"]) == {"users"}
    assert "data" not in secret.inputs
    return secret.inputs["stringData"]["users"]


def test_dashboard_secret_holds_one_bcrypt_line(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    user, hashed = dashboard_users(run).split(":", 1)
    assert user == run.outputs["dashboardUser"] == "admin"
    assert hashed.startswith("$2y$")
    assert bcrypt.checkpw(fake_password("traefik-dashboard-password").encode(), hashed.encode())
    assert run.outputs["dashboardPassword"] == fake_password("traefik-dashboard-password")


def test_configured_dashboard_password_is_used_and_not_exported(dev_config: dict[str, Any]) -> None:
    config = with_overrides(
        dev_config, {"edge": {"dashboardUser": "ops", "dashboardPassword": "correct-horse-battery"}}
    )
    run = run_program(config, secret_keys=[f"{PROJECT}:edge"])
    user, hashed = dashboard_users(run).split(":", 1)
    assert user == "ops"
    assert bcrypt.checkpw(b"correct-horse-battery", hashed.encode())
    assert not run.of_type("random:index/randomPassword:RandomPassword") or all(
        r.name != "traefik-dashboard-password" for r in run.of_type("random:index/randomPassword:RandomPassword")
    )
    assert "dashboardPassword" not in run.outputs
    exposed = run.plaintext()
    assert "correct-horse-battery" not in exposed
    assert hashed not in exposed


def test_password_and_hash_never_in_plaintext(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    secret = run.one(SECRET, "dashboard-auth")
    string_data = secret.raw_inputs["stringData"]
    assert is_secret(string_data) or is_secret(string_data["users"])
    assert is_secret(run.raw_outputs["dashboardPassword"])
    hashed = dashboard_users(run).split(":", 1)[1]
    exposed = run.plaintext()
    assert hashed not in exposed
    assert hashed[7:29] not in exposed  # not even the salt
    assert fake_password("traefik-dashboard-password") not in exposed


def test_hash_is_stable_across_runs(dev_config: dict[str, Any], stack_runs: dict[str, ProgramRun]) -> None:
    assert dashboard_users(run_program(dev_config)) == dashboard_users(stack_runs["dev"])


def test_dashboard_route_and_middleware(
    reference: Path, stack_runs: dict[str, ProgramRun], dev_config: dict[str, Any]
) -> None:
    run = stack_runs["dev"]
    secret = run.one(SECRET, "dashboard-auth")
    middleware = run.one(MIDDLEWARE, "dashboard-auth")
    route = run.one(INGRESS_ROUTE, "traefik-dashboard")
    validate_custom_resource(reference, custom_resource_body(middleware))
    validate_custom_resource(reference, custom_resource_body(route))

    assert middleware.inputs["spec"]["basicAuth"]["secret"] == secret.inputs["metadata"]["name"]
    assert middleware.inputs["metadata"]["namespace"] == secret.inputs["metadata"]["namespace"] == "traefik"
    (rule,) = route.inputs["spec"]["routes"]
    host = f"traefik.{dev_config[f'{PROJECT}:domain']}"
    assert rule["match"] == f"Host(`{host}`) && (PathPrefix(`/dashboard`) || PathPrefix(`/api`))"
    assert rule["services"] == [{"name": "api@internal", "kind": "TraefikService"}]
    assert rule["middlewares"] == [{"name": middleware.inputs["metadata"]["name"]}]
    assert route.inputs["spec"]["entryPoints"] == ["websecure"]
    assert route.inputs["spec"]["tls"] == {"certResolver": "letsencrypt"}
    assert route.inputs["metadata"]["namespace"] == "traefik"

    release = traefik_release(run)
    for resource in (secret, middleware, route):
        assert run.depends_on(resource, release)
        assert resource.parent == run.one(EDGE).urn
    assert run.depends_on(route, middleware)
    assert run.outputs["urls"]["traefik"] == f"https://{host}/dashboard/"


def test_every_edge_custom_resource_is_conformant(reference: Path, stack_runs: dict[str, ProgramRun]) -> None:
    resources = [r for r in edge_children(stack_runs["prod"]) if r.type in (MIDDLEWARE, INGRESS_ROUTE)]
    assert len(resources) == 2
    for resource in resources:
        validate_custom_resource(reference, custom_resource_body(resource))


# --- metrics -------------------------------------------------------------------------------------


def run_with_service_monitor(dev_config: dict[str, Any]) -> ProgramRun:
    """The edge alone, with a stand-in for the monitoring CRDs, the way __main__ wires the monitoring layer."""
    settings = load_settings(encode_config(dev_config))

    def program() -> None:
        cluster = ConfidentialCluster(
            "cluster", ClusterArgs(settings=settings.cluster, environment=settings.environment, stack="dev")
        )
        edge = Edge("edge", EdgeArgs.from_settings(settings, cluster, "dev"))
        crds = k8s.core.v1.ConfigMap("monitoring-crds", opts=pulumi.ResourceOptions(provider=cluster.provider))
        edge.add_service_monitor(crds)

    return run_function(program)


def test_service_monitor_scrapes_the_metrics_service(reference: Path, dev_config: dict[str, Any]) -> None:
    run = run_with_service_monitor(dev_config)
    monitor = run.one(SERVICE_MONITOR)
    validate_custom_resource(reference, custom_resource_body(monitor))
    prometheus = values(run)["metrics"]["prometheus"]
    assert prometheus["service"]["enabled"] is True
    assert prometheus["serviceMonitor"]["enabled"] is False  # the chart's own would wait for the CRDs
    spec = monitor.inputs["spec"]
    assert spec["selector"]["matchLabels"].items() <= prometheus["service"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [traefik_release(run).inputs["namespace"]]}
    assert monitor.inputs["metadata"]["namespace"] == traefik_release(run).inputs["namespace"]
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == "metrics"  # the port name of the chart's metrics Service
    assert endpoint["path"] == f"/{prometheus['entryPoint']}"


def test_service_monitor_waits_for_the_crds_and_traefik_only(dev_config: dict[str, Any]) -> None:
    run = run_with_service_monitor(dev_config)
    monitor = run.one(SERVICE_MONITOR)
    assert monitor.parent == run.one(EDGE).urn
    assert set(monitor.dependencies) == {
        run.one("kubernetes:core/v1:ConfigMap", "monitoring-crds").urn,
        traefik_release(run).urn,
    }
    # The release itself never waits for the monitoring layer.
    assert not run.depends_on(traefik_release(run), run.one("kubernetes:core/v1:ConfigMap", "monitoring-crds"))


# --- config --------------------------------------------------------------------------------------


def problems_of(config: dict[str, Any], secret_keys: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as error:
        load_settings(encode_config(config), secret_keys or [])
    return str(error.value)


def test_dns_needs_the_static_ip_of_an_aks_stack(dev_config: dict[str, Any]) -> None:
    config = with_overrides(
        existing_config(dev_config), {"dns": {"zoneName": "example.com", "resourceGroupName": "dns-rg"}}
    )
    assert "confidential-vault:dns: needs cluster.provider aks" in problems_of(config)


def test_dashboard_user_must_fit_htpasswd(dev_config: dict[str, Any]) -> None:
    message = problems_of(with_overrides(dev_config, {"edge.dashboardUser": "ad:min"}))
    assert "confidential-vault:edge.dashboardUser: is not a valid BasicAuth user (got 'ad:min'" in message


@pytest.mark.parametrize("password", ["short", "x" * 73])
def test_dashboard_password_length_without_revealing_it(dev_config: dict[str, Any], password: str) -> None:
    config = with_overrides(dev_config, {"edge.dashboardPassword": password})
    message = problems_of(config, [f"{PROJECT}:edge"])
    expected = "confidential-vault:edge.dashboardPassword: has the wrong length (got [secret]; allowed: 12 to 72 bytes)"
    assert expected in message
    assert password not in message


def test_dns_resource_group_is_checked(dev_config: dict[str, Any]) -> None:
    config = with_overrides(dev_config, {"dns": {"zoneName": "example.com", "resourceGroupName": "bad/group"}})
    assert "confidential-vault:dns.resourceGroupName: is not a valid resource group name (got 'bad/group'" in (
        problems_of(config)
    )
