"""Verify a stack's attested OpenBao endpoint, then trust exactly its enclave's CA certificate.

    python scripts/verify.py prod                    # expectations from `pulumi stack output --json --stack prod`
    eval "$(python scripts/verify.py prod)"          # ... and export BAO_ADDR/BAO_CACERT, VAULT_ADDR/VAULT_CACERT
    python scripts/verify.py prod --init             # first deploy only: accept the uninitialised store, once
    python scripts/verify.py prod --record-cluster-id   # after `bao operator init`: prints the pulumi config line
    python scripts/verify.py --host vault.example.com --maa-url https://sharedweu.weu.attest.azure.net \\
        --signer-id <64 hex> --product-id 1 --min-svn 3 --cluster-id <uuid>   # without Pulumi (flags override outputs)

It connects to the host (port 443) trusting no CA, takes the listener certificate and the Microsoft Azure
Attestation token in it, and checks: the token's signature against the provider's published keys (<maa>/certs) and
the validity of the certificate that publishes the key, its issuer (the configured provider), its validity, the
enclave's measurements against the expected identity (signer, product id, minimum security version, not debuggable,
optionally the unique id), and the binding (version 3: older images do not attest the store and are refused): that
the token binds the key of the very certificate served and the CA that signed it, which seal the enclave unseals with
(a stack with attested unseal, stack output `vaultEnclave.sealKeyId` or --seal-key-id, needs exactly that Key Vault
key — an enclave the host pointed at another vault would seal the data with a key the host can know — and exactly
the previous key the stack expects, `vaultEnclave.previousSealKeyId`; a Shamir stack neither), and which store it
serves: initialised, with the stack's `vaultEnclave.clusterId`. Only then it writes the enclave's CA certificate as the
CA file and prints the export lines (stdout; everything else goes to stderr). Any mismatch or malformed input: exit 1
with one `NOT TRUSTED` line, nothing written. Run it before `bao operator init` too (`--init`): that is when a wrong
seal key or a host's store would take hold. The enclave side of this contract: images/ego-openbao/bootstrap/README.md
and bootstrap/keyrelease/README.md.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import tempfile
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent

# The enclave side's constants (images/ego-openbao/bootstrap/certificate.go, binding.go).
OID_ARC = "1.2.840.113556.1.8000.2554.56604.44709.48773.17813.45159.13620147.8758760"
OID_ATTESTATION_TOKEN = x509.ObjectIdentifier(f"{OID_ARC}.1")
OID_SIMULATION = x509.ObjectIdentifier(f"{OID_ARC}.2")
OID_ISSUER_CERTIFICATE = x509.ObjectIdentifier(f"{OID_ARC}.3")
# The bound data (x-ms-sgx-ehd): exactly these keys in this order (bootstrap/binding.go). Version 3 is the only one
# accepted: versions 1 and 2 come from images older than securityVersion 3, which neither attest the store they serve
# nor the previous seal key, and whose enclave the host can steer (MarbleRun premain).
BINDING_VERSION = 3
BINDING_KEYS = (
    "v",
    "purpose",
    "listener_spki_sha256",
    "ca_spki_sha256",
    "seal_key_id",
    "previous_seal_key_id",
    "release_jwk_thumbprint",
    "initialized",
    "cluster_id",
)
BINDING_PURPOSE = "confidential-vault/openbao-listener"
# A key id as Key Vault writes it into a key's `kid`: https://<vault>.vault.azure.net/keys/<name>/<version>.
# The enclave's own rule (keyrelease.ParseKeyID): a Key Vault or Managed HSM of Azure's public cloud, no port.
SEAL_KEY_ID = re.compile(
    r"^https://(?=[a-z0-9-]{3,24}\.)[a-z](?:-?[a-z0-9])+\.(?:vault|managedhsm)\.azure\.net"
    r"/keys/[0-9a-z-]{1,127}/[0-9a-f]{32}$"
)
# RFC 7638 SHA-256 thumbprint, base64url without padding.
JWK_THUMBPRINT = re.compile(r"^[A-Za-z0-9_-]{43}$")

# Clock difference tolerated between this machine, the provider and the enclave's host.
LEEWAY = dt.timedelta(seconds=60)
NETWORK_TIMEOUT_SECONDS = 15
MAX_JWKS_BYTES = 1 << 20

# Stack outputs this script reads (__main__.py exports them).
URL_OUTPUT = "vaultUrl"
ENCLAVE_OUTPUT = "vaultEnclave"
TLS_TERMINATION_OUTPUT = "vaultTlsTermination"
ENCLAVE_OUTPUT_KEYS = {
    "signer_id": "signerId",
    "unique_id": "uniqueId",
    "product_id": "productId",
    "min_svn": "securityVersion",
    "maa_url": "attestationProvider",
    "simulation": "simulation",
    "seal_key_id": "sealKeyId",
    "previous_seal_key_id": "previousSealKeyId",
    "cluster_id": "clusterId",
}
# What `vaultEnclave.clusterId` says while the stack has no `vault.clusterId` (components/openbao.py).
CLUSTER_ID_NOT_PINNED = "not pinned"
CLUSTER_ID_CONFIG_KEY = "confidential-vault:vault.clusterId"
RECORD_COMMAND = "scripts/verify.py --record-cluster-id"
MEASUREMENT = re.compile(r"^[0-9a-f]{64}$")


class NotTrustedError(Exception):
    """A reason not to trust the endpoint."""


class UsageError(Exception):
    """The expectations are missing or malformed (not a verdict on the endpoint)."""


@dataclass(frozen=True)
class Expectations:
    """What the endpoint must prove; from the stack's outputs, or flags."""

    host: str
    port: int = 443
    maa_url: str | None = None
    signer_id: str | None = None
    product_id: int | None = None
    min_svn: int | None = None
    unique_id: str | None = None
    simulation: bool = False
    seal_key_id: str | None = None
    """Attested unseal: the Key Vault key (with version) the enclave must name; None: Shamir (it must name none)."""
    previous_seal_key_id: str | None = None
    """Attested unseal during a rotation: the previous key (with version) the enclave must name; None: none."""
    cluster_id: str | None = None
    """The store's `cluster_id` (stack config `vault.clusterId`); None: not pinned, so an initialised store is
    refused (the operator records it first)."""
    accept_uninitialised: bool = False
    """`--init`: the one first initialisation, when the store has no cluster id yet."""
    accept_sealed: bool = False
    """`--allow-sealed`: an initialised store that is sealed, so its cluster id is not known yet (Shamir unseal)."""
    recording: bool = False
    """`--record-cluster-id`: any initialised, unsealed store is accepted while the stack pins none."""


@dataclass(frozen=True)
class Store:
    """The store the enclave serves, as the binding attests it (OpenBao's own sys/health, read inside the enclave)."""

    initialized: bool
    cluster_id: str
    """Empty while uninitialised or sealed."""


@dataclass(frozen=True)
class Verified:
    """A verified endpoint: the CA certificate to pin, and what the token said (None for a simulation)."""

    ca_certificate: x509.Certificate
    claims: Mapping[str, Any] | None
    store: Store | None = None
    """None for a simulation (nothing attested)."""


# --- checks ----------------------------------------------------------------------------------------------------------


def normalise_maa_url(value: str) -> str:
    """The provider URL as MAA writes it into `iss`: https, a host, nothing after it, no trailing slash."""
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme != "https" or not parsed.netloc or "@" in parsed.netloc:
        raise UsageError(f"attestation provider {value!r}: expected https://<provider>.<region>.attest.azure.net")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise UsageError(f"attestation provider {value!r}: no path, query or fragment")
    return f"https://{parsed.netloc}"


def check_expectations(expected: Expectations) -> None:
    """Everything a token is checked against must be present and well-formed (simulations need none of it)."""
    problems = []
    for name, value in (("--signer-id", expected.signer_id), ("--unique-id", expected.unique_id)):
        if value is not None and not MEASUREMENT.match(value):
            problems.append(f"{name} {value!r}: expected 64 lower-case hex digits")
    for name, value in (("--product-id", expected.product_id), ("--min-svn", expected.min_svn)):
        if value is not None and not 0 <= value <= 0xFFFF:
            problems.append(f"{name} {value}: expected 0 to 65535")
    if expected.seal_key_id is not None and not SEAL_KEY_ID.match(expected.seal_key_id):
        problems.append(
            f"--seal-key-id {expected.seal_key_id!r}: expected https://<vault>.vault.azure.net/keys/<name>/<version> "
            "(stack output vaultSeal.keyId)"
        )
    if expected.previous_seal_key_id is not None:
        if expected.seal_key_id is None:
            problems.append("--previous-seal-key-id: only with attested unseal (--seal-key-id)")
        elif not SEAL_KEY_ID.match(expected.previous_seal_key_id):
            problems.append(
                f"--previous-seal-key-id {expected.previous_seal_key_id!r}: expected "
                "https://<vault>.vault.azure.net/keys/<name>/<version> (stack output vaultEnclave.previousSealKeyId)"
            )
    if expected.cluster_id is not None and not _is_uuid(expected.cluster_id):
        problems.append(
            f"--cluster-id {expected.cluster_id!r}: expected a UUID (stack output vaultEnclave.clusterId, "
            f"config {CLUSTER_ID_CONFIG_KEY})"
        )
    if problems:
        raise UsageError("; ".join(problems))


def _is_uuid(value: str) -> bool:
    """The canonical lower-case form OpenBao writes (`uuid.GenerateUUID`): 8-4-4-4-12 hex digits."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def require_identity(expected: Expectations) -> str:
    """The provider URL, once every part of the identity a token is checked against is present."""
    missing = [
        flag
        for flag, value in (
            ("--maa-url", expected.maa_url),
            ("--signer-id", expected.signer_id),
            ("--product-id", expected.product_id),
            ("--min-svn", expected.min_svn),
        )
        if value is None
    ]
    if missing:
        raise UsageError(
            f"the endpoint presents an attestation token, but the expected identity lacks {', '.join(missing)} "
            f"(stack output {ENCLAVE_OUTPUT}: {', '.join(ENCLAVE_OUTPUT_KEYS.values())})"
        )
    assert expected.maa_url is not None
    return expected.maa_url


def _utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_validity(what: str, certificate: x509.Certificate, now: dt.datetime) -> None:
    if not certificate.not_valid_before_utc - LEEWAY <= now <= certificate.not_valid_after_utc + LEEWAY:
        raise NotTrustedError(
            f"{what} is valid from {_utc(certificate.not_valid_before_utc)} to "
            f"{_utc(certificate.not_valid_after_utc)}, not now ({_utc(now)})"
        )


def _public_key(what: str, certificate: x509.Certificate) -> Any:
    try:
        return certificate.public_key()
    except (ValueError, UnsupportedAlgorithm) as error:
        raise NotTrustedError(f"{what} has a key of an unsupported or malformed type: {error}") from None


def _spki(what: str, certificate: x509.Certificate) -> bytes:
    return _public_key(what, certificate).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _extensions(what: str, certificate: x509.Certificate) -> x509.Extensions:
    """The certificate's extensions; cryptography parses them on first use, and refuses malformed or repeated ones."""
    try:
        return certificate.extensions
    except x509.DuplicateExtension as error:
        raise NotTrustedError(f"{what} carries extension {error.oid.dotted_string} more than once") from None
    except ValueError as error:
        raise NotTrustedError(f"{what} has a malformed extension: {error}") from None


def _names(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = _extensions("the certificate", certificate).get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = [name.lower() for name in san.get_values_for_type(x509.DNSName)]
    ips = [str(address) for address in san.get_values_for_type(x509.IPAddress)]
    return dns, ips


def check_names(leaf: x509.Certificate, host: str) -> None:
    dns, ips = _names(leaf)
    try:
        wanted = str(ipaddress.ip_address(host))
        named = wanted in ips
    except ValueError:
        named = host.lower().rstrip(".") in dns
    if not named:
        raise NotTrustedError(f"the certificate does not name {host} (it names {', '.join(dns + ips) or 'nothing'})")


def _extension_bytes(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        extension = _extensions("the certificate", certificate).get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    value = extension.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise NotTrustedError(f"certificate extension {oid.dotted_string} has an unexpected type")
    return value.value


def decode_der_utf8_string(der: bytes) -> str:
    """One DER UTF8String (tag 12), definite minimal length, nothing after it."""
    if len(der) < 2 or der[0] != 0x0C:
        raise NotTrustedError("certificate extension is not a DER UTF8String")
    length, offset = der[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(der) < 2 + count or der[2] == 0:
            raise NotTrustedError("certificate extension has a malformed DER length")
        length, offset = int.from_bytes(der[2 : 2 + count], "big"), 2 + count
        if length < 0x80:
            raise NotTrustedError("certificate extension has a non-minimal DER length")
    if len(der) != offset + length:
        raise NotTrustedError("certificate extension's DER length does not match its size")
    try:
        return der[offset:].decode("utf-8")
    except UnicodeDecodeError as error:
        raise NotTrustedError("certificate extension is not valid UTF-8") from error


def check_issuer(leaf: x509.Certificate, now: dt.datetime) -> x509.Certificate:
    """The CA certificate the leaf carries: a self-signed CA certificate, and the leaf's signer. Which CA key it must
    be is the binding's to say (`ca_spki_sha256`)."""
    der = _extension_bytes(leaf, OID_ISSUER_CERTIFICATE)
    if der is None:
        raise NotTrustedError("the certificate does not carry its enclave CA certificate (not served by the bootstrap)")
    try:
        ca = x509.load_der_x509_certificate(der)
    except ValueError as error:
        raise NotTrustedError(f"the embedded CA certificate does not parse: {error}") from error
    _public_key("the embedded CA certificate", ca)
    try:
        constraints = (
            _extensions("the embedded CA certificate", ca).get_extension_for_class(x509.BasicConstraints).value
        )
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise NotTrustedError("the embedded CA certificate is not a CA certificate")
    try:
        ca.verify_directly_issued_by(ca)
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as error:
        raise NotTrustedError(
            f"the certificate and its embedded CA certificate do not chain: {error or 'bad signature'}"
        ) from None
    _check_validity("the embedded CA certificate", ca, now)
    return ca


def _signing_key(jwks: Mapping[str, Any], kid: str, jwks_url: str, now: dt.datetime) -> rsa.RSAPublicKey:
    """The RSA key of `kid`: from the first certificate of its x5c chain (MAA publishes keys that way), within that
    certificate's validity (the token's leeway): a retired key the provider still lists, or one not in use yet,
    signs nothing this client accepts."""
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        raise NotTrustedError(f"{jwks_url} is not a JSON Web Key Set")
    matching = [key for key in keys if isinstance(key, dict) and key.get("kid") == kid]
    if not matching:
        raise NotTrustedError(f"the token is signed with key id {kid!r}, which {jwks_url} does not publish")
    if len(matching) > 1:
        raise NotTrustedError(f"{jwks_url} publishes key id {kid!r} more than once")
    jwk = matching[0]
    chain = jwk.get("x5c")
    if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
        raise NotTrustedError(f"key {kid!r} at {jwks_url} has no x5c certificate")
    try:
        signer = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
    except (ValueError, binascii.Error) as error:
        raise NotTrustedError(f"key {kid!r} at {jwks_url}: its x5c certificate does not parse ({error})") from error
    _check_validity(f"key {kid!r} at {jwks_url}: its x5c certificate", signer, now)
    public_key = _public_key(f"key {kid!r} at {jwks_url}: its x5c certificate", signer)
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise NotTrustedError(f"key {kid!r} at {jwks_url} is not an RSA key (MAA signs with RS256)")
    if "n" in jwk or "e" in jwk:
        numbers = public_key.public_numbers()
        try:
            n = int.from_bytes(base64.urlsafe_b64decode(str(jwk.get("n", "")) + "=="), "big")
            e = int.from_bytes(base64.urlsafe_b64decode(str(jwk.get("e", "")) + "=="), "big")
        except (ValueError, binascii.Error):
            n = e = 0
        if (n, e) != (numbers.n, numbers.e):
            raise NotTrustedError(f"key {kid!r} at {jwks_url}: its n/e differ from its x5c certificate's key")
    return public_key


def verify_token(
    token: str, maa_url: str, fetch_keys: Callable[[str], Mapping[str, Any]], now: dt.datetime | None = None
) -> dict[str, Any]:
    """Signature (RS256, the provider's published key), issuer and validity; returns the claims."""
    try:
        # PyJWT refuses a non-string kid and a `crit` naming an extension it does not implement (RFC 7515 4.1.11).
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as error:
        raise NotTrustedError(f"the attestation token's header is refused: {error}") from None
    if header.get("alg") != "RS256":
        raise NotTrustedError(
            f"the token's algorithm is {header.get('alg')!r}, not RS256 (the algorithm MAA signs with)"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise NotTrustedError("the token names no signing key (kid)")
    # The header's jku is never followed: keys come from the configured provider only.
    jwks_url = f"{maa_url}/certs"
    key = _signing_key(fetch_keys(jwks_url), kid, jwks_url, now or dt.datetime.now(dt.UTC))
    try:
        return jwt.decode(
            token,
            key=key,
            algorithms=["RS256"],
            issuer=maa_url,
            leeway=LEEWAY,
            options={"require": ["iss", "iat", "nbf", "exp"], "verify_aud": False},
        )
    except jwt.InvalidSignatureError:
        raise NotTrustedError(
            f"the token's signature does not verify with key {kid!r} published at {jwks_url}"
        ) from None
    except jwt.ExpiredSignatureError:
        claims = jwt.decode(token, options={"verify_signature": False})
        expired = dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC)
        raise NotTrustedError(
            f"the attestation token expired at {_utc(expired)}: the enclave refreshes it at half its life, so "
            "it is not refreshing (or this token is replayed)"
        ) from None
    except jwt.ImmatureSignatureError:
        raise NotTrustedError(
            "the attestation token is not valid yet (iat/nbf in the future): check this clock"
        ) from None
    except jwt.InvalidIssuerError:
        claims = jwt.decode(token, options={"verify_signature": False})
        raise NotTrustedError(
            f"the token's issuer is {claims.get('iss')!r}, not the configured provider {maa_url}"
        ) from None
    except jwt.MissingRequiredClaimError as error:
        raise NotTrustedError(f"the token lacks the {error.claim!r} claim") from None
    except jwt.InvalidTokenError as error:
        raise NotTrustedError(f"the attestation token is invalid: {error}") from None


def _claim(claims: Mapping[str, Any], name: str, kind: type) -> Any:
    value = claims.get(name)
    if value is None:
        raise NotTrustedError(f"the token has no {name} claim")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise NotTrustedError(f"the token's {name} is {value!r}, not a {kind.__name__}")
    return value


def check_identity(claims: Mapping[str, Any], expected: Expectations) -> None:
    """The enclave's measurements against the expected identity."""
    if _claim(claims, "x-ms-sgx-is-debuggable", bool):
        raise NotTrustedError("x-ms-sgx-is-debuggable is true: a debug enclave's memory is open to its host")
    signer = _claim(claims, "x-ms-sgx-mrsigner", str).lower()
    if signer != expected.signer_id:
        raise NotTrustedError(f"x-ms-sgx-mrsigner is {signer}, expected signer id {expected.signer_id}")
    product = _claim(claims, "x-ms-sgx-product-id", int)
    if product != expected.product_id:
        raise NotTrustedError(f"x-ms-sgx-product-id is {product}, expected {expected.product_id}")
    svn = _claim(claims, "x-ms-sgx-svn", int)
    if expected.min_svn is not None and svn < expected.min_svn:
        raise NotTrustedError(f"x-ms-sgx-svn is {svn}, below the minimum security version {expected.min_svn}")
    if expected.unique_id is not None:
        unique = _claim(claims, "x-ms-sgx-mrenclave", str).lower()
        if unique != expected.unique_id:
            raise NotTrustedError(f"x-ms-sgx-mrenclave is {unique}, expected unique id {expected.unique_id}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise NotTrustedError("the token's enclave-held data repeats a key")
    return dict(pairs)


def normalise_seal_key_id(value: str) -> str:
    """Key ids compare case-insensitively (Key Vault's vault, key and version names are); lower case, as the
    enclave writes the host."""
    return value.strip().lower()


def _binding_of(claims: Mapping[str, Any]) -> tuple[dict[str, Any], bytes]:
    """x-ms-sgx-ehd as the bootstrap's binding version 3: exactly its keys, in order, canonical, typed."""
    encoded = _claim(claims, "x-ms-sgx-ehd", str)
    if not re.fullmatch(r"[A-Za-z0-9_-]*", encoded):
        raise NotTrustedError("the token's x-ms-sgx-ehd is not base64url")
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        binding = json.loads(raw, object_pairs_hook=_no_duplicates)
    except (ValueError, binascii.Error) as error:
        raise NotTrustedError(f"the token's enclave-held data is not the bootstrap's JSON binding: {error}") from None
    version = binding.get("v") if isinstance(binding, dict) else None
    if not isinstance(binding, dict) or binding.get("purpose") != BINDING_PURPOSE:
        raise NotTrustedError(f"the token binds data of another version or purpose: {raw!r}")
    if isinstance(version, int) and not isinstance(version, bool) and version < BINDING_VERSION:
        raise NotTrustedError(
            f"the enclave attests binding version {version}: an image older than securityVersion 3, which attests "
            "neither the store it serves nor its previous seal key, and whose configuration the host can replace. "
            "Deploy the current image (README, the securityVersion 3 upgrade)"
        )
    if version != BINDING_VERSION or isinstance(version, bool) or tuple(binding) != BINDING_KEYS:
        raise NotTrustedError(f"the token binds data of another version or purpose: {raw!r}")
    if json.dumps(binding, separators=(",", ":")).encode() != raw:
        raise NotTrustedError(f"the token's enclave-held data is not in canonical form: {raw!r}")
    kinds = {key: str for key in BINDING_KEYS if key not in ("v", "initialized")} | {"initialized": bool}
    wrong = [key for key, kind in kinds.items() if not isinstance(binding[key], kind)]
    if wrong:
        raise NotTrustedError(f"the binding's {', '.join(wrong)} has the wrong type: {raw!r}")
    return binding, raw


def _check_seal(binding: Mapping[str, Any], raw: bytes, expected: Expectations) -> None:
    """Which keys the enclave unseals with: exactly the stack's, or none for a Shamir stack."""
    bound_key, previous, thumbprint = (
        binding["seal_key_id"],
        binding["previous_seal_key_id"],
        binding["release_jwk_thumbprint"],
    )
    if expected.seal_key_id is None:
        if bound_key or previous or thumbprint:
            raise NotTrustedError(
                f"the enclave unseals with the Key Vault key {bound_key or previous!r}, but this stack unseals with "
                "Shamir shares: whoever set that key for the enclave (the host) may know it, and the data would be "
                "sealed with it. Refused; if the stack now uses attested unseal, verify with its outputs "
                "(vaultEnclave.sealKeyId)"
            )
        return
    if not bound_key:
        raise NotTrustedError(
            f"the enclave unseals with Shamir shares, not with this stack's Key Vault key {expected.seal_key_id} "
            "(attested unseal was switched off on the host's side)"
        )
    if normalise_seal_key_id(bound_key) != normalise_seal_key_id(expected.seal_key_id):
        raise NotTrustedError(
            f"the enclave unseals with the Key Vault key {bound_key!r}, not this stack's {expected.seal_key_id}: the "
            "host pointed it at another vault or key, whose key material the host may know"
        )
    expected_previous = normalise_seal_key_id(expected.previous_seal_key_id or "")
    if normalise_seal_key_id(previous) != expected_previous:
        raise NotTrustedError(
            f"the enclave also unseals with the previous key {previous or 'none'!r}, but this stack expects "
            f"{expected.previous_seal_key_id or 'none'} (vaultEnclave.previousSealKeyId): the host may be having it "
            "unseal a copy of the data from before the rotation"
        )
    if not JWK_THUMBPRINT.match(thumbprint):
        raise NotTrustedError(f"the binding's release_jwk_thumbprint is not an RFC 7638 thumbprint: {raw!r}")


def _check_store(binding: Mapping[str, Any], raw: bytes, expected: Expectations) -> Store:
    """The store the enclave serves must be the stack's: initialised, with the pinned cluster id."""
    store = Store(initialized=binding["initialized"], cluster_id=binding["cluster_id"])
    if store.cluster_id and (not store.initialized or not _is_uuid(store.cluster_id)):
        raise NotTrustedError(f"the binding's cluster_id is malformed or set while uninitialised: {raw!r}")
    if not store.initialized:
        if expected.cluster_id is not None:
            raise NotTrustedError(
                f"the store is not initialised, but this stack's store is {expected.cluster_id} "
                "(vaultEnclave.clusterId): the host wiped it or pointed the enclave at another one. Do not initialise "
                "it (--init is for a stack's first deploy only); restore the stack's store"
            )
        if expected.accept_uninitialised and not expected.recording:
            return store
        raise NotTrustedError(
            "the store is not initialised: whoever runs `bao operator init` first holds its root token and recovery "
            "keys. On this stack's first deploy, run verify.py --init and initialise it through the pinned CA; "
            "otherwise the host pointed the enclave at an empty (wiped or swapped) store: do not initialise it"
        )
    if not store.cluster_id:
        if expected.accept_sealed and not expected.recording:
            return store
        raise NotTrustedError(
            "the store is initialised but sealed, so the enclave cannot attest which store it is yet. To unseal it "
            "with Shamir shares, pin the endpoint with --allow-sealed (shares sent to a verified enclave reach only "
            "that enclave), unseal, then run verify.py again"
        )
    if expected.cluster_id is not None and store.cluster_id != expected.cluster_id:
        raise NotTrustedError(
            f"the enclave serves the store with cluster id {store.cluster_id}, not this stack's {expected.cluster_id} "
            "(vaultEnclave.clusterId): the host pointed it at another store, or the store was re-initialised"
        )
    if expected.cluster_id is None and not expected.recording:
        raise NotTrustedError(
            f"the store is initialised (cluster id {store.cluster_id}), but this stack pins no cluster id "
            f"(vaultEnclave.clusterId is {CLUSTER_ID_NOT_PINNED!r}): after the first `bao operator init`, run "
            f"`{RECORD_COMMAND}` and `pulumi up` to pin it"
        )
    return store


def check_binding(
    claims: Mapping[str, Any], leaf: x509.Certificate, ca: x509.Certificate, expected: Expectations
) -> Store:
    """x-ms-sgx-ehd must be the canonical binding version 3 of this certificate's key and of its CA's key, name the
    seal keys the stack expects and the stack's store. Returns the store it attests."""
    binding, raw = _binding_of(claims)
    _check_seal(binding, raw, expected)
    served = hashlib.sha256(_spki("the certificate", leaf)).hexdigest()
    if binding["listener_spki_sha256"] != served:
        raise NotTrustedError(
            f"the token binds the key with SHA-256 {binding['listener_spki_sha256']}, but the certificate served "
            f"has key {served}: it is not the certificate the enclave attested"
        )
    issuer = hashlib.sha256(_spki("the embedded CA certificate", ca)).hexdigest()
    if binding["ca_spki_sha256"] != issuer:
        raise NotTrustedError(
            f"the token binds the CA key with SHA-256 {binding['ca_spki_sha256']}, but the embedded CA certificate "
            f"has key {issuer}: it is not the enclave's CA"
        )
    return _check_store(binding, raw, expected)


def verify_endpoint(
    leaf_der: bytes,
    expected: Expectations,
    fetch_keys: Callable[[str], Mapping[str, Any]],
    now: dt.datetime | None = None,
) -> Verified:
    """Every check on the certificate a server presented; NotTrustedError names the first reason to refuse it."""
    now = now or dt.datetime.now(dt.UTC)
    try:
        leaf = x509.load_der_x509_certificate(leaf_der)
    except ValueError as error:
        raise NotTrustedError(f"the server's certificate does not parse: {error}") from error
    check_names(leaf, expected.host)
    _check_validity("the certificate", leaf, now)
    ca = check_issuer(leaf, now)

    token_der = _extension_bytes(leaf, OID_ATTESTATION_TOKEN)
    simulation_der = _extension_bytes(leaf, OID_SIMULATION)
    if token_der is not None and simulation_der is not None:
        raise NotTrustedError("the certificate carries both an attestation token and a simulation note")
    if simulation_der is not None:
        note = decode_der_utf8_string(simulation_der)
        if not expected.simulation:
            raise NotTrustedError(
                f"the enclave runs in simulation ({note!r}); accept that only for a simulation stack (--simulation)"
            )
        return Verified(ca_certificate=ca, claims=None)
    if token_der is None:
        raise NotTrustedError("the certificate carries no attestation token (not served by the attested bootstrap)")

    maa_url = require_identity(expected)
    claims = verify_token(decode_der_utf8_string(token_der), maa_url, fetch_keys, now)
    check_identity(claims, expected)
    store = check_binding(claims, leaf, ca, expected)
    return Verified(ca_certificate=ca, claims=claims, store=store)


# --- network and files -----------------------------------------------------------------------------------------------


def fetch_certificate(host: str, port: int, address: str | None = None) -> bytes:
    """The certificate the server presents for `host` (SNI), fetched without trusting any CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((address or host, port), timeout=NETWORK_TIMEOUT_SECONDS) as raw,
            context.wrap_socket(raw, server_hostname=host) as connection,
        ):
            certificate = connection.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as error:
        raise NotTrustedError(f"could not fetch the certificate of {host}:{port}: {error}") from error
    if not certificate:
        raise NotTrustedError(f"{host}:{port} presented no certificate")
    return certificate


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(  # noqa: PLR0917 (urllib calls it with this signature)
        self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> NoReturn:
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused", headers, fp)


def fetch_jwks(url: str, context: ssl.SSLContext | None = None) -> Mapping[str, Any]:
    """The provider's signing keys, over TLS verified with this machine's CAs (SSL_CERT_FILE honoured)."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context or ssl.create_default_context()), _NoRedirects()
    )
    try:
        with opener.open(url, timeout=NETWORK_TIMEOUT_SECONDS) as response:
            body = response.read(MAX_JWKS_BYTES + 1)
    except (OSError, urllib.error.URLError) as error:
        raise NotTrustedError(f"could not fetch the provider's keys from {url}: {error}") from error
    if len(body) > MAX_JWKS_BYTES:
        raise NotTrustedError(f"{url} answered with more than {MAX_JWKS_BYTES} bytes")
    try:
        keys = json.loads(body)
    except ValueError as error:
        raise NotTrustedError(f"{url} did not answer with JSON: {error}") from error
    if not isinstance(keys, dict):
        raise NotTrustedError(f"{url} is not a JSON Web Key Set")
    return keys


def write_ca_file(path: Path, certificate: x509.Certificate) -> None:
    """Replace `path` atomically with the certificate (PEM)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False) as temporary:
        temporary.write(certificate.public_bytes(serialization.Encoding.PEM))
    os.chmod(temporary.name, 0o644)
    os.replace(temporary.name, path)


def export_lines(host: str, port: int, ca_file: Path) -> list[str]:
    address = f"https://{host}" if port == 443 else f"https://{host}:{port}"
    lines = []
    for prefix in ("BAO", "VAULT"):
        lines.append(f"export {prefix}_ADDR={shlex.quote(address)}")
        lines.append(f"export {prefix}_CACERT={shlex.quote(str(ca_file))}")
    return lines


def default_ca_file(host: str) -> Path:
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config_home / "confidential-vault" / f"{host}-ca.pem"


# --- expectations ----------------------------------------------------------------------------------------------------


def stack_outputs(stack: str) -> Mapping[str, Any]:
    try:
        result = subprocess.run(
            ["pulumi", "stack", "output", "--json", "--stack", stack],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise UsageError("the pulumi CLI is not installed: give the expectations as flags (--help)") from None
    if result.returncode != 0:
        raise UsageError(f"pulumi stack output --stack {stack} failed: {result.stderr.strip()}")
    try:
        outputs = json.loads(result.stdout)
    except ValueError as error:
        raise UsageError(f"pulumi stack output --stack {stack} did not print JSON: {error}") from error
    if not isinstance(outputs, dict):
        raise UsageError(f"pulumi stack output --stack {stack} did not print an object")
    return outputs


def expectations_from_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Expectation fields from the stack's outputs (the host from `vaultUrl`, the rest from `vaultEnclave`)."""
    values: dict[str, Any] = {}
    url = outputs.get(URL_OUTPUT)
    if isinstance(url, str):
        parsed = urllib.parse.urlsplit(url)
        if parsed.hostname:
            values["host"] = parsed.hostname
            values["port"] = parsed.port or 443
    enclave = outputs.get(ENCLAVE_OUTPUT)
    if isinstance(enclave, dict):
        for field, key in ENCLAVE_OUTPUT_KEYS.items():
            if enclave.get(key) is not None:
                values[field] = enclave[key]
    if values.get("cluster_id") == CLUSTER_ID_NOT_PINNED:
        del values["cluster_id"]
    return values


def build_expectations(args: argparse.Namespace) -> Expectations:
    outputs = stack_outputs(args.stack) if args.stack else {}
    if outputs.get(TLS_TERMINATION_OUTPUT) == "traefik":
        raise UsageError(
            f"{args.stack} runs the dev server: TLS ends at Traefik, not in the enclave, so there is nothing to verify "
            f"({TLS_TERMINATION_OUTPUT} is traefik; dev mode is not confidential)"
        )
    values = expectations_from_outputs(outputs)
    for field in (
        "host",
        "port",
        "maa_url",
        "signer_id",
        "product_id",
        "min_svn",
        "unique_id",
        "seal_key_id",
        "previous_seal_key_id",
        "cluster_id",
    ):
        if getattr(args, field) is not None:
            values[field] = getattr(args, field)
    if args.simulation:
        values["simulation"] = True
    if "host" not in values:
        raise UsageError(f"no host: give a stack (output {URL_OUTPUT}) or --host")
    try:
        expected = Expectations(
            host=str(values["host"]).lower(),
            port=int(values.get("port", 443)),
            maa_url=normalise_maa_url(str(values["maa_url"])) if values.get("maa_url") else None,
            signer_id=str(values["signer_id"]).lower() if values.get("signer_id") else None,
            product_id=int(values["product_id"]) if values.get("product_id") is not None else None,
            min_svn=int(values["min_svn"]) if values.get("min_svn") is not None else None,
            unique_id=str(values["unique_id"]).lower() if values.get("unique_id") else None,
            simulation=values.get("simulation") is True,
            seal_key_id=normalise_seal_key_id(str(values["seal_key_id"])) if values.get("seal_key_id") else None,
            previous_seal_key_id=(
                normalise_seal_key_id(str(values["previous_seal_key_id"]))
                if values.get("previous_seal_key_id")
                else None
            ),
            cluster_id=str(values["cluster_id"]).lower() if values.get("cluster_id") else None,
            accept_uninitialised=args.init,
            accept_sealed=args.allow_sealed,
            recording=args.record_cluster_id,
        )
    except (TypeError, ValueError) as error:
        raise UsageError(f"malformed expectation: {error}") from error
    check_expectations(expected)
    return expected


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Verify a stack's attested OpenBao endpoint and pin its enclave's CA certificate."
    )
    parser.add_argument("stack", nargs="?", help="read the expectations from this stack's outputs (pulumi CLI)")
    parser.add_argument("--host", help="the endpoint's host name, e.g. vault.example.com")
    parser.add_argument("--port", type=int, help="TLS port (default 443)")
    parser.add_argument("--address", help="connect to this address instead of the host (SNI stays the host)")
    parser.add_argument("--maa-url", help="attestation provider, e.g. https://sharedweu.weu.attest.azure.net")
    parser.add_argument("--signer-id", help="expected MRSIGNER (ego signerid), 64 hex digits")
    parser.add_argument("--product-id", type=int, help="expected SGX product id (enclave.json productID)")
    parser.add_argument("--min-svn", type=int, help="minimum SGX security version (enclave.json securityVersion)")
    parser.add_argument("--unique-id", help="expected MRENCLAVE (ego uniqueid), pins one exact build")
    parser.add_argument(
        "--seal-key-id",
        help="attested unseal: the Key Vault key (with version) the enclave must unseal with (stack output "
        "vaultSeal.keyId); without it (and without a stack saying so) the stack is taken to unseal with Shamir",
    )
    parser.add_argument(
        "--previous-seal-key-id",
        help="attested unseal during a rotation: the previous key (with version) the enclave must name (stack output "
        "vaultEnclave.previousSealKeyId); without it the enclave must name none",
    )
    parser.add_argument(
        "--cluster-id",
        help="the store's cluster id (stack output vaultEnclave.clusterId, config vault.clusterId); without it an "
        "initialised store is refused",
    )
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--init",
        action="store_true",
        help="first deploy only: accept an uninitialised store, to run `bao operator init` through the pinned CA "
        f"(then {RECORD_COMMAND}). Never on a store that held data: the host may have swapped it for an empty one",
    )
    store.add_argument(
        "--record-cluster-id",
        action="store_true",
        help="after the first `bao operator init` and unseal: verify the endpoint (it must still present the CA "
        "pinned in --ca-file), accept its cluster id while the stack pins none, and print the `pulumi config set` "
        f"line that pins it ({CLUSTER_ID_CONFIG_KEY}); writes nothing",
    )
    parser.add_argument(
        "--allow-sealed",
        action="store_true",
        help="accept an initialised store that is still sealed (its cluster id is attested only once unsealed), so "
        "that Shamir shares can be sent: the enclave is verified, and shares sent to a genuine enclave reach nothing "
        "else. Run verify.py again after unsealing",
    )
    parser.add_argument(
        "--simulation", action="store_true", help="accept an enclave in simulation mode (no SGX: test stacks only)"
    )
    parser.add_argument(
        "--ca-file", type=Path, help="where to write the CA file (default ~/.config/confidential-vault)"
    )
    return parser.parse_args(argv)


def record_command(stack: str | None, cluster_id: str) -> str:
    """The command that pins the store's cluster id in the stack's config."""
    target = ["--stack", stack] if stack else []
    return shlex.join(["pulumi", "config", "set", *target, "--path", CLUSTER_ID_CONFIG_KEY, cluster_id])


def _pinned_ca_key(ca_file: Path) -> bytes:
    """The SPKI of the CA certificate pinned in `ca_file`: the key is what the file makes clients trust."""
    try:
        return (
            x509.load_pem_x509_certificate(ca_file.read_bytes())
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    except (OSError, ValueError, UnsupportedAlgorithm) as error:
        raise UsageError(
            f"--record-cluster-id needs the CA file pinned when the store was initialised ({ca_file}: {error}); "
            "give it with --ca-file"
        ) from None


def run(args: argparse.Namespace) -> int:
    """One verification: exit status 0 (verified; CA file written unless recording), 1 (not trusted), 2 (usage)."""
    try:
        expected = build_expectations(args)
        # Absolute, so that the exported BAO_CACERT still works after a `cd`.
        ca_file = (args.ca_file or default_ca_file(expected.host)).expanduser().resolve()
        pinned_key = _pinned_ca_key(ca_file) if expected.recording else None
        leaf = fetch_certificate(expected.host, expected.port, args.address)
        verified = verify_endpoint(leaf, expected, fetch_jwks)
    except UsageError as error:
        print(f"verify.py: {error}", file=sys.stderr)
        return 2
    except NotTrustedError as error:
        print(f"verify.py: NOT TRUSTED: {error}", file=sys.stderr)
        return 1

    claims, store = verified.claims, verified.store
    if expected.recording:
        if claims is None or store is None:
            print(f"verify.py: NOT TRUSTED: {expected.host} runs in simulation: no store is attested", file=sys.stderr)
            return 1
        if _spki("the embedded CA certificate", verified.ca_certificate) != pinned_key:
            print(
                f"verify.py: NOT TRUSTED: {expected.host} presents another CA key than the one pinned in {ca_file} "
                "(the enclave restarted with a new CA, or another one answers): the store it serves may not be the "
                "one you initialised. Verify again (with --allow-sealed if it is sealed), then record",
                file=sys.stderr,
            )
            return 1
        print(
            f"verify.py: verified {expected.host}: it serves the store with cluster id {store.cluster_id}; pin it "
            "in the stack's config, then `pulumi up`:",
            file=sys.stderr,
        )
        print(record_command(args.stack, store.cluster_id))
        return 0

    if claims is None:
        summary = f"verify.py: WARNING: {expected.host} runs in simulation: no SGX, nothing attested"
    else:
        issued = dt.datetime.fromtimestamp(int(claims["iat"]), dt.UTC)
        seal = f"seal key {expected.seal_key_id}" if expected.seal_key_id else "Shamir unseal"
        if expected.previous_seal_key_id:
            seal += f" (previous {expected.previous_seal_key_id})"
        summary = (
            f"verify.py: verified {expected.host}: signer {claims['x-ms-sgx-mrsigner']}, product "
            f"{claims['x-ms-sgx-product-id']}, svn {claims['x-ms-sgx-svn']}, unique id "
            f"{claims.get('x-ms-sgx-mrenclave')}, {seal}, {_store_summary(store)}, attested by {claims['iss']} at "
            f"{_utc(issued)}"
        )
    try:
        write_ca_file(ca_file, verified.ca_certificate)
    except OSError as error:
        print(f"verify.py: could not write {ca_file}: {error}", file=sys.stderr)
        return 2
    print(f"{summary}; wrote {ca_file}", file=sys.stderr)
    if store is not None and not store.initialized:
        print(
            "verify.py: the store is NOT initialised: run `bao operator init` now, through this CA file; then "
            f"`{RECORD_COMMAND}` (with the stack) to pin the store it creates",
            file=sys.stderr,
        )
    elif store is not None and not store.cluster_id:
        print(
            "verify.py: the store is sealed: unseal it, then run verify.py again to check which store it is",
            file=sys.stderr,
        )
    print("\n".join(export_lines(expected.host, expected.port, ca_file)))
    return 0


def _store_summary(store: Store | None) -> str:
    if store is None or not store.initialized:
        return "store not initialised"
    return f"store {store.cluster_id}" if store.cluster_id else "store sealed"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    # Whatever input this script did not foresee is a refusal in one line, never a traceback.
    except Exception as error:
        frame = traceback.extract_tb(error.__traceback__)[-1]
        print(
            f"verify.py: NOT TRUSTED: unexpected {type(error).__name__} at {Path(frame.filename).name}:"
            f"{frame.lineno}: {error}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
