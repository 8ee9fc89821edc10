"""Monitoring: kube-prometheus-stack release, Grafana admin secret and route, dashboards and alert rules."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from components.charts import KUBE_PROMETHEUS_STACK, TRAEFIK, deep_merge
from components.config import MonitoringSettings, quantity_mib
from components.monitoring import Monitoring, MonitoringArgs
from components.routes import EdgeRouting
from harness import (
    PROJECT,
    PROJECT_ROOT,
    ProgramRun,
    Registration,
    chart_values_file,
    custom_resource_body,
    fake_password,
    is_secret,
    run_failing,
    run_function,
    run_program,
    unknown_value_keys,
    validate_chart_values,
    validate_custom_resource,
    with_overrides,
)

RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
ROUTE = "kubernetes:traefik.io/v1alpha1:IngressRoute"
RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
SERVICE_MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
COMPONENT = "confidential-vault:monitoring:Monitoring"
GRAFANA_CHART = ("grafana", "12.11.1")  # the subchart kube-prometheus-stack 88.5.3 ships (Chart.lock)
# Grafana's own config file: `server.root_url` is documented in the subchart's values.yaml comments only.
GRAFANA_INI_EXTRA = ("grafana.ini.server.root_url",)

DASHBOARD_FILES = sorted((PROJECT_ROOT / "dashboards").glob("*.json"))
ALERT_FILES = sorted((PROJECT_ROOT / "alerts").glob("*.yaml"))

# Metric names the exporters deployed here really expose. A query using anything else shows "No data" forever.
KNOWN_METRICS: dict[str, set[str]] = {
    # Prometheus itself, per scrape target.
    "prometheus": {"up"},
    # OpenBao telemetry, which keeps Vault's names (openbao/openbao v2.6.2: SetupTelemetry ServiceName "vault" in
    # command/server.go; docs in website/content/partials/telemetry-metrics/vault/): vault.core.unsealed (gauge,
    # vault/core_metrics.go), vault.core.handle_request / handle_login_request (MeasureSince summaries in ms,
    # vault/request_handling.go; the Prometheus sink adds _sum and _count), vault.token.count (gauge per
    # usage_gauge_period), vault.expire.num_leases (gauge, vault/expiration.go). Dots become underscores with the
    # `vault_` prefix.
    "vault": {
        "vault_core_unsealed",
        "vault_core_handle_request",
        "vault_core_handle_request_sum",
        "vault_core_handle_request_count",
        "vault_core_handle_login_request_count",
        "vault_token_count",
        "vault_expire_num_leases",
        # Audit broker (vault/audit_broker.go, openbao/openbao v2.6.2): counters vault.audit.log_request_failure
        # and vault.audit.log_response_failure, incremented by 0 or 1 for every request and response.
        "vault_audit_log_request_failure",
        "vault_audit_log_response_failure",
        # HA state (vault/core_metrics.go metricsLoop, openbao/openbao v2.6.2): gauge vault.core.active, 1 on the
        # active server and 0 on standbys, refreshed on every unsealed server.
        "vault_core_active",
    },
    # kube-state-metrics docs/metrics (node-metrics.md, pod-metrics.md, daemonset-metrics.md) and
    # internal/store/{node,pod,daemonset}.go.
    "kube-state-metrics": {
        "kube_node_status_allocatable",
        "kube_node_status_capacity",
        "kube_node_status_condition",
        "kube_node_spec_unschedulable",
        "kube_pod_container_resource_requests",
        "kube_pod_container_status_restarts_total",
        "kube_pod_status_phase",
        "kube_pod_status_ready",
        "kube_pod_info",
        "kube_daemonset_status_desired_number_scheduled",
        "kube_daemonset_status_number_ready",
        "kube_daemonset_status_number_available",
        # statefulset-metrics.md: the desired replicas (spec.replicas).
        "kube_statefulset_replicas",
    },
    # Traefik metrics overview (doc.traefik.io/traefik/observability/metrics/overview): TLS certificates
    # expiration `traefik_tls_certs_not_after`, labels cn, sans, serial.
    "traefik": {"traefik_tls_certs_not_after"},
}
ALL_KNOWN_METRICS = set().union(*KNOWN_METRICS.values())

_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not labels, functions, keywords or literals."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings (label values)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in _PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    for path in DASHBOARD_FILES:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name}:{panel['title']}", target["expr"]


def rule_exprs() -> Iterator[tuple[str, str]]:
    for path in ALERT_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield f"{path.name}:{rule['alert']}", rule["expr"]


def kps_release(run: ProgramRun) -> Registration:
    return next(r for r in run.of_type(RELEASE) if r.inputs["chart"] == KUBE_PROMETHEUS_STACK.path)


def effective_values(reference: Path, run: ProgramRun) -> dict[str, Any]:
    """What the chart renders with: its defaults with the registered values merged in."""
    chart = chart_values_file(reference, KUBE_PROMETHEUS_STACK.chart, KUBE_PROMETHEUS_STACK.version)
    return deep_merge(chart, kps_release(run).inputs["values"])


def _overlaps(path: str, others: list[str]) -> bool:
    """Whether a dotted key unknown to one chart is unknown to the other too (same key, or one inside the other)."""
    return any(path == other or path.startswith(f"{other}.") or other.startswith(f"{path}.") for other in others)


# --- release and values ---------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_values_conform_to_the_chart_and_its_grafana_subchart(
    reference: Path, stack_runs: dict[str, ProgramRun], stack: str
) -> None:
    values = kps_release(stack_runs[stack]).inputs["values"]
    kps_chart = chart_values_file(reference, KUBE_PROMETHEUS_STACK.chart, KUBE_PROMETHEUS_STACK.version)
    grafana_chart = chart_values_file(reference, *GRAFANA_CHART)
    # Keys under `grafana:` are passed to the subchart: either chart may know them, but one must.
    unknown_to_kps = list(unknown_value_keys(values, kps_chart))
    unknown_to_grafana = [
        f"grafana.{key}" for key in unknown_value_keys(values["grafana"], grafana_chart) if key not in GRAFANA_INI_EXTRA
    ]
    known_by_grafana = tuple(
        key for key in unknown_to_kps if key.startswith("grafana.") and not _overlaps(key, unknown_to_grafana)
    )
    known_by_kps = tuple(
        key.removeprefix("grafana.") for key in unknown_to_grafana if not _overlaps(key, unknown_to_kps)
    )
    validate_chart_values(
        reference, KUBE_PROMETHEUS_STACK.chart, KUBE_PROMETHEUS_STACK.version, values, known_by_grafana
    )
    validate_chart_values(reference, *GRAFANA_CHART, values["grafana"], known_by_kps + GRAFANA_INI_EXTRA)


def test_conformance_check_catches_a_misspelt_grafana_key(reference: Path, stack_runs: dict[str, ProgramRun]) -> None:
    values = deep_merge(kps_release(stack_runs["dev"]).inputs["values"], {"grafana": {"persistance": {"size": "1Gi"}}})
    kps_chart = chart_values_file(reference, KUBE_PROMETHEUS_STACK.chart, KUBE_PROMETHEUS_STACK.version)
    grafana_chart = chart_values_file(reference, *GRAFANA_CHART)
    assert "grafana.persistance" in list(unknown_value_keys(values, kps_chart))
    assert "persistance" in list(unknown_value_keys(values["grafana"], grafana_chart))


def test_release_is_the_pinned_chart_in_the_monitoring_namespace(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    release = kps_release(run)
    assert release.inputs["version"] == KUBE_PROMETHEUS_STACK.version
    assert release.inputs["chart"] == "./charts/kube-prometheus-stack-88.5.3.tgz"  # vendored, no repository
    assert "repositoryOpts" not in release.inputs
    namespace = run.one("kubernetes:core/v1:Namespace", "monitoring")
    assert release.inputs["namespace"] == namespace.inputs["metadata"]["name"] == "monitoring"
    assert release.parent == run.one(COMPONENT).urn
    # Helm releases never wait for each other: not for Traefik, not for anything but the namespace and the secret.
    waits_for = {run.by_urn(urn).type for urn in release.dependencies}
    assert waits_for == {"kubernetes:core/v1:Namespace", SECRET}


def test_every_selector_is_open_to_other_releases(reference: Path, stack_runs: dict[str, ProgramRun]) -> None:
    spec = effective_values(reference, stack_runs["dev"])["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "podMonitor", "rule", "probe"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False, kind
        assert spec[f"{kind}Selector"] == {}, kind  # empty + NilUsesHelmValues false = everything
        assert spec[f"{kind}NamespaceSelector"] == {}, kind  # all namespaces


def test_aks_managed_control_plane_is_not_scraped(stack_runs: dict[str, ProgramRun]) -> None:
    values = kps_release(stack_runs["dev"]).inputs["values"]
    for component in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
        assert values[component]["enabled"] is False


def test_retention_and_volumes_follow_config(dev_config: dict[str, Any]) -> None:
    config = with_overrides(
        dev_config,
        {
            "monitoring.prometheusRetention": "30d",
            "monitoring.prometheusStorageSize": "50Gi",
            "monitoring.grafanaStorageSize": "8Gi",
            "monitoring.storageClass": "managed-csi-premium",
        },
    )
    values = kps_release(run_program(config)).inputs["values"]
    spec = values["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "30d"
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "50Gi"
    assert claim["storageClassName"] == "managed-csi-premium"
    # Size-based retention must trigger before the volume is full, and not waste most of it.
    size = re.fullmatch(r"(\d+)MB", spec["retentionSize"])
    assert size is not None
    assert 0.7 * quantity_mib("50Gi") <= int(size.group(1)) < quantity_mib("50Gi")
    persistence = values["grafana"]["persistence"]
    assert persistence["enabled"] is True
    assert persistence["size"] == "8Gi"
    assert persistence["storageClassName"] == "managed-csi-premium"
    # A ReadWriteOnce volume cannot move to a surge pod.
    assert values["grafana"]["deploymentStrategy"] == {"type": "Recreate"}


def test_defaults_when_unset(stack_runs: dict[str, ProgramRun]) -> None:
    # The documented defaults (README config reference).
    values = kps_release(stack_runs["dev"]).inputs["values"]
    spec = values["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "15d"
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert "storageClassName" not in spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert values["grafana"]["persistence"]["size"] == "5Gi"


# --- Grafana admin credentials ---------------------------------------------------------------------


def test_admin_credentials_come_from_the_secret(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    grafana = kps_release(run).inputs["values"]["grafana"]
    secret = run.one(SECRET, "grafana-admin")
    admin = grafana["admin"]
    assert admin["existingSecret"] == secret.inputs["metadata"]["name"]
    assert secret.inputs["metadata"]["namespace"] == kps_release(run).inputs["namespace"]
    data = secret.inputs["stringData"]
    assert data[admin["userKey"]] == "admin" == run.outputs["grafanaAdminUser"]
    assert data[admin["passwordKey"]] == fake_password("grafana-admin") == run.outputs["grafanaAdminPassword"]
    assert "adminPassword" not in grafana


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_generated_admin_password_is_never_plaintext(stack_runs: dict[str, ProgramRun], stack: str) -> None:
    run = stack_runs[stack]
    password = fake_password("grafana-admin")
    assert is_secret(run.raw_outputs["grafanaAdminPassword"])
    secret = run.one(SECRET, "grafana-admin")
    data = secret.raw_inputs["stringData"]
    assert is_secret(data) or is_secret(data["admin-password"])
    exposed = run.plaintext()
    assert password not in exposed


def test_configured_admin_password_is_used_and_never_plaintext(dev_config: dict[str, Any]) -> None:
    config = with_overrides(dev_config, {"monitoring.grafanaAdminPassword": "grafana-from-config-8f2k"})
    run = run_program(config, secret_keys=[f"{PROJECT}:monitoring"])
    assert "grafana-admin" not in {r.name for r in run.of_type("random:index/randomPassword:RandomPassword")}
    assert run.outputs["grafanaAdminPassword"] == "grafana-from-config-8f2k"
    assert run.one(SECRET, "grafana-admin").inputs["stringData"]["admin-password"] == "grafana-from-config-8f2k"
    exposed = run.plaintext()
    assert "grafana-from-config-8f2k" not in exposed


def test_admin_password_in_plaintext_config_is_refused(dev_config: dict[str, Any]) -> None:
    config = with_overrides(dev_config, {"monitoring.grafanaAdminPassword": "plain-grafana-pw"})
    error, _ = run_failing(config)
    assert f"{PROJECT}:monitoring.grafanaAdminPassword: is a secret but stored in plaintext" in str(error)
    assert "plain-grafana-pw" not in str(error)


# --- route ----------------------------------------------------------------------------------------


def test_grafana_is_published_through_traefik(
    reference: Path, stack_runs: dict[str, ProgramRun], dev_config: dict[str, Any]
) -> None:
    run = stack_runs["dev"]
    host = f"grafana.{dev_config[f'{PROJECT}:domain']}"
    route = run.one(ROUTE, "grafana")
    validate_custom_resource(reference, custom_resource_body(route))
    (rule,) = route.inputs["spec"]["routes"]
    assert rule["match"] == f"Host(`{host}`)"
    # The grafana subchart names its Service `<release>-grafana` (grafana.fullname), port 80 by default.
    assert rule["services"] == [{"name": f"{kps_release(run).inputs['name']}-grafana", "kind": "Service", "port": 80}]
    assert route.inputs["metadata"]["namespace"] == "monitoring"
    traefik = next(r for r in run.of_type(RELEASE) if r.inputs["chart"] == TRAEFIK.path)
    assert run.depends_on(route, traefik)
    assert not run.depends_on(route, kps_release(run))
    grafana_ini = kps_release(run).inputs["values"]["grafana"]["grafana.ini"]["server"]
    assert grafana_ini["root_url"] == f"https://{host}/" == run.outputs["grafanaUrl"] + "/"


def test_component_alone_routes_through_the_given_edge() -> None:
    """The component needs nothing of the edge but `EdgeRouting`: its route waits for the stand-in CRDs only."""

    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="fake")
        crds = k8s.core.v1.ConfigMap("traefik-crds-standin", opts=pulumi.ResourceOptions(provider=provider))
        Monitoring(
            "monitoring",
            MonitoringArgs(
                settings=MonitoringSettings(),
                host="grafana.example.org",
                routing=EdgeRouting(cert_resolver="letsencrypt", entry_point="websecure", crds=crds),
                provider=provider,
            ),
        )

    run = run_function(program)
    route = run.one(ROUTE, "grafana")
    assert route.inputs["spec"]["tls"] == {"certResolver": "letsencrypt"}
    assert run.depends_on(route, run.one(CONFIG_MAP, "traefik-crds-standin"))
    component = run.one(COMPONENT)
    provider_urn = run.one("pulumi:providers:kubernetes").urn
    children = [r for r in run.registrations if r.parent == component.urn and r.type.startswith("kubernetes:")]
    assert children
    assert all(r.provider.startswith(provider_urn) for r in children)


# --- dashboards -----------------------------------------------------------------------------------


def test_dashboards_ship_as_configmaps_for_the_sidecar(reference: Path, stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    sidecar = effective_values(reference, run)["grafana"]["sidecar"]["dashboards"]
    assert sidecar["enabled"] is True
    assert DASHBOARD_FILES, "no dashboards in dashboards/"
    for path in DASHBOARD_FILES:
        config_map = run.one(CONFIG_MAP, f"dashboard-{path.stem}")
        assert config_map.inputs["metadata"]["labels"] == {sidecar["label"]: sidecar["labelValue"]}
        assert config_map.inputs["metadata"]["namespace"] == "monitoring"
        (content,) = config_map.inputs["data"].values()
        assert json.loads(content) == json.loads(path.read_text())
        assert not run.depends_on(config_map, kps_release(run))  # the sidecar picks them up whenever


def test_dashboards_parse_and_have_unique_uids() -> None:
    dashboards = [json.loads(path.read_text()) for path in DASHBOARD_FILES]
    assert {"vault", "sgx"} <= {path.stem for path in DASHBOARD_FILES}
    uids = [dashboard["uid"] for dashboard in dashboards]
    assert len(set(uids)) == len(uids)
    for dashboard in dashboards:
        assert dashboard["title"]
        assert dashboard["panels"]
        assert all(panel["type"] == "row" or panel.get("targets") for panel in dashboard["panels"])


def _datasource_refs(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        if "datasource" in node:
            yield node["datasource"]
        for value in node.values():
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item)


def test_dashboards_reference_only_provisioned_data_sources(reference: Path, stack_runs: dict[str, ProgramRun]) -> None:
    datasources = effective_values(reference, stack_runs["dev"])["grafana"]["sidecar"]["datasources"]
    defined = {}
    if datasources["enabled"] and datasources["defaultDatasourceEnabled"]:
        defined[datasources["uid"]] = "prometheus"
    if datasources["alertmanager"]["enabled"]:
        defined[datasources["alertmanager"]["uid"]] = "alertmanager"
    for path in DASHBOARD_FILES:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert "datasource" in panel, panel["title"]
                assert all("datasource" in t for t in panel["targets"]), panel["title"]
        for ref in _datasource_refs(dashboard):
            assert isinstance(ref, dict), f"{path.name}: data source by name, not uid: {ref!r}"
            assert defined.get(ref["uid"]) == ref["type"], f"{path.name}: undefined data source {ref}"


# --- PromQL metric names --------------------------------------------------------------------------


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (node) (rate(vault_core_handle_request_count{job=~"a|b"}[5m]) * on (pod) group_left () up) '
        "/ ignoring (x) kube_pod_info > bool 0.5 unless absent(up) or vector(0)"
    )
    assert metric_names(expr) == {"vault_core_handle_request_count", "up", "kube_pod_info"}


@pytest.mark.parametrize(("source", "expr"), [*dashboard_exprs(), *rule_exprs()])
def test_queries_use_only_metrics_the_exporters_expose(source: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{source}: no metric found in {expr!r}"
    assert names <= ALL_KNOWN_METRICS, f"{source}: unknown metrics {names - ALL_KNOWN_METRICS}"


@pytest.mark.parametrize(("source", "expr"), [*dashboard_exprs(), *rule_exprs()])
def test_epc_selectors_use_kube_state_metrics_naming(source: str, expr: str) -> None:
    # kube-state-metrics sanitises extended resource names and reports them with unit "integer" (store/node.go).
    assert "sgx.intel.com" not in expr, source
    for selector in re.findall(r"\{[^}]*\}", expr):
        if "sgx" in selector and "resource" in selector:
            assert 'resource="sgx_intel_com_epc"' in selector, (source, selector)
            assert 'unit="integer"' in selector, (source, selector)


# --- alert rules ----------------------------------------------------------------------------------


def test_secret_store_alerts_only_when_it_is_scraped(dev_config: dict[str, Any]) -> None:
    secret_store = {"alerts-vault", "alerts-audit"}
    dev_mode = run_program(with_overrides(dev_config, {"vault.mode": "dev"}))
    assert not secret_store & {r.name for r in dev_mode.of_type(RULE)}
    assert {"alerts-sgx", "alerts-certificates"} <= {r.name for r in dev_mode.of_type(RULE)}
    server_mode = run_program(dev_config)
    assert secret_store <= {r.name for r in server_mode.of_type(RULE)}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_rules_are_conformant_prometheus_rules(reference: Path, stack_runs: dict[str, ProgramRun], stack: str) -> None:
    run = stack_runs[stack]
    rules = run.of_type(RULE)
    assert sorted(r.name for r in rules) == sorted(f"alerts-{path.stem}" for path in ALERT_FILES)
    for registration in rules:
        validate_custom_resource(reference, custom_resource_body(registration))
        for group in registration.inputs["spec"]["groups"]:
            for rule in group["rules"]:
                assert {"summary", "description", "runbook"} <= rule["annotations"].keys(), rule["alert"]
                assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]


def test_required_alerts_exist() -> None:
    """The conditions the platform must page or warn about, by the metrics that show them and their severity."""
    shipped: dict[tuple[str, str], str] = {}
    for path in ALERT_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                shipped[(rule["alert"], rule["labels"]["severity"])] = rule["expr"]

    def severities(metric: str, *, also: str = "") -> set[str]:
        return {severity for (_, severity), expr in shipped.items() if metric in metric_names(expr) and also in expr}

    assert "critical" in severities("vault_core_unsealed")  # sealed secret store
    assert "critical" in severities("up", also="openbao")  # secret store down
    assert severities("vault_audit_log_request_failure") == {"critical"}  # audit failing: requests refused
    assert severities("vault_audit_log_response_failure") == {"critical"}
    assert "critical" in severities("kube_pod_status_ready", also='created_by_name="sgx-plugin"')  # SGX plugin
    assert "warning" in severities("kube_node_status_allocatable", also="kube_pod_container_resource_requests")  # EPC
    assert severities("traefik_tls_certs_not_after") == {"warning", "critical"}  # certificate expiry


def test_rules_wait_for_the_crds_only(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    assert run.of_type(RULE)
    for registration in run.of_type(RULE):
        assert set(registration.dependencies) == {kps_release(run).urn}, registration.name


def test_traefik_service_monitor_waits_for_this_release(stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs["dev"]
    assert run.depends_on(run.one(SERVICE_MONITOR, "traefik-metrics"), kps_release(run))


# --- disabled -------------------------------------------------------------------------------------


def test_disabled_monitoring_creates_nothing(dev_config: dict[str, Any]) -> None:
    run = run_program(with_overrides(dev_config, {"monitoring": {"enabled": False}}))
    assert not [r for r in run.of_type(RELEASE) if r.inputs["chart"] == KUBE_PROMETHEUS_STACK.path]
    assert not run.of_type(COMPONENT)
    assert not run.of_type(RULE)
    assert not run.of_type(SERVICE_MONITOR)
    assert not [r for r in run.of_type(CONFIG_MAP) if r.name.startswith("dashboard-")]
    assert not [r for r in run.registrations if "grafana" in r.name]
    assert not [r for r in run.of_type("kubernetes:core/v1:Namespace") if r.inputs["metadata"]["name"] == "monitoring"]
    assert not {key for key in run.outputs if key.startswith("grafana")}
    assert "alertDelivery" not in run.outputs


def test_monitoring_settings_while_disabled_are_a_config_error(dev_config: dict[str, Any]) -> None:
    config = with_overrides(dev_config, {"monitoring": {"enabled": False, "prometheusRetention": "30d"}})
    error, run = run_failing(config)
    assert (
        f"{PROJECT}:monitoring.prometheusRetention: only applies when monitoring is enabled "
        "(got '30d'; allowed: unset with monitoring.enabled false)"
    ) in str(error)
    assert not run.registrations
