"""The root of the stack configuration: every section, and the rules that belong to the stack as a whole."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PrivateAttr

from components.config.alerting import alerting_problems
from components.config.argocd import ArgoCdSettings, argocd_problems
from components.config.base import (
    DNS_NAME_MAX,
    SECRET,
    DnsName,
    InvalidValueError,
    Problem,
    Section,
    is_under,
)
from components.config.cluster import (
    TAG_VALUE_MAX,
    ClusterSettings,
    cluster_problems,
    empty_sgx_pool_problems,
    owner_problems,
)
from components.config.database import database_server_problems, openbao_replica_problems, storage_problems
from components.config.edge import (
    AcmeSettings,
    DnsSettings,
    EdgeSettings,
    acme_problems,
    dns_provider_problems,
    dns_zone_problems,
)
from components.config.monitoring import MonitoringSettings, monitoring_problems
from components.config.seal import vault_unseal_problems
from components.config.vault import (
    VaultSettings,
    vault_attestation_problems,
    vault_environment_problems,
    vault_epc_problems,
    vault_image_problems,
)

# The services published as `<service>.<domain>`: every one of these host names must be a valid DNS name.
PUBLIC_SERVICES = ("vault", "grafana", "argocd", "traefik")
_LONGEST_PREFIX = max(len(service) + 1 for service in PUBLIC_SERVICES)
_TIME = "UTC ISO 8601 time, e.g. 2026-12-01T12:00:00Z"


def _hosts_fit(domain: str) -> str:
    # Labels are checked by DnsName; a service label only adds length.
    if len(domain) + _LONGEST_PREFIX > DNS_NAME_MAX:
        raise InvalidValueError(
            f"is too long for the host names under it (e.g. traefik.<domain>: at most {DNS_NAME_MAX} characters)",
            f"at most {DNS_NAME_MAX - _LONGEST_PREFIX} characters",
        )
    return domain


class Settings(Section):
    """The whole stack configuration under the `confidential-vault:` namespace."""

    environment: Literal["dev", "prod", "ephemeral"] = Field(description="Kind of stack; drives safe defaults.")
    domain: Annotated[DnsName, AfterValidator(_hosts_fit)] = Field(
        description="Base domain; services are published as <service>.<domain>."
    )
    owner: str | None = Field(
        default=None,
        min_length=1,
        max_length=TAG_VALUE_MAX,
        description="Team or person owning the stack (Azure `owner` tag, at most 256 characters).",
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
    vault: VaultSettings = Field(
        default_factory=lambda: VaultSettings(), description="Secret store (OpenBao) settings."
    )
    # Top-level keys set with `--secret`; `shown` hides what came from them.
    _secret_keys: frozenset[str] = PrivateAttr(default_factory=frozenset)

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

    def shown(self, path: str, value: Any) -> str:
        """`value`, read from (or derived from) the key at `path`, as a problem's text may show it.

        `[secret]` when the key is under a top-level key set with `--secret`: rules put values of other keys into
        a problem's message only through this.
        """
        return SECRET if is_under(path, self._secret_keys) else str(value)


def stack_problems(settings: Settings) -> list[Problem]:
    """Rules of the top-level keys (environment, expiry)."""
    problems: list[Problem] = []
    env = settings.environment
    if env == "ephemeral" and settings.expires_at is None:
        problems.append(Problem("expiresAt", "is required on ephemeral stacks", allowed=_TIME))
    if env != "ephemeral" and settings.expires_at is not None:
        problems.append(
            Problem("expiresAt", "only applies to ephemeral stacks", settings.expires_at.isoformat(), "unset")
        )
    if settings.expires_at is not None and settings.expires_at.utcoffset() is None:
        problems.append(Problem("expiresAt", "needs a time zone", settings.expires_at.isoformat(), _TIME))
    return problems


def expiry_problems(settings: Settings, now: datetime) -> list[Problem]:
    """An ephemeral stack deployed past its expiry would be destroyed by the reaper's next run."""
    expires_at = settings.expires_at
    if settings.environment != "ephemeral" or expires_at is None or expires_at.utcoffset() is None:
        return []
    if expires_at > now:
        return []
    return [
        Problem(
            "expiresAt",
            "is already past: the reaper would destroy the stack on its next run",
            expires_at.isoformat(),
            f"a time after now ({now.isoformat(timespec='seconds')}); `python -m tools.ephemeral up` sets it",
        )
    ]


# Every cross-key rule. A rule runs only when every key it reads passed validation (`load_settings` gives it a
# view without the others): keep rules small, so that a broken key hides as few of them as possible.
SECTION_RULES = (
    stack_problems,
    monitoring_problems,
    alerting_problems,
    cluster_problems,
    owner_problems,
    empty_sgx_pool_problems,
    argocd_problems,
    acme_problems,
    dns_zone_problems,
    dns_provider_problems,
    vault_image_problems,
    vault_environment_problems,
    vault_epc_problems,
    vault_attestation_problems,
    vault_unseal_problems,
    storage_problems,
    database_server_problems,
    openbao_replica_problems,
)
