"""`monitoring`: kube-prometheus-stack (Prometheus, Alertmanager, Grafana) and its rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, SecretStr

from components.config.alerting import AlertingSettings
from components.config.base import KubernetesName, NonZeroDuration, Problem, Quantity, Section, set_but_inapplicable

if TYPE_CHECKING:
    from components.config.settings import Settings


class MonitoringSettings(Section):
    """kube-prometheus-stack: Prometheus, Alertmanager and Grafana."""

    enabled: bool = Field(default=True, description="Deploy the monitoring stack.")
    grafana_admin_user: str = Field(default="admin", min_length=1, description="Grafana admin user name.")
    grafana_admin_password: SecretStr | None = Field(
        default=None, min_length=1, description="Grafana admin password (--secret); generated if unset."
    )
    prometheus_retention: NonZeroDuration = Field(default="15d", description="How long Prometheus keeps samples.")
    prometheus_storage_size: Quantity = Field(
        default="20Gi", description="Prometheus volume size; samples are also dropped at 85% of it."
    )
    grafana_storage_size: Quantity = Field(default="5Gi", description="Grafana volume size.")
    storage_class: KubernetesName | None = Field(
        default=None, description="Storage class of the Prometheus and Grafana volumes; unset means the default."
    )
    alerting: AlertingSettings = Field(default_factory=lambda: AlertingSettings(), description="Alert notifications.")


def monitoring_problems(settings: Settings) -> list[Problem]:
    """Monitoring keys other than `enabled` do nothing while monitoring is disabled: say so, don't ignore them."""
    monitoring = settings.monitoring
    if monitoring.enabled:
        return []
    return set_but_inapplicable(
        monitoring,
        "monitoring",
        sorted(monitoring.model_fields_set - {"enabled"}),
        "only applies when monitoring is enabled",
        "unset with monitoring.enabled false",
    )
