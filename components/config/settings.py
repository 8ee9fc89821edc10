"""The root of the stack configuration: every section, and the rules that belong to the stack as a whole."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from components.config.argocd import ArgoCdSettings, argocd_problems
from components.config.base import DnsName, Problem, Section
from components.config.cluster import ClusterSettings, cluster_problems
from components.config.edge import AcmeSettings, DnsSettings, EdgeSettings, edge_problems
from components.config.monitoring import MonitoringSettings, monitoring_problems
from components.config.vault import VaultSettings, vault_problems


class Settings(Section):
    """The whole stack configuration under the `confidential-vault:` namespace."""

    environment: Literal["dev", "prod", "ephemeral"] = Field(description="Kind of stack; drives safe defaults.")
    domain: DnsName = Field(description="Base domain; services are published as <service>.<domain>.")
    owner: str | None = Field(
        default=None, min_length=1, description="Team or person owning the stack (Azure `owner` tag)."
    )
    expires_at: datetime | None = Field(default=None, description="Ephemeral stacks: UTC expiry time (ISO 8601).")
    cluster: ClusterSettings = Field(default_factory=lambda: ClusterSettings(), description="Cluster settings.")
    acme: AcmeSettings = Field(default_factory=lambda: AcmeSettings(), description="Let's Encrypt settings.")
    dns: DnsSettings | None = Field(
        default=None, description="Azure DNS zone to manage records in; unset means manual DNS."
    )
    edge: EdgeSettings = Field(default_factory=lambda: EdgeSettings(), description="Traefik settings.")
    monitoring: MonitoringSettings = Field(
        default_factory=lambda: MonitoringSettings(), description="Monitoring settings."
    )
    argocd: ArgoCdSettings = Field(default_factory=lambda: ArgoCdSettings(), description="Argo CD settings.")
    vault: VaultSettings = Field(default_factory=lambda: VaultSettings(), description="Vault settings.")

    @property
    def protected(self) -> bool:
        """Prod resources are protected so `pulumi destroy` cannot delete them by accident."""
        return self.environment == "prod"

    @property
    def acme_server(self) -> Literal["staging", "production"]:
        if self.acme.server is not None:
            return self.acme.server
        return "production" if self.environment == "prod" else "staging"

    def host(self, service: str) -> str:
        """Public host name of a service, e.g. `vault.<domain>`."""
        return f"{service}.{self.domain}"


def stack_problems(settings: Settings) -> list[Problem]:
    """Rules of the top-level keys (environment, expiry)."""
    problems: list[Problem] = []
    env = settings.environment
    if env == "ephemeral" and settings.expires_at is None:
        problems.append(
            Problem(
                "expiresAt", "is required on ephemeral stacks", allowed="UTC ISO 8601 time, e.g. 2026-12-01T12:00:00Z"
            )
        )
    if env != "ephemeral" and settings.expires_at is not None:
        problems.append(
            Problem("expiresAt", "only applies to ephemeral stacks", settings.expires_at.isoformat(), "unset")
        )
    if settings.expires_at is not None and settings.expires_at.utcoffset() is None:
        problems.append(
            Problem(
                "expiresAt",
                "needs a time zone",
                settings.expires_at.isoformat(),
                "UTC ISO 8601 time, e.g. 2026-12-01T12:00:00Z",
            )
        )
    return problems


# Each section's cross-key rules, in the order their problems are listed.
SECTION_RULES = (stack_problems, monitoring_problems, cluster_problems, argocd_problems, edge_problems, vault_problems)
