"""The Alertmanager configuration for `monitoring.alerting`: routes by severity, receivers, grouping, inhibition.

Pure functions of the settings, used by `components/monitoring.py`. Secrets (webhook URLs, the SMTP password) never
enter the configuration: it names files instead (`*_file` fields), which Alertmanager reads when it sends. The files
come from one Kubernetes Secret that the chart mounts into the Alertmanager pods
(`alertmanager.alertmanagerSpec.secrets`; the operator mounts each listed Secret at `<SECRETS_MOUNT>/<name>/<key>`).

Field names are those of Alertmanager v0.34 (the chart's image), which reads `url_file` for webhooks (v0.26+) and
Microsoft Teams Workflows webhooks as `msteamsv2_configs` (v0.28+; Office 365 connectors, `msteams_configs`, are
retired by Microsoft).
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from components.config.alerting import AlertingSettings, ReceiverSettings

SECRET_NAME = "alertmanager-receivers"
SECRETS_MOUNT = "/etc/alertmanager/secrets"
NULL_RECEIVER = "null"
DEAD_MANS_SWITCH_RECEIVER = "dead-mans-switch"
# kube-prometheus-stack's always-firing alert (general.rules): it proves the whole pipeline works.
WATCHDOG_ALERT = "Watchdog"
SEVERITIES = ("critical", "warning")
DEFAULT_REPEAT_INTERVAL = {"critical": "1h", "warning": "12h"}
# A critical alert mutes the warning of the same alert about the same object. Labels absent from both count as
# equal, so this list names every label that tells two objects apart in our rules and the chart's.
INHIBIT_EQUAL = ["alertname", "namespace", "pod", "node", "instance", "cn"]
# Slack's default text is empty: say what fires and where the runbook is.
SLACK_TEXT = (
    "{{ range .Alerts }}*{{ .Labels.severity | toUpper }}* {{ .Annotations.summary }}\n"
    "{{ .Annotations.description }}\n"
    "Runbook: {{ .Annotations.runbook }}\n{{ end }}"
)

_INTEGRATIONS = {
    "webhook_url": "webhook",
    "teams_webhook_url": "Microsoft Teams",
    "slack_webhook_url": "Slack",
}


def secret_key(receiver: str, field: str) -> str:
    """Key in the receivers Secret (and file name in the pod) of a secret setting, e.g. `critical-slack-webhook-url`."""
    return f"{receiver}-{field.replace('_', '-')}"


def receiver_secrets(alerting: AlertingSettings) -> dict[str, SecretStr]:
    """Every secret the configuration refers to, by its key in the receivers Secret."""
    secrets: dict[str, SecretStr] = {}
    for severity in SEVERITIES:
        receiver: ReceiverSettings = getattr(alerting, severity)
        for field in _INTEGRATIONS:
            value = getattr(receiver, field)
            if value is not None:
                secrets[secret_key(severity, field)] = value
    if alerting.dead_mans_switch is not None:
        secrets[secret_key(DEAD_MANS_SWITCH_RECEIVER, "webhook_url")] = alerting.dead_mans_switch.webhook_url
    if alerting.smtp is not None and alerting.smtp.password is not None:
        secrets[secret_key("smtp", "password")] = alerting.smtp.password
    return secrets


def secret_file(key: str) -> str:
    """Where Alertmanager finds the receivers Secret's `key`."""
    return f"{SECRETS_MOUNT}/{SECRET_NAME}/{key}"


def _receiver(name: str, settings: ReceiverSettings) -> dict[str, Any]:
    receiver: dict[str, Any] = {"name": name}
    if settings.email:
        receiver["email_configs"] = [{"to": ", ".join(settings.email), "send_resolved": True}]
    if settings.webhook_url is not None:
        receiver["webhook_configs"] = [
            {"url_file": secret_file(secret_key(name, "webhook_url")), "send_resolved": True}
        ]
    if settings.teams_webhook_url is not None:
        receiver["msteamsv2_configs"] = [
            {"webhook_url_file": secret_file(secret_key(name, "teams_webhook_url")), "send_resolved": True}
        ]
    if settings.slack_webhook_url is not None:
        receiver["slack_configs"] = [
            {
                "api_url_file": secret_file(secret_key(name, "slack_webhook_url")),
                "send_resolved": True,
                "text": SLACK_TEXT,
            }
        ]
    return receiver


def _global(alerting: AlertingSettings) -> dict[str, Any]:
    smtp = alerting.smtp
    if smtp is None:
        return {}
    settings: dict[str, Any] = {
        "smtp_smarthost": f"{smtp.host}:{smtp.port}",
        "smtp_from": smtp.from_,
        "smtp_require_tls": smtp.require_tls,
    }
    if smtp.username is not None:
        settings["smtp_auth_username"] = smtp.username
    if smtp.password is not None:
        settings["smtp_auth_password_file"] = secret_file(secret_key("smtp", "password"))
    return settings


def alertmanager_config(alerting: AlertingSettings) -> dict[str, Any]:
    """The `alertmanager.config` chart value: what Alertmanager notifies, when, and what it keeps quiet."""
    receivers: list[dict[str, Any]] = [{"name": NULL_RECEIVER}]
    severity_routes = []
    for severity in SEVERITIES:
        settings: ReceiverSettings = getattr(alerting, severity)
        target = NULL_RECEIVER
        if settings.configured:
            receivers.append(_receiver(severity, settings))
            target = severity
        severity_routes.append(
            {
                "receiver": target,
                "matchers": [f'severity = "{severity}"'],
                "repeat_interval": settings.repeat_interval or DEFAULT_REPEAT_INTERVAL[severity],
            }
        )

    watchdog_route: dict[str, Any] = {"receiver": NULL_RECEIVER, "matchers": [f'alertname = "{WATCHDOG_ALERT}"']}
    switch = alerting.dead_mans_switch
    if switch is not None:
        receivers.append(
            {
                "name": DEAD_MANS_SWITCH_RECEIVER,
                "webhook_configs": [
                    {
                        "url_file": secret_file(secret_key(DEAD_MANS_SWITCH_RECEIVER, "webhook_url")),
                        "send_resolved": False,
                    }
                ],
            }
        )
        # Notifications leave only at group_interval ticks: a short tick keeps the ping period close to `interval`.
        watchdog_route |= {
            "receiver": DEAD_MANS_SWITCH_RECEIVER,
            "group_wait": "0s",
            "group_interval": "1m",
            "repeat_interval": switch.interval,
        }

    return {
        "global": {"resolve_timeout": "5m", **_global(alerting)},
        "route": {
            # Alerts that match no route below (severity info or none) are kept in Alertmanager's UI only.
            "receiver": NULL_RECEIVER,
            "group_by": list(alerting.group_by),
            "group_wait": alerting.group_wait,
            "group_interval": alerting.group_interval,
            "repeat_interval": DEFAULT_REPEAT_INTERVAL["warning"],
            "routes": [watchdog_route, *severity_routes],
        },
        "inhibit_rules": [
            {
                "source_matchers": ['severity = "critical"'],
                "target_matchers": ['severity = "warning"'],
                "equal": INHIBIT_EQUAL,
            }
        ],
        "receivers": receivers,
    }


def _described(settings: ReceiverSettings) -> list[str]:
    parts = [f"e-mail to {', '.join(settings.email)}"] if settings.email else []
    parts += [label for field, label in _INTEGRATIONS.items() if getattr(settings, field) is not None]
    return parts


def delivery_summary(alerting: AlertingSettings) -> dict[str, str]:
    """Where each kind of alert goes, in words, with the unconfigured paths spelled out (the `alertDelivery` output)."""
    summary = {}
    for severity in SEVERITIES:
        parts = _described(getattr(alerting, severity))
        summary[severity] = (
            "; ".join(parts)
            if parts
            else f"NOBODY is notified: set monitoring.alerting.{severity} (README, Monitoring: Alert delivery)"
        )
    switch = alerting.dead_mans_switch
    summary["watchdog"] = (
        f"dead man's switch pinged every {switch.interval}"
        if switch is not None
        else "NOT WATCHED: set monitoring.alerting.deadMansSwitch, or a broken alert pipeline goes unnoticed"
    )
    return summary
