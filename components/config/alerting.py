"""`monitoring.alerting`: who Alertmanager notifies, by severity, and the rules that relate those keys.

Every receiver is a fixed object rather than an entry in a list, so that the check for secrets stored in plaintext
(which walks nested objects) covers each webhook URL and the SMTP password.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, SecretStr

from components.config.base import Duration, Problem, Section, check

if TYPE_CHECKING:
    from components.config.settings import Settings

_EMAIL = re.compile(r"^[^@\s,<>\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

EmailAddress = Annotated[str, check(_EMAIL, "is not an e-mail address", "name@domain")]
LabelName = Annotated[str, check(_LABEL_NAME, "is not a Prometheus label name", "letters, digits, _; e.g. alertname")]


class SmtpSettings(Section):
    """The mail server every e-mail receiver sends through."""

    host: Annotated[str, check(_HOST, "is not a host name", "e.g. smtp.office365.com")] = Field(
        description="SMTP server host name."
    )
    port: int = Field(default=587, ge=1, le=65535, description="SMTP port: 587 (STARTTLS) or 465 (implicit TLS).")
    from_: EmailAddress = Field(alias="from", description="Sender address of alert e-mails.")
    username: str | None = Field(default=None, min_length=1, description="SMTP login; unset sends without login.")
    password: SecretStr | None = Field(default=None, description="SMTP password (--secret); needs `username`.")
    require_tls: bool = Field(default=True, description="Refuse to send unless the server offers STARTTLS.")


class ReceiverSettings(Section):
    """Where alerts of one severity go; any combination of the four integrations."""

    email: list[EmailAddress] = Field(default_factory=list, description="Addresses to mail (needs `smtp`).")
    webhook_url: SecretStr | None = Field(
        default=None, description="Generic webhook: Alertmanager POSTs its JSON payload here (--secret)."
    )
    teams_webhook_url: SecretStr | None = Field(
        default=None, description="Microsoft Teams Workflows webhook URL (--secret)."
    )
    slack_webhook_url: SecretStr | None = Field(default=None, description="Slack incoming webhook URL (--secret).")
    repeat_interval: Duration | None = Field(
        default=None, description="Resend a still-firing group this often; default 1h (critical), 12h (warning)."
    )

    @property
    def configured(self) -> bool:
        """Whether anything is notified at all."""
        return bool(self.email or self.webhook_url or self.teams_webhook_url or self.slack_webhook_url)


class DeadMansSwitchSettings(Section):
    """An external heartbeat monitor that raises the alarm when Alertmanager's pings stop."""

    webhook_url: SecretStr = Field(
        description="URL pinged while the always-firing Watchdog alert arrives (e.g. healthchecks.io; --secret)."
    )
    interval: Duration = Field(
        default="5m", description="Ping period; set the monitor's expected period to this plus a grace time."
    )


class AlertingSettings(Section):
    """Alertmanager notifications: `critical` alerts page, `warning` alerts go to a channel."""

    critical: ReceiverSettings = Field(
        default_factory=lambda: ReceiverSettings(), description="Receiver of severity=critical alerts (paging)."
    )
    warning: ReceiverSettings = Field(
        default_factory=lambda: ReceiverSettings(), description="Receiver of severity=warning alerts (a channel)."
    )
    dead_mans_switch: DeadMansSwitchSettings | None = Field(
        default=None, description="Heartbeat monitor of the Watchdog alert; unset, a dead pipeline goes unnoticed."
    )
    smtp: SmtpSettings | None = Field(default=None, description="Mail server for e-mail receivers.")
    group_by: list[LabelName] = Field(
        default_factory=lambda: ["alertname", "namespace"],
        min_length=1,
        description="Labels that make alerts one notification.",
    )
    group_wait: Duration = Field(default="30s", description="Wait this long to batch a new group's first alerts.")
    group_interval: Duration = Field(default="5m", description="Wait this long before notifying a group's changes.")


def alerting_problems(settings: Settings) -> list[Problem]:
    """E-mail needs a mail server, and a mail server that nothing uses is a mistake worth naming."""
    if not settings.monitoring.enabled:
        return []  # monitoring_problems already reports every alerting key as inapplicable
    alerting = settings.monitoring.alerting
    prefix = "monitoring.alerting"
    problems: list[Problem] = []
    mailing = [name for name in ("critical", "warning") if getattr(alerting, name).email]
    if mailing and alerting.smtp is None:
        problems.append(
            Problem(
                f"{prefix}.smtp",
                f"is required: {' and '.join(f'{prefix}.{name}.email' for name in mailing)} send e-mail",
                allowed="host, port, from, username, password",
            )
        )
    if alerting.smtp is not None and not mailing:
        problems.append(
            Problem(
                f"{prefix}.smtp",
                "is set but no receiver sends e-mail",
                allowed=f"unset, or addresses in {prefix}.critical.email / {prefix}.warning.email",
            )
        )
    if alerting.smtp is not None and alerting.smtp.password is not None and alerting.smtp.username is None:
        problems.append(
            Problem(f"{prefix}.smtp.password", "needs a user name", allowed=f"set {prefix}.smtp.username too")
        )
    return problems
