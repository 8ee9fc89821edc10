"""The Key Vault release policy of the seal key: which attested enclave Azure releases the key to.

One pure function turns the expected enclave identity into the policy document; the key carries it (base64url, as
Key Vault's API wants) and the stack publishes it, so a new signer or a higher minimum security version is a diff a
reviewer sees in `pulumi preview`. The grammar is Microsoft's "Azure Key Vault secure key release policy grammar"
(learn.microsoft.com/azure/key-vault/keys/policy-grammar); tests/test_release_policy.py checks the document against it.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.config.vault import MIN_SECURITY_VERSION, SGX_UINT16_MAX, attestation_provider_url

if TYPE_CHECKING:
    from components.config import Settings

POLICY_VERSION = "1.0.0"
# What Key Vault expects in `release_policy.contentType` for a JSON policy (also the API's default).
CONTENT_TYPE = "application/json; charset=utf-8"

# MAA's claims for an SGX enclave (MicrosoftDocs azure-docs `articles/attestation/attestation-token-examples.md`).
CLAIM_SIGNER = "x-ms-sgx-mrsigner"
CLAIM_PRODUCT_ID = "x-ms-sgx-product-id"
CLAIM_SECURITY_VERSION = "x-ms-sgx-svn"
CLAIM_DEBUGGABLE = "x-ms-sgx-is-debuggable"

_SIGNER_ID = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ExpectedEnclave:
    """The enclave the seal key may be released to: who signed it, which product, at least which security version."""

    attestation_provider: str
    """MAA provider URL; Key Vault matches it against the token's `iss`, so no path and no trailing slash."""
    signer_id: str
    """MRSIGNER, 64 lower-case hex digits as MAA writes `x-ms-sgx-mrsigner` (`ego signerid`)."""
    product_id: int
    """ISVPRODID (enclave.json `productID`)."""
    min_security_version: int
    """Lowest ISVSVN (enclave.json `securityVersion`) released to; raise it to lock out older builds. Never below
    `MIN_SECURITY_VERSION`: the builds before it let the host rewrite the enclave's configuration."""

    def __post_init__(self) -> None:
        problems = []
        provider = urllib.parse.urlsplit(self.attestation_provider)
        if provider.scheme != "https" or not provider.hostname or provider.path or provider.query:
            problems.append("attestation_provider is not an https base URL without path")
        if not _SIGNER_ID.match(self.signer_id):
            problems.append("signer_id is not 64 lower-case hex digits")
        for name, value, lowest in (
            ("product_id", self.product_id, 0),
            ("min_security_version", self.min_security_version, MIN_SECURITY_VERSION),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= SGX_UINT16_MAX:
                problems.append(f"{name} is not an integer from {lowest} to {SGX_UINT16_MAX}")
        if problems:
            raise ValueError("invalid expected enclave: " + "; ".join(problems))


def expected_enclave(settings: Settings) -> ExpectedEnclave:
    """The expected enclave of a stack: `vault.enclave` and the attestation provider clients trust as well.

    The config rules require every part in attested-unseal mode; a missing one here is a programming error.
    """
    enclave = settings.vault.enclave
    provider = attestation_provider_url(settings)
    if provider is None or enclave.signer_id is None or enclave.product_id is None:
        raise ValueError("attested unseal needs vault.enclave.signerId, vault.enclave.productId and a provider")
    if enclave.security_version is None:
        raise ValueError("attested unseal needs vault.enclave.securityVersion")
    return ExpectedEnclave(
        attestation_provider=provider,
        signer_id=enclave.signer_id,
        product_id=enclave.product_id,
        min_security_version=enclave.security_version,
    )


def release_policy(enclave: ExpectedEnclave) -> dict[str, Any]:
    """The release policy: one authority (the MAA provider) whose token must show all four claims.

    The signer and product pin who built the enclave (any build the signer makes with that product ID); the
    security version floor locks out older builds; a debuggable enclave's memory is readable by the host, so never.
    MRENCLAVE is left out on purpose: it changes with every build, and the key must survive image upgrades.
    """
    return {
        "version": POLICY_VERSION,
        "anyOf": [
            {
                "authority": enclave.attestation_provider,
                "allOf": [
                    {"claim": CLAIM_SIGNER, "equals": enclave.signer_id},
                    {"claim": CLAIM_PRODUCT_ID, "equals": enclave.product_id},
                    {"claim": CLAIM_SECURITY_VERSION, "greaterOrEquals": enclave.min_security_version},
                    {"claim": CLAIM_DEBUGGABLE, "equals": False},
                ],
            }
        ],
    }


def policy_json(policy: dict[str, Any]) -> str:
    """The policy as the compact JSON that is encoded onto the key and published (same bytes every run)."""
    return json.dumps(policy, separators=(",", ":"), ensure_ascii=True)


def encoded_policy(policy: dict[str, Any]) -> str:
    """`release_policy.data`: BASE64URL of the JSON serialization, per the grammar's "Encoding key release policy".

    Unpadded, as JOSE writes base64url and as the API's `format: base64url` round-trips it.
    """
    return base64.urlsafe_b64encode(policy_json(policy).encode()).decode().rstrip("=")
