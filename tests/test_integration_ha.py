"""HA on PostgreSQL with the real OpenBao 2.6.2, and the alert rules over the real servers' metrics.

Two servers with the measured openbao.hcl + storage-postgresql.hcl + seal-static.hcl on one database, one active and
one standby, and a third on an empty database (uninitialised, so sealed). The failover times are printed (-s).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from integration_servers import PROJECT_ROOT, Bao, Postgres, listener_files, require_tools, scratch_dir
from test_integration_openbao import KEY_V1, POSTGRES_CONFIGS, initialise, released_key, seal_with

pytestmark = pytest.mark.integration

# storage-postgresql.hcl's HA lock: physical/postgresql's 15 s TTL (ha_lock_ttl unset).
LOCK_TTL = 15.0


@dataclass
class Cluster:
    active: Bao
    standby: Bao
    sealed: Bao
    root_token: str
    cluster_id: str
    written: dict[str, str]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    require_tools()
    base = scratch_dir("cv-bao-ha-")
    pem = released_key(base / "released.pem")
    with Postgres.running() as postgres:
        shared = postgres.create_database("ha")
        servers = [
            Bao(f"openbao-{index}", base / f"openbao-{index}", POSTGRES_CONFIGS, index=index) for index in (0, 1, 2)
        ]
        servers[0].peers, servers[1].peers = [servers[1]], [servers[0]]
        for server, database in zip(servers, (shared, shared, postgres.create_database("empty")), strict=True):
            listener_files(server.tls_dir)
            seal_with(server, KEY_V1, pem)
            server.env["BAO_PG_CONNECTION_URL"] = database
        try:
            first = initialise(servers[0])
            servers[1].start()
            servers[2].start()
            servers[1].wait_for(lambda health: not health["sealed"] and health["standby"], what="a standby")
            servers[2].wait_for(lambda health: not health["initialized"], what="answering")
            yield Cluster(servers[0], servers[1], servers[2], first.root_token, first.cluster_id, {})
        finally:
            for server in servers:
                server.close()
            shutil.rmtree(base, ignore_errors=True)


def write(cluster: Cluster, through: Bao, count: int, prefix: str) -> None:
    for number in range(count):
        key, value = f"{prefix}-{number}", f"value {prefix} {number}"
        response = through.request("PUT", f"/v1/kv/{key}", token=cluster.root_token, body={"value": value})
        assert response.status == 204, response.text
        cluster.written[key] = value


def assert_all_readable(cluster: Cluster, server: Bao) -> None:
    listed = server.request("LIST", "/v1/kv", token=cluster.root_token)
    assert listed.status == 200, listed.text
    assert sorted(listed.body["data"]["keys"]) == sorted(cluster.written)
    for key, value in cluster.written.items():
        read = server.request("GET", f"/v1/kv/{key}", token=cluster.root_token)
        assert read.status == 200, read.text
        assert read.body["data"] == {"value": value}


def wait_active(server: Bao, timeout: float) -> None:
    server.wait_for(lambda health: not health["sealed"] and not health["standby"], timeout=timeout, what="active")


def test_the_standby_takes_writes_and_the_active_serves_them(cluster: Cluster) -> None:
    health = cluster.standby.health()
    assert health is not None
    assert health["standby"] is True
    assert health["cluster_id"] == cluster.cluster_id
    mounted = cluster.standby.request(
        "POST", "/v1/sys/mounts/kv", token=cluster.root_token, body={"type": "kv", "options": {"version": "1"}}
    )
    assert mounted.status == 204, mounted.text
    write(cluster, cluster.standby, 20, "through-standby")
    assert_all_readable(cluster, cluster.active)


def scrape(server: Bao, pod: str) -> list[tuple[str, dict[str, str], float]]:
    """The real server's samples of the metrics the alert rules name, labelled as the ServiceMonitor's scrape would."""
    samples = []
    for line in server.metrics().splitlines():
        match = re.fullmatch(r"(vault_[a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match and match.group(1) in rule_metric_names():
            labels = dict(re.findall(r'([a-zA-Z_]+)="([^"]*)"', match.group(2) or ""))
            labels |= {"job": "openbao-internal", "namespace": "vault", "pod": pod, "instance": f"{pod}:8200"}
            samples.append((match.group(1), labels, float(match.group(3))))
    return samples


def exporting(server: Bao, pattern: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not re.search(pattern, server.metrics(), re.MULTILINE):
        assert time.monotonic() < deadline, f"{server.name} does not export {pattern} after {timeout} s"
        time.sleep(0.1)


def rule_metric_names() -> set[str]:
    return {
        name
        for path in (PROJECT_ROOT / "alerts").glob("*.yaml")
        for name in re.findall(r"\b(vault_[a-z_]+)", path.read_text())
    }


def series(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}"


def promtool_over(scraped: dict[str, list[tuple[str, dict[str, str], float]]], tmp_path: Path) -> dict[str, Any]:
    """Run the project's rules over these samples, held for 20 minutes; returns what fired at 15m, by alert."""
    rules = []
    for path in sorted((PROJECT_ROOT / "alerts").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        for group in spec["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
        copy = tmp_path / path.name
        copy.write_text(yaml.safe_dump(spec))
        rules.append(str(copy))
    inputs = [
        {"series": series(name, labels), "values": f"{value:g}x20"}
        for samples in scraped.values()
        for name, labels, value in samples
    ]
    for pod in scraped:
        up = {"job": "openbao-internal", "namespace": "vault", "pod": pod, "instance": f"{pod}:8200"}
        inputs.append({"series": series("up", up), "values": "1x20"})
    inputs.append(
        {
            "series": 'kube_statefulset_replicas{namespace="vault", statefulset="openbao"}',
            "values": f"{len(scraped)}x20",
        }
    )
    return {"rule_files": rules, "inputs": inputs}


def run_promtool(setup: dict[str, Any], expected: dict[str, list[dict[str, str]]], tmp_path: Path) -> None:
    alert_tests = [
        {"eval_time": "15m", "alertname": alert, "exp_alerts": [{"exp_labels": labels} for labels in fired]}
        for alert, fired in expected.items()
    ]
    test_file = tmp_path / "real-series-test.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {
                "rule_files": setup["rule_files"],
                "evaluation_interval": "1m",
                "tests": [{"interval": "1m", "input_series": setup["inputs"], "alert_rule_test": alert_tests}],
            }
        )
    )
    result = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def every_alert() -> set[str]:
    return {
        rule["alert"]
        for path in (PROJECT_ROOT / "alerts").glob("*.yaml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_the_real_servers_export_every_openbao_metric_the_alerts_use(cluster: Cluster) -> None:
    exported = {
        name
        for server in (cluster.active, cluster.standby, cluster.sealed)
        for name in re.findall(r"^(vault_[a-z_]+)", server.metrics(), re.MULTILINE)
    }
    assert rule_metric_names() >= {"vault_core_unsealed", "vault_core_active", "vault_audit_log_request_failure"}
    assert rule_metric_names() - exported == set()


def test_the_alert_rules_over_the_real_active_standby_and_sealed_series(cluster: Cluster, tmp_path: Path) -> None:
    exporting(cluster.standby, r"^vault_core_active\{[^}]*\} 0$")
    exporting(cluster.active, r"^vault_core_active\{[^}]*\} 1$")
    scraped = {
        "openbao-0": scrape(cluster.active, "openbao-0"),
        "openbao-1": scrape(cluster.standby, "openbao-1"),
        "openbao-2": scrape(cluster.sealed, "openbao-2"),
    }
    for pod, samples in scraped.items():
        print(
            f"\n{pod}: "
            + ", ".join(
                f"{name}{{cluster={labels.get('cluster', '')!r}}} {value:g}" for name, labels, value in samples
            ),
            end="",
        )
    sealed = [labels for name, labels, value in scraped["openbao-2"] if name == "vault_core_unsealed" and value == 0]
    assert len(sealed) == 1, scraped["openbao-2"]
    expected: dict[str, list[dict[str, str]]] = {alert: [] for alert in every_alert()}
    # The uninitialised server pages; one standby of the two the StatefulSet should have; nothing else fires.
    # A label with an empty value is no label in Prometheus: the sealed server's cluster="".
    expected["OpenBaoSealed"] = [{**{key: value for key, value in sealed[0].items() if value}, "severity": "critical"}]
    expected["OpenBaoStandbyMissing"] = [{"namespace": "vault", "severity": "warning"}]
    expected = {alert: fired for alert, fired in expected.items() if alert.startswith("OpenBao")}
    run_promtool(promtool_over(scraped, tmp_path), expected, tmp_path)


def test_ha_failover_keeps_data(cluster: Cluster, tmp_path: Path) -> None:
    write(cluster, cluster.active, 20, "before-graceful")
    # Graceful: ego-host passes SIGINT to the enclave, as the chart's preStop SIGTERM reaches it.
    assert cluster.active.process is not None
    signalled = time.monotonic()
    cluster.active.process.send_signal(signal.SIGINT)
    wait_active(cluster.standby, timeout=LOCK_TTL)
    graceful = time.monotonic() - signalled
    assert cluster.active.stop() == 0
    print(f"\nHA failover, graceful stop (SIGINT) of the active server: standby active after {graceful:.2f} s")
    cluster.active, cluster.standby = cluster.standby, cluster.active
    assert_all_readable(cluster, cluster.active)

    cluster.standby.start()
    cluster.standby.wait_for(lambda health: not health["sealed"] and health["standby"], what="a standby again")
    write(cluster, cluster.standby, 20, "before-kill")
    # After a takeover the new active server keeps its stale cluster="" active 0: the rules must still see it active.
    # (A server refreshes its gauges each second: wait for the restarted standby's first.)
    exporting(cluster.standby, r"^vault_core_active\{[^}]*\} 0$")
    exporting(cluster.active, r"^vault_core_active\{[^}]*\} 1$")
    scraped = {"openbao-0": scrape(cluster.standby, "openbao-0"), "openbao-1": scrape(cluster.active, "openbao-1")}
    expected = {alert: [] for alert in every_alert() if alert.startswith("OpenBao")}
    run_promtool(promtool_over(scraped, tmp_path), expected, tmp_path)

    killed_at = time.monotonic()
    cluster.active.stop(signal.SIGKILL)
    wait_active(cluster.standby, timeout=LOCK_TTL + 10)
    killed = time.monotonic() - killed_at
    print(f"HA failover, hard kill (SIGKILL) of the active server: standby active after {killed:.2f} s")
    assert killed < LOCK_TTL + 5
    cluster.active, cluster.standby = cluster.standby, cluster.active
    assert_all_readable(cluster, cluster.active)
    health = cluster.active.health()
    assert health is not None
    assert health["cluster_id"] == cluster.cluster_id
    cluster.standby.start()
    cluster.standby.wait_for(lambda health: not health["sealed"] and health["standby"], what="a standby again")
    assert_all_readable(cluster, cluster.standby)
