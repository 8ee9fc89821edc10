"""`vault.unseal`: how the secret store unseals (Shamir shares, or the attested Key Vault key), and its rules.

Attested unseal: Azure Key Vault releases an HSM key only to an enclave that Microsoft Azure Attestation has verified
(components/seal.py, components/release_policy.py); every restart unseals itself. Shamir: key holders type shares
after every restart, as on clusters without Key Vault (`cluster.provider: existing`, simulation).
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field

from components.config.base import InvalidValueError, Problem, Section, check, render_value, set_but_inapplicable

if TYPE_CHECKING:
    from components.config.settings import Settings

# Key Vault keeps soft-deleted vaults 7 to 90 days (`softDeleteRetentionInDays`); fixed once the vault exists.
SOFT_DELETE_DAYS_MIN = 7
SOFT_DELETE_DAYS_MAX = 90
# Key Vault names: 3-24 of letters, digits and '-', starting with a letter, ending with a letter or digit, no "--".
_KEY_VAULT_NAME = re.compile(r"^(?!.*--)[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")
# Key Vault writes a key version as 32 lower-case hex digits; the enclave accepts exactly that form.
_KEY_VERSION = re.compile(r"^[0-9a-f]{32}$")
_ATTESTED_ONLY = (
    "key_size",
    "allowed_ip_ranges",
    "soft_delete_retention_days",
    "purge_protection",
    "key_vault_name",
    "key_version",
    "previous_key_version",
)
KeyVersion = Annotated[
    str,
    check(
        _KEY_VERSION,
        "is not a Key Vault key version",
        "32 lower-case hex digits, as `az keyvault key list-versions` shows",
    ),
]


def _ipv4_range(value: str) -> str:
    # The Key Vault firewall takes IPv4 addresses and ranges only.
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise InvalidValueError("is not an IPv4 address or range", "e.g. 203.0.113.7 or 203.0.113.0/24") from None
    if network.version != 4:
        raise InvalidValueError("is IPv6: the Key Vault firewall takes IPv4 only", "e.g. 203.0.113.0/24")
    return value


class VaultUnsealSettings(Section):
    """How OpenBao unseals: `shamir` (key holders, after every restart) or `attested` (Key Vault + attestation)."""

    mode: Literal["shamir", "attested"] = Field(
        default="shamir",
        description=(
            "`attested`: Key Vault releases the seal key only to the verified enclave, restarts unseal themselves "
            "(AKS only; required on prod). `shamir`: key holders unseal after every restart."
        ),
    )
    key_size: Literal[2048, 3072, 4096] = Field(
        default=3072, description="Bits of the RSA-HSM key the seal key is derived from (fixed once created)."
    )
    allowed_ip_ranges: list[Annotated[str, AfterValidator(_ipv4_range)]] = Field(
        default_factory=list,
        description=(
            "IPv4 addresses/ranges that may reach the Key Vault data plane (the cluster's outbound IP among them); "
            "empty: public access from anywhere, guarded by RBAC and the release policy."
        ),
    )
    soft_delete_retention_days: int | None = Field(
        default=None,
        ge=SOFT_DELETE_DAYS_MIN,
        le=SOFT_DELETE_DAYS_MAX,
        description="Days Key Vault keeps a deleted vault and key (fixed once created); default 90 on prod, else 7.",
    )
    purge_protection: bool | None = Field(
        default=None,
        description=(
            "Always on with attested unseal (irreversible): a deleted vault or key cannot be purged before "
            "retention ends; only true or unset are accepted."
        ),
    )
    key_vault_name: (
        Annotated[
            str,
            check(
                _KEY_VAULT_NAME,
                "is not a valid Key Vault name",
                "3-24 of letters, digits and '-', starting with a letter, ending with a letter or digit, no '--'",
            ),
        ]
        | None
    ) = Field(default=None, description="Globally unique Key Vault name; default: kv-<stack>-<random>.")
    key_version: KeyVersion | None = Field(
        default=None,
        description=(
            "The seal key version the enclave releases and clients expect; default: the version the program "
            "created. Set it to a new version to rotate (README, attested auto-unseal)."
        ),
    )
    previous_key_version: KeyVersion | None = Field(
        default=None,
        description=(
            "During a rotation only: the version OpenBao's stored keys are still sealed with (needs keyVersion); "
            "unset it after the first start with the new version."
        ),
    )


def unseal_problems(unseal: VaultUnsealSettings, settings: Settings) -> list[Problem]:
    """Attested unseal needs AKS (Key Vault, workload identity), SGX hardware, the server and a full enclave identity;
    prod on AKS needs it; settings that only apply to it are refused with Shamir."""
    problems: list[Problem] = []
    environment, cluster, vault = settings.environment, settings.cluster, settings.vault
    if unseal.mode == "shamir":
        if environment == "prod" and cluster.provider == "aks":
            problems.append(
                Problem(
                    "vault.unseal.mode",
                    "prod stacks on AKS unseal with the attested Key Vault key: restarts must not wait for key holders",
                    render_value(unseal.mode),
                    "attested",
                )
            )
        problems += set_but_inapplicable(
            unseal, "vault.unseal", _ATTESTED_ONLY, "only applies to mode attested", "unset, or mode: attested"
        )
        return problems

    if cluster.provider != "aks":
        problems.append(
            Problem(
                "vault.unseal.mode",
                "attested needs cluster.provider aks (Key Vault and workload identity are created with the cluster)",
                render_value(unseal.mode),
                "shamir on existing clusters",
            )
        )
    # On prod `vault_environment_problems` already refuses dev mode and simulation: one message per cause.
    if vault.mode != "server" and environment != "prod":
        problems.append(
            Problem(
                "vault.unseal.mode",
                "attested needs vault.mode server (dev mode has no seal)",
                render_value(unseal.mode),
                "shamir with vault.mode dev",
            )
        )
    if vault.sgx.simulation and environment != "prod":
        problems.append(
            Problem(
                "vault.unseal.mode",
                "attested needs SGX hardware: a simulated enclave cannot be attested, so Key Vault never releases",
                render_value(unseal.mode),
                "shamir with vault.sgx.simulation",
            )
        )
    identity = (
        ("signerId", vault.enclave.signer_id, "64 lower-case hex digits (`ego signerid`)"),
        ("productId", vault.enclave.product_id, "enclave.json `productID`, 1 to 65535"),
        ("securityVersion", vault.enclave.security_version, "the lowest enclave.json `securityVersion` released to"),
    )
    # On prod `vault_environment_problems` already requires the identity (clients verify against it).
    if environment != "prod":
        problems += [
            Problem(
                f"vault.enclave.{key}",
                "is required with vault.unseal.mode attested: the release policy pins it",
                None,
                allowed,
            )
            for key, value, allowed in identity
            if value is None
        ]
    if unseal.previous_key_version is not None and unseal.key_version is None:
        problems.append(
            Problem(
                "vault.unseal.previousKeyVersion",
                "needs vault.unseal.keyVersion: a rotation names the new version the enclave releases",
                render_value(unseal.previous_key_version),
                "unset, or set together with keyVersion",
            )
        )
    if unseal.previous_key_version is not None and unseal.previous_key_version == unseal.key_version:
        problems.append(
            Problem(
                "vault.unseal.previousKeyVersion",
                "is the same version as vault.unseal.keyVersion: a rotation moves from one version to another",
                render_value(unseal.previous_key_version),
                "the version the data is sealed with now, or unset",
            )
        )
    # Recovery keys cannot decrypt a static seal: on any stack, a purged vault or key is the end of the data.
    if unseal.purge_protection is False:
        problems.append(
            Problem(
                "vault.unseal.purgeProtection",
                "is refused with vault.unseal.mode attested: a purged vault or key takes the seal key, and the data "
                "with it",
                "false",
                "true or unset",
            )
        )
    return problems


def vault_unseal_problems(settings: Settings) -> list[Problem]:
    """`vault.unseal` against the rest of the stack (`unseal_problems`)."""
    return unseal_problems(settings.vault.unseal, settings)
