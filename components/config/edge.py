"""`acme`, `dns` and `edge`: Let's Encrypt, the Azure DNS zone and Traefik, and their rules."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr

from components.config.base import DnsName, InvalidValueError, Problem, ResourceGroupName, Section, check, render_value

if TYPE_CHECKING:
    from components.config.settings import Settings

_EMAIL = re.compile(r"^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class AcmeSettings(Section):
    """Let's Encrypt certificates for the public routes."""

    email: Annotated[str, check(_EMAIL, "is not an e-mail address", "name@domain")] | None = Field(
        default=None, description="Contact address registered with Let's Encrypt (required)."
    )
    server: Literal["staging", "production"] | None = Field(
        default=None, description="Let's Encrypt CA; default production on prod stacks, staging elsewhere."
    )
    challenge: Literal["tls", "http"] = Field(default="tls", description="ACME challenge type.")


class DnsSettings(Section):
    """An Azure DNS zone in which the program maintains the platform's A records (AKS stacks only)."""

    zone_name: DnsName = Field(description="DNS zone name; the stack domain must be in it.")
    resource_group_name: ResourceGroupName = Field(description="Resource group of the DNS zone.")


def _dashboard_password(value: SecretStr) -> SecretStr:
    # bcrypt (>= 5) refuses passwords over 72 bytes; the dashboard faces the internet, so no short ones.
    if not 12 <= len(value.get_secret_value().encode()) <= 72:
        raise InvalidValueError("has the wrong length", "12 to 72 bytes")
    return value


class EdgeSettings(Section):
    """Traefik: the single entry point and its dashboard."""

    dashboard_user: Annotated[
        str, check(re.compile(r"^[^:\s]{1,64}$"), "is not a valid BasicAuth user", "1-64 characters, no ':' or spaces")
    ] = Field(default="admin", description="BasicAuth user of the Traefik dashboard.")
    dashboard_password: Annotated[SecretStr, AfterValidator(_dashboard_password)] | None = Field(
        default=None, description="Dashboard password, 12-72 bytes (--secret); generated if unset."
    )


def acme_problems(settings: Settings) -> list[Problem]:
    """Let's Encrypt needs an account contact."""
    if settings.acme.email is None:
        return [Problem("acme.email", "is required (Let's Encrypt account contact)", allowed="name@domain")]
    return []


def dns_zone_problems(settings: Settings) -> list[Problem]:
    """The zone must contain the domain the records are created for."""
    if settings.dns is None:
        return []
    zone = settings.dns.zone_name
    if settings.domain == zone or settings.domain.endswith(f".{zone}"):
        return []
    domain = settings.shown("domain", settings.domain)
    return [
        Problem(
            "dns.zoneName",
            f"does not contain the domain {domain}",
            render_value(zone),
            f"{domain} or a parent zone of it",
        )
    ]


def dns_provider_problems(settings: Settings) -> list[Problem]:
    """The records point at the static IP the program creates on AKS."""
    if settings.dns is None or settings.cluster.provider != "existing":
        return []
    return [
        Problem(
            "dns",
            "needs cluster.provider aks: the records point at the static IP the program creates there",
            allowed="unset with provider existing (create the records listed in the dnsRecords output)",
        )
    ]
