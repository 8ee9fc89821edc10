"""Monitoring: kube-prometheus-stack with Grafana behind Traefik, the project's dashboards and alerts, and receivers.

Dashboards live as Grafana JSON in `dashboards/` and alerts as PrometheusRule specs in `alerts/`; this
component only ships them: one ConfigMap per dashboard (picked up by Grafana's sidecar) and one
PrometheusRule per alert file. Alertmanager's receivers come from `monitoring.alerting` (components/alerting.py),
their secrets from one Kubernetes Secret mounted into the Alertmanager pods.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.alerting import SECRET_NAME, alertmanager_config, delivery_summary, receiver_secrets
from components.charts import KUBE_PROMETHEUS_STACK, deep_merge, load_values, pinned_release
from components.config import MonitoringSettings, quantity_mib
from components.passwords import configured_or_generated
from components.routes import Backend, EdgeRouting, RouteRule, ingress_route

NAMESPACE = "monitoring"
# A fixed Helm release name keeps the chart's object names predictable (the Grafana Service below).
RELEASE_NAME = "kube-prometheus-stack"
# The grafana subchart names its objects `<release>-grafana` when the release name does not contain "grafana".
GRAFANA_SERVICE = f"{RELEASE_NAME}-grafana"
GRAFANA_SERVICE_PORT = 80
ADMIN_SECRET_NAME = "grafana-admin"
PROMETHEUS_RULE_API_VERSION = "monitoring.coreos.com/v1"

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS_DIR = PROJECT_ROOT / "dashboards"
ALERTS_DIR = PROJECT_ROOT / "alerts"

# Rule files about the secret store. Without its metrics (dev mode) they would fire for as long as it runs.
SECRET_STORE_RULE_FILES = frozenset({"vault", "audit"})

# Prometheus deletes the oldest blocks beyond this share of its volume, so a busy cluster cannot fill
# the disk (a full disk stops ingestion) before the time-based retention would have.
RETENTION_SIZE_SHARE = 0.85


@dataclass(frozen=True)
class MonitoringArgs:
    """Inputs of `Monitoring`."""

    settings: MonitoringSettings
    host: str
    """Public host name of Grafana, e.g. `grafana.<domain>`."""
    routing: EdgeRouting
    provider: k8s.Provider
    vault_alerts: bool = True
    """Whether the secret store is scraped (server mode); decides whether `SECRET_STORE_RULE_FILES` are applied."""


def dashboard_files() -> dict[str, dict[str, Any]]:
    """The project's Grafana dashboards by file stem, parsed from `dashboards/*.json`."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def alert_files() -> dict[str, dict[str, Any]]:
    """The project's PrometheusRule specs (`groups:`) by file stem, parsed from `alerts/*.yaml`."""
    return {path.stem: yaml.safe_load(path.read_text(encoding="utf-8")) for path in sorted(ALERTS_DIR.glob("*.yaml"))}


def retention_size(storage_size: str) -> str:
    """Prometheus `retentionSize` for a volume: a share of it, in the MB (MiB) units Prometheus accepts."""
    return f"{int(quantity_mib(storage_size) * RETENTION_SIZE_SHARE)}MB"


def release_values(
    base: dict[str, Any],
    settings: MonitoringSettings,
    host: str,
    admin_secret_name: pulumi.Input[str],
    receivers_secret_name: pulumi.Input[str] | None = None,
) -> dict[str, Any]:
    """Helm values: the base values (`values/kube-prometheus-stack.yaml`) plus what this stack's settings decide.

    No secret is here: Grafana reads its admin password from the Secret named `admin_secret_name`, Alertmanager its
    webhook URLs and SMTP password from files of the Secret `receivers_secret_name` (None when there are none).
    """
    volume: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": settings.prometheus_storage_size}},
    }
    grafana_persistence: dict[str, Any] = {"size": settings.grafana_storage_size}
    if settings.storage_class is not None:
        volume["storageClassName"] = settings.storage_class
        grafana_persistence["storageClassName"] = settings.storage_class
    computed: dict[str, Any] = {
        "alertmanager": {
            "config": alertmanager_config(settings.alerting),
            "alertmanagerSpec": {"secrets": [receivers_secret_name] if receivers_secret_name is not None else []},
        },
        "prometheus": {
            "prometheusSpec": {
                "retention": settings.prometheus_retention,
                "retentionSize": retention_size(settings.prometheus_storage_size),
                "storageSpec": {"volumeClaimTemplate": {"spec": volume}},
            }
        },
        "grafana": {
            "admin": {"existingSecret": admin_secret_name},
            "persistence": grafana_persistence,
            # Behind Traefik's TLS: redirects and links in notifications must use the public URL.
            "grafana.ini": {"server": {"domain": host, "root_url": f"https://{host}/"}},
        },
    }
    return deep_merge(base, computed)


class Monitoring(pulumi.ComponentResource):
    """Prometheus, Alertmanager and Grafana (kube-prometheus-stack) with the project's dashboards and alerts.

    Grafana is published at `https://<host>` through Traefik; its admin password comes from config or is
    generated, and only ever travels as a secret (Kubernetes Secret, secret output). Prometheus selects
    ServiceMonitors, PodMonitors, Probes and PrometheusRules of every release, not only its own.
    """

    crds: k8s.helm.v3.Release
    """The release. It installs the monitoring CRDs: what creates ServiceMonitors or PrometheusRules waits for it."""
    namespace: pulumi.Output[str]
    grafana_url: str
    grafana_admin_user: str
    grafana_admin_password: pulumi.Output[str]
    alert_delivery: dict[str, str]
    """Where critical and warning alerts and the Watchdog go, in words; says NOBODY where nothing is configured."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("confidential-vault:monitoring:Monitoring", name, None, opts)
        settings = args.settings
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)

        namespace = k8s.core.v1.Namespace("monitoring", metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE), opts=child)
        namespace_name = namespace.metadata.name

        password = configured_or_generated("grafana-admin", settings.grafana_admin_password, parent=self)
        # The Secret's keys are the ones the values tell Grafana to read, so the two cannot drift apart.
        base_values = load_values(KUBE_PROMETHEUS_STACK.chart)
        admin_keys = base_values["grafana"]["admin"]
        admin_secret = k8s.core.v1.Secret(
            "grafana-admin",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ADMIN_SECRET_NAME, namespace=namespace_name),
            type="Opaque",
            string_data={
                admin_keys["userKey"]: settings.grafana_admin_user,
                admin_keys["passwordKey"]: password,
            },
            opts=child,
        )

        secrets = receiver_secrets(settings.alerting)
        receivers_secret = None
        if secrets:
            receivers_secret = k8s.core.v1.Secret(
                "alertmanager-receivers",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=SECRET_NAME, namespace=namespace_name),
                type="Opaque",
                string_data={key: pulumi.Output.secret(value.get_secret_value()) for key, value in secrets.items()},
                opts=child,
            )
        self.alert_delivery = delivery_summary(settings.alerting)
        if not settings.alerting.critical.configured:
            pulumi.log.warn(
                "Critical alerts notify nobody: configure monitoring.alerting.critical (README, Monitoring).", self
            )

        values = release_values(
            base_values,
            settings,
            args.host,
            admin_secret.metadata.name,
            receivers_secret.metadata.name if receivers_secret is not None else None,
        )
        grafana_values = values["grafana"]

        release = pinned_release(
            "kube-prometheus-stack",
            KUBE_PROMETHEUS_STACK,
            release_name=RELEASE_NAME,
            namespace=namespace_name,
            values=values,
            # CRDs, operator and Prometheus' volume can take longer than Helm's default 5 minutes on a new cluster.
            timeout=900,
            opts=child,
        )

        # Dashboards only need the namespace: the sidecar loads them whenever Grafana comes up.
        sidecar = grafana_values["sidecar"]["dashboards"]
        for stem, dashboard in dashboard_files().items():
            k8s.core.v1.ConfigMap(
                f"dashboard-{stem}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"dashboard-{stem}",
                    namespace=namespace_name,
                    labels={sidecar["label"]: sidecar["labelValue"]},
                ),
                data={f"{stem}.json": json.dumps(dashboard, indent=2)},
                opts=child,
            )

        # Rules need the PrometheusRule CRD, i.e. the release, and nothing else.
        for stem, spec in alert_files().items():
            if stem in SECRET_STORE_RULE_FILES and not args.vault_alerts:
                continue
            k8s.apiextensions.CustomResource(
                f"alerts-{stem}",
                api_version=PROMETHEUS_RULE_API_VERSION,
                kind="PrometheusRule",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=stem, namespace=NAMESPACE),
                spec=spec,
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[release])),
            )

        ingress_route(
            "grafana",
            namespace=namespace_name,
            host=args.host,
            rules=[RouteRule(Backend(GRAFANA_SERVICE, GRAFANA_SERVICE_PORT))],
            routing=args.routing,
            parent=self,
            provider=args.provider,
        )

        self.crds = release
        self.namespace = namespace_name
        self.grafana_url = f"https://{args.host}"
        self.grafana_admin_user = settings.grafana_admin_user
        self.grafana_admin_password = password
        self.register_outputs(
            {
                "namespace": self.namespace,
                "grafanaUrl": self.grafana_url,
                "grafanaAdminUser": self.grafana_admin_user,
                "grafanaAdminPassword": self.grafana_admin_password,
                "alertDelivery": self.alert_delivery,
            }
        )
