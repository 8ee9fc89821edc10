"""The enclave's store identity check against the real OpenBao 2.6.2 on PostgreSQL (tests/integration_servers.py).

The host owns the database URL, so it can restart the very same measured server on an empty database, or on one it
initialised itself (the static seal unseals any store: the seal key is the enclave's, not the database's). The
bootstrap's storeidentity.Checker, run once by its test tool cmd/storecheck with a file in place of the Kubernetes
Secret, must refuse both once it has recorded the store it served.

One server ("the pod") for the module. Each start gets a fresh listener leaf from cmd/testcert under one CA derived
from a seed, as every start of the enclave derives its CA from the released seal key; storecheck pins the CA file of
a separate testcert run, so it trusts the server across restarts only through that derivation.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from integration_servers import BAO, Bao, Postgres, go_tool, require_tools, scratch_dir
from test_integration_openbao import KEY_V1, KEY_V2, POSTGRES_CONFIGS, initialise, released_key, seal_with

pytestmark = pytest.mark.integration

KEY_IDS = {"v1": KEY_V1, "v2": KEY_V2}


def issue_listener(out: Path, ca_seed: str) -> Path:
    """listener.key, listener.crt and ca.crt of one enclave start (simulation: no token), the CA from ca_seed."""
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(go_tool("testcert")), "-simulation", "-names=localhost,127.0.0.1", f"-ca-seed={ca_seed}", f"-out={out}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return out


def unsealed(health: dict[str, Any]) -> bool:
    return bool(health["initialized"] and not health["sealed"] and health.get("cluster_id"))


@dataclass
class Pod:
    """The server and what the enclave holds across its restarts: the released keys and the derived CA."""

    server: Bao
    postgres: Postgres
    ca_seed: str
    ca_file: Path
    keys: dict[str, Path]
    database_a: str
    cluster_id_a: str = ""
    # Store A's record under KEY_V1, as the enclave wrote it on first sight; tests copy it, never change it.
    record_a: bytes = b""

    def restart(self, database_url: str) -> None:
        """The next start of the pod on database_url: the same measured files and seal files, a fresh leaf."""
        if self.server.process is not None and self.server.process.poll() is None:
            self.server.stop()
        issue_listener(self.server.tls_dir, self.ca_seed)
        self.server.env["BAO_PG_CONNECTION_URL"] = database_url
        self.server.start()

    def storecheck(
        self, record: Path, key: str = "v1", previous: str | None = None, ca_file: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        flags = [f"-address=https://127.0.0.1:{self.server.port}", f"-ca-file={ca_file or self.ca_file}"]
        flags += [f"-key-id={KEY_IDS[key]}", f"-released-key={self.keys[key]}", f"-record={record}"]
        if previous:
            flags += [f"-previous-key-id={KEY_IDS[previous]}", f"-previous-released-key={self.keys[previous]}"]
        return subprocess.run(
            [str(go_tool("storecheck")), *flags], capture_output=True, text=True, check=False, timeout=60
        )


def verdict(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stdout.splitlines()
    assert lines, f"storecheck printed no verdict (exit {result.returncode}):\n{result.stderr}"
    return lines[-1]


def accepted(cluster_id: str, initialized: bool = True) -> str:
    return f'accepted: initialized={str(initialized).lower()} cluster_id="{cluster_id}"'


def new_database(postgres: Postgres, purpose: str) -> str:
    return postgres.create_database(f"{purpose}_{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def pod() -> Iterator[Pod]:
    require_tools()
    base = scratch_dir("cv-bao-identity-")
    ca_seed = secrets.token_hex(16)
    keys = {"v1": released_key(base / "v1.pem"), "v2": released_key(base / "v2.pem")}
    with Postgres.running() as postgres:
        server = Bao("pod", base / "server", POSTGRES_CONFIGS)
        seal_with(server, KEY_V1, keys["v1"])
        pinned_ca = issue_listener(base / "pinned", ca_seed) / "ca.crt"
        pod = Pod(server, postgres, ca_seed, pinned_ca, keys, database_a=new_database(postgres, "store_a"))
        try:
            issue_listener(server.tls_dir, ca_seed)
            server.env["BAO_PG_CONNECTION_URL"] = pod.database_a
            pod.cluster_id_a = initialise(server).cluster_id
            first_sight = pod.storecheck(base / "record-a.json")
            assert first_sight.returncode == 0, first_sight.stderr
            pod.record_a = (base / "record-a.json").read_bytes()
            yield pod
        finally:
            server.close()
            shutil.rmtree(base, ignore_errors=True)


def test_storecheck_records_the_real_store_on_first_sight_and_matches_it_on_the_next_run(
    pod: Pod, tmp_path: Path
) -> None:
    if pod.server.env["BAO_PG_CONNECTION_URL"] != pod.database_a:  # another test moved the pod: back to store A
        pod.restart(pod.database_a)
    pod.server.wait_for(unsealed, what="unsealed on store A")
    # OpenBao's own answer, read here over Python's TLS pinned to the same CA file.
    health = pod.server.request("GET", "/v1/sys/health?standbyok=true", ca_pem=pod.ca_file.read_bytes())
    assert health.status == 200, health.text
    cluster_id = health.body["cluster_id"]
    assert cluster_id == pod.cluster_id_a

    record = tmp_path / "store-identity.json"
    first = pod.storecheck(record)
    assert (first.returncode, verdict(first)) == (0, accepted(cluster_id)), first.stderr
    assert "store identity recorded" in first.stderr
    written = record.read_bytes()
    assert json.loads(written)["seal_key_id"] == KEY_V1
    assert cluster_id.encode() not in written  # ciphertext only, as in the Secret the host can read

    second = pod.storecheck(record)
    assert (second.returncode, verdict(second)) == (0, accepted(cluster_id)), second.stderr
    assert "store identity matches the record" in second.stderr
    assert record.read_bytes() == written

    # A listener that does not chain to the pinned CA decides nothing: exit 1, no verdict, the record untouched.
    stranger_ca = issue_listener(tmp_path / "stranger", secrets.token_hex(16)) / "ca.crt"
    stranger = pod.storecheck(record, ca_file=stranger_ca)
    assert stranger.returncode == 1, stranger.stdout
    assert stranger.stdout == ""
    assert "does not chain to the listener CA" in stranger.stderr
    assert record.read_bytes() == written


def test_the_same_server_restarted_on_an_empty_database_is_refused(pod: Pod, tmp_path: Path) -> None:
    record = tmp_path / "store-identity.json"
    record.write_bytes(pod.record_a)
    pod.restart(new_database(pod.postgres, "empty"))
    health = pod.server.wait_for(lambda health: True, what="answering")
    assert (health["initialized"], health["sealed"], health.get("cluster_id")) == (False, True, None)

    refused = pod.storecheck(record)
    assert refused.returncode == 2, refused.stderr
    line = verdict(refused)
    print(f"\nempty database: {line}")
    assert line.startswith("refused: ")
    assert "uninitialised" in line
    assert pod.cluster_id_a in line
    assert KEY_V1 in line
    assert record.read_bytes() == pod.record_a

    # The refusal comes from the record: without one, an uninitialised store is a first deploy (the client's --init).
    none = tmp_path / "no-record.json"
    first_deploy = pod.storecheck(none)
    assert (first_deploy.returncode, verdict(first_deploy)) == (0, accepted("", initialized=False))
    assert not none.exists()


def test_a_store_the_attacker_initialised_is_refused_naming_both_cluster_ids(pod: Pod, tmp_path: Path) -> None:
    record = tmp_path / "store-identity.json"
    record.write_bytes(pod.record_a)
    pod.restart(new_database(pod.postgres, "attacker"))
    pod.server.wait_for(lambda health: not health["initialized"], what="answering uninitialised")
    # The host initialises it with the stock CLI, trusting nothing of the enclave's; the static seal unseals it.
    init = subprocess.run(
        [str(BAO), "operator", "init", "-recovery-shares=1", "-recovery-threshold=1", "-format=json"],
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "BAO_ADDR": f"https://127.0.0.1:{pod.server.port}",
            "BAO_SKIP_VERIFY": "true",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    assert json.loads(init.stdout)["root_token"]
    attacker_cluster_id = pod.server.wait_for(unsealed, what="unsealed after the attacker's init")["cluster_id"]
    assert attacker_cluster_id != pod.cluster_id_a

    refused = pod.storecheck(record)
    assert refused.returncode == 2, refused.stderr
    line = verdict(refused)
    print(f"\nattacker's store: {line}")
    assert line.startswith("refused: ")
    assert attacker_cluster_id in line
    assert pod.cluster_id_a in line
    assert record.read_bytes() == pod.record_a

    # The limit: a host that also deletes the record (the Secret) gets the attacker's store recorded on first sight.
    # That is why the client's pin (verify.py --cluster-id) is the guarantee and this check defence in depth.
    deleted = tmp_path / "deleted.json"
    recorded = pod.storecheck(deleted)
    assert (recorded.returncode, verdict(recorded)) == (0, accepted(attacker_cluster_id))


def test_a_record_under_the_previous_seal_key_is_accepted_and_moved_to_the_current_key(
    pod: Pod, tmp_path: Path
) -> None:
    record = tmp_path / "store-identity.json"
    record.write_bytes(pod.record_a)
    assert json.loads(pod.record_a)["seal_key_id"] == KEY_V1
    # The rotation: OpenBao's static seal and the check both get v2 as current and v1 as previous.
    seal_with(pod.server, KEY_V2, pod.keys["v2"], previous=(KEY_V1, pod.keys["v1"]))
    pod.restart(pod.database_a)
    health = pod.server.wait_for(unsealed, what="unsealed on store A during the rotation")
    assert health["cluster_id"] == pod.cluster_id_a

    rotated = pod.storecheck(record, key="v2", previous="v1")
    assert (rotated.returncode, verdict(rotated)) == (0, accepted(pod.cluster_id_a)), rotated.stderr
    assert f"re-encrypted from {KEY_V1} to {KEY_V2}" in rotated.stderr
    moved = record.read_bytes()
    assert json.loads(moved)["seal_key_id"] == KEY_V2

    # Once the previous key is dropped, v2 alone opens the moved record (a match, not a first sight).
    after = pod.storecheck(record, key="v2")
    assert (after.returncode, verdict(after)) == (0, accepted(pod.cluster_id_a)), after.stderr
    assert "store identity matches the record" in after.stderr
    assert record.read_bytes() == moved

    # A record left under v1 opens under neither key without v1 as previous: it counts as none (the deliberate
    # recovery path, re-initialisation under a new key version) and the store is recorded afresh under v2.
    stale = tmp_path / "stale.json"
    stale.write_bytes(pod.record_a)
    fresh = pod.storecheck(stale, key="v2")
    assert (fresh.returncode, verdict(fresh)) == (0, accepted(pod.cluster_id_a)), fresh.stderr
    assert "unusable, treating it as none" in fresh.stderr
    assert json.loads(stale.read_bytes())["seal_key_id"] == KEY_V2
