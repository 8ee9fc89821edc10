"""The attested listener end to end on the real OpenBao 2.6.2: the bootstrap's certificate files served by the real
server, refreshed on SIGHUP, verified by scripts/verify.py against a local stand-in of the attestation provider
(tests/test_verify.py's provider and JWKS server), then a client that trusts only the CA file verify.py wrote reads
a secret.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from integration_servers import Bao, go_tool, require_tools, scratch_dir
from test_integration_openbao import FILE_CONFIGS, KEY_V1, initialise, released_key, seal_with
from test_verify import (
    ENCLAVE_CLAIMS,
    HOST,
    SIGNER,
    KeyServer,
    Provider,
    go_listener,
    key_server,
    provider,
    run_verify,
)

pytestmark = pytest.mark.integration
__all__ = ["key_server", "provider"]  # the fixtures tests/test_verify.py defines, used here

# Replicas with the same released seal key derive the same CA; the tool's stand-in for that derivation.
CA_SEED = "integration-test-seal-key"


def issue(out: Path, provider: Provider, key_server: KeyServer, *store: str) -> Path:
    """The bootstrap's listener files (cmd/testcert) for an enclave with attested unseal under KEY_V1, binding the
    store state `store` (none: the first certificate of a start)."""
    return go_listener(
        go_tool("testcert"),
        provider,
        out,
        key_server.url,
        ENCLAVE_CLAIMS,
        f"-seal-key-id={KEY_V1}",
        f"-ca-seed={CA_SEED}",
        store=store,
    )


def install(files: Path, server: Bao) -> None:
    """Replace the served pair as the bootstrap does: key and certificate, each by rename."""
    for name in ("listener.key", "listener.crt", "ca.crt"):
        staged = server.tls_dir / f".{name}.new"
        staged.write_bytes((files / name).read_bytes())
        staged.rename(server.tls_dir / name)


def bound_store(cluster_id: str) -> tuple[str, str]:
    return "-initialized", f"-cluster-id={cluster_id}"


def reload_with(files: Path, server: Bao) -> None:
    install(files, server)
    assert server.process is not None
    server.process.send_signal(signal.SIGHUP)
    expected = ssl.PEM_cert_to_DER_cert((files / "listener.crt").read_text())
    deadline = time.monotonic() + 10
    while served(server) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served(server) == expected, "OpenBao still serves the old certificate 10 s after SIGHUP"


def served(server: Bao) -> bytes:
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate(("127.0.0.1", server.port)))


@pytest.fixture(scope="module")
def enclave(provider: Provider, key_server: KeyServer) -> Iterator[tuple[Bao, str, str]]:
    """A server with the first certificate of a start (initialized false), initialised; yields it, token, cluster id."""
    require_tools()
    base = scratch_dir("cv-bao-listener-")
    server = Bao("listener", base / "server", FILE_CONFIGS)
    install(issue(base / "first", provider, key_server), server)
    seal_with(server, KEY_V1, released_key(base / "released.pem"))
    try:
        store = initialise(server)
        # After unseal the bootstrap re-issues with what OpenBao's health says, and has OpenBao reload (SIGHUP).
        reload_with(issue(base / "after-unseal", provider, key_server, *bound_store(store.cluster_id)), server)
        yield server, store.root_token, store.cluster_id
    finally:
        server.close()
        shutil.rmtree(base, ignore_errors=True)


def test_the_server_serves_the_bootstraps_pair_and_picks_up_a_refreshed_one_on_sighup(
    enclave: tuple[Bao, str, str], provider: Provider, key_server: KeyServer, tmp_path: Path
) -> None:
    server, _, cluster_id = enclave
    assert served(server) == ssl.PEM_cert_to_DER_cert((server.tls_dir / "listener.crt").read_text())
    before, ca_before = served(server), server.ca_pem
    # A renewal (new leaf key, new token, same derived CA): OpenBao picks it up on SIGHUP without a restart.
    reload_with(issue(tmp_path / "renewed", provider, key_server, *bound_store(cluster_id)), server)
    assert served(server) != before
    assert server.ca_pem == ca_before
    assert server.health() is not None  # still serving, still unsealed


def test_verify_py_trusts_the_live_listener_and_its_ca_file_reads_a_secret(
    enclave: tuple[Bao, str, str], key_server: KeyServer, tmp_path: Path
) -> None:
    server, root_token, cluster_id = enclave
    ca_file = tmp_path / "pinned" / "ca.pem"
    result = run_verify(
        *("--host", HOST, "--address", "127.0.0.1", "--port", str(server.port), "--maa-url", key_server.url),
        *("--signer-id", SIGNER, "--product-id", "1", "--min-svn", "2", "--seal-key-id", KEY_V1),
        *("--cluster-id", cluster_id, "--ca-file", str(ca_file)),
        env={"SSL_CERT_FILE": str(key_server.ca_file)},
    )
    assert result.returncode == 0, result.stderr
    assert f"export BAO_CACERT={ca_file}" in result.stdout.splitlines()
    # The client trusts nothing but that file, and checks the name.
    context = ssl.create_default_context(cafile=str(ca_file))
    mounted = server.request(
        "POST", "/v1/sys/mounts/kv", token=root_token, body={"type": "kv", "options": {"version": "1"}}
    )
    assert mounted.status == 204, mounted.text
    assert server.request("PUT", "/v1/kv/verified", token=root_token, body={"value": "read via the pin"}).status == 204
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    connection.sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", server.port), timeout=10), server_hostname=HOST
    )
    connection.request("GET", "/v1/kv/verified", headers={"X-Vault-Token": root_token, "Host": HOST})
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["data"] == {"value": "read via the pin"}
    connection.close()
    # A store with another cluster id is refused by the same command.
    other = run_verify(
        *("--host", HOST, "--address", "127.0.0.1", "--port", str(server.port), "--maa-url", key_server.url),
        *("--signer-id", SIGNER, "--product-id", "1", "--min-svn", "2", "--seal-key-id", KEY_V1),
        *("--cluster-id", "00000000-0000-4000-8000-000000000000", "--ca-file", str(tmp_path / "other.pem")),
        env={"SSL_CERT_FILE": str(key_server.ca_file)},
    )
    assert other.returncode == 1
    assert "NOT TRUSTED" in other.stderr
    assert not (tmp_path / "other.pem").exists()
