"""EGo-Vault: the Vault chart release on the SGX nodes, its Secret, NetworkPolicy, route and outputs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.charts import VAULT
from components.config import ConfigError, VaultSettings, load_settings
from components.routes import EdgeRouting
from components.vault import EgoVault, VaultArgs
from harness import (
    PROJECT,
    PROJECT_ROOT,
    STACKS,
    ProgramRun,
    Registration,
    custom_resource_body,
    encode_config,
    fake_password,
    is_secret,
    run_failing,
    run_function,
    run_program,
    stack_config,
    validate_chart_values,
    validate_custom_resource,
    with_overrides,
)

RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
NAMESPACE = "kubernetes:core/v1:Namespace"
INGRESS_ROUTE = "kubernetes:traefik.io/v1alpha1:IngressRoute"
AGENT_POOL = "azure-native:containerservice:AgentPool"
HOST = "vault.dev.example.org"
SGX_SELECTOR = {"confidential-vault/pool": "sgx"}
IMAGE = {"repository": "registry.example.org/ego-vault", "tag": "1.14.8-ego1.9.0"}
DIGEST = "sha256:" + "ab" * 32
ENCLAVE_JSON = PROJECT_ROOT / "images" / "ego-vault" / "enclave.json"
# The chart's values.yaml documents `server.readinessProbe.path` as a commented-out key; its statefulset
# template renders an httpGet probe when it is set (templates/server-statefulset.yaml, chart 0.34.1).
DOCUMENTED_COMMENTED_KEYS = ("server.readinessProbe.path",)
# Read by the enclave host (`ego run`) to load the enclave without SGX, never by Vault inside the enclave.
HOST_SIDE_ENV = {"OE_SIMULATION"}
OLD_EPC_RESOURCE = "kubernetes.azure.com/sgx_epc_mem_in_MiB"


def run_vault(
    vault: dict[str, Any] | None = None,
    *,
    monitoring: bool = True,
    sgx_pool: bool = True,
    node_selector: dict[str, str] | None = SGX_SELECTOR,
) -> ProgramRun:
    """The component alone, with stand-ins for the cluster's SGX pool, Traefik's and Prometheus' CRDs."""
    settings = VaultSettings.model_validate({"image": IMAGE, **(vault or {})})

    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="fake")
        on_cluster = pulumi.ResourceOptions(provider=provider)
        pool = k8s.core.v1.ConfigMap("sgx-pool-standin", opts=on_cluster) if sgx_pool else None
        traefik = k8s.core.v1.ConfigMap("traefik-crds-standin", opts=on_cluster)
        prometheus = k8s.core.v1.ConfigMap("prometheus-crds-standin", opts=on_cluster) if monitoring else None
        EgoVault(
            "vault",
            VaultArgs(
                settings=settings,
                host=HOST,
                provider=provider,
                routing=EdgeRouting("letsencrypt", "websecure", traefik),
                sgx_pool=pool,
                sgx_node_selector=node_selector,
                monitoring_crds=prometheus,
            ),
        )

    return run_function(program)


def values_of(run: ProgramRun) -> dict[str, Any]:
    return run.one(RELEASE, "ego-vault").inputs["values"]


def server_config(run: ProgramRun) -> str:
    return values_of(run)["server"]["standalone"]["config"]


def hcl_block(config: str, header: str) -> str:
    """The body of the first `header { … }` block (balanced braces), comments dropped."""
    lines = [line.split("#", 1)[0] for line in config.splitlines()]
    text = "\n".join(lines)
    start = text.index(header)
    depth, body_start = 0, text.index("{", start)
    for position in range(body_start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return text[body_start + 1 : position]
    raise AssertionError(f"unbalanced block {header}")


def top_level(config: str) -> str:
    """The config without its blocks: the top-level attributes only."""
    text = "\n".join(line.split("#", 1)[0] for line in config.splitlines())
    while "{" in text:
        text = re.sub(r"[\w\" ]+\{[^{}]*\}", "", text)
    return text


def env_added_by_release(values: dict[str, Any]) -> set[str]:
    """Variables the release adds to the Vault container (the chart's template, server-statefulset.yaml)."""
    server = values["server"]
    names = set(server.get("extraEnvironmentVars") or {})
    names |= {entry["envName"] for entry in server.get("extraSecretEnvironmentVars") or []}
    if server["dev"]["enabled"]:
        names |= {"VAULT_DEV_ROOT_TOKEN_ID", "VAULT_DEV_LISTEN_ADDRESS"}
    if server["ha"].get("apiAddr"):
        names.add("VAULT_API_ADDR")
    return names


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, str):
        yield value


VARIANTS: dict[str, dict[str, Any]] = {
    "server": {},
    "dev": {"mode": "dev"},
    "simulation": {"sgx": {"simulation": True}},
    "dev-simulation": {"mode": "dev", "sgx": {"simulation": True}},
    "injector-digest": {"injector": True, "image": {**IMAGE, "digest": DIGEST}, "clientNamespaces": ["apps"]},
}


# --- the release -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_values_conform_to_the_chart(variant: str, reference: Path) -> None:
    values = values_of(run_vault(VARIANTS[variant]))
    validate_chart_values(reference, VAULT.chart, VAULT.version, values, allowed_extra=DOCUMENTED_COMMENTED_KEYS)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_values_conform_to_the_chart(stack: str, stack_runs: dict[str, ProgramRun], reference: Path) -> None:
    values = values_of(stack_runs[stack])
    validate_chart_values(reference, VAULT.chart, VAULT.version, values, allowed_extra=DOCUMENTED_COMMENTED_KEYS)


def test_conformance_check_catches_a_misspelt_key(reference: Path) -> None:
    values = values_of(run_vault())
    values["server"]["readinessProbe"]["pathh"] = "/v1/sys/health"
    with pytest.raises(AssertionError, match=r"server\.readinessProbe\.pathh"):
        validate_chart_values(reference, VAULT.chart, VAULT.version, values, allowed_extra=DOCUMENTED_COMMENTED_KEYS)


def test_release_is_the_pinned_official_chart_in_the_vault_namespace() -> None:
    run = run_vault()
    release = run.one(RELEASE, "ego-vault")
    assert release.inputs["name"] == "ego-vault"
    assert release.inputs["chart"] == "vault"
    assert release.inputs["version"] == VAULT.version == "0.34.1"
    assert release.inputs["repositoryOpts"]["repo"] == "https://helm.releases.hashicorp.com"
    namespace = run.one(NAMESPACE)
    assert release.inputs["namespace"] == namespace.inputs["metadata"]["name"] == "vault"
    assert run.depends_on(release, namespace)
    assert release.parent == run.one("confidential-vault:vault:EgoVault").urn
    assert release.provider.startswith(run.one("pulumi:providers:kubernetes", "k8s").urn)


@pytest.mark.parametrize(
    ("image", "rendered"),
    [
        (IMAGE, "registry.example.org/ego-vault:1.14.8-ego1.9.0"),
        (
            {"repository": "registry.example.org/ego-vault", "digest": DIGEST},
            f"registry.example.org/ego-vault@{DIGEST}",
        ),
        ({**IMAGE, "digest": DIGEST}, f"registry.example.org/ego-vault:1.14.8-ego1.9.0@{DIGEST}"),
    ],
)
def test_image_reference_pins_the_digest_when_set(image: dict[str, str], rendered: str) -> None:
    image_values = values_of(run_vault({"image": image}))["server"]["image"]
    # The chart renders `image: {{ repository }}:{{ tag }}` (templates/server-statefulset.yaml).
    assert f"{image_values['repository']}:{image_values['tag']}" == rendered


def test_server_mode_is_standalone_file_storage_behind_the_edge() -> None:
    run = run_vault({"storageSize": "25Gi"})
    values = values_of(run)
    server = values["server"]
    assert server["standalone"]["enabled"] is True
    assert server["dev"]["enabled"] is False
    assert server["ha"].get("enabled") in (None, False)
    assert server["dataStorage"] == {
        **server["dataStorage"],
        "enabled": True,
        "size": "25Gi",
        "mountPath": "/vault/data",
    }

    config = server_config(run)
    assert re.search(r'^\s*path\s*=\s*"/vault/data"\s*$', hcl_block(config, 'storage "file"'), re.M)
    assert 'storage "raft"' not in config
    attributes = top_level(config)
    assert re.search(r"^\s*disable_mlock\s*=\s*true\s*$", attributes, re.M)
    assert re.search(r"^\s*ui\s*=\s*true\s*$", attributes, re.M)
    assert re.search(rf'^\s*api_addr\s*=\s*"https://{re.escape(HOST)}"\s*$', attributes, re.M)
    listener = hcl_block(config, 'listener "tcp"')
    assert re.search(r'^\s*address\s*=\s*"\[::\]:8200"\s*$', listener, re.M)
    assert re.search(r"^\s*tls_disable\s*=\s*(1|true)\s*$", listener, re.M)
    assert values["global"]["tlsDisable"] is True  # probes and VAULT_ADDR use http://, as the listener does


def test_api_addr_env_matches_the_config() -> None:
    """The chart exports VAULT_API_ADDR (the pod IP unless `server.ha.apiAddr`), which overrides `api_addr`."""
    assert values_of(run_vault())["server"]["ha"]["apiAddr"] == f"https://{HOST}"
    assert values_of(run_vault({"mode": "dev"}))["server"]["ha"]["apiAddr"] == f"https://{HOST}"


def test_prometheus_can_read_metrics_without_a_token() -> None:
    config = server_config(run_vault())
    telemetry = hcl_block(config, "\ntelemetry")
    assert re.search(r'^\s*prometheus_retention_time\s*=\s*"\d+[smh]"\s*$', telemetry, re.M)
    assert re.search(r"^\s*disable_hostname\s*=\s*true\s*$", telemetry, re.M)
    listener_telemetry = hcl_block(hcl_block(config, 'listener "tcp"'), "telemetry")
    assert re.search(r"^\s*unauthenticated_metrics_access\s*=\s*true\s*$", listener_telemetry, re.M)


def test_probes_and_pre_stop_fit_the_enclave_process() -> None:
    server = values_of(run_vault())["server"]
    # A readiness path makes the chart render httpGet instead of `exec vault status` (no vault CLI in the image).
    readiness = server["readinessProbe"]
    assert readiness["enabled"] is True
    assert readiness["path"].startswith("/v1/sys/health?")
    # Sealed and uninitialised servers must stay reachable for `vault operator init/unseal`.
    assert {"sealedcode=204", "uninitcode=204", "standbyok=true"} <= set(readiness["path"].split("?")[1].split("&"))
    liveness = server["livenessProbe"]
    assert liveness["enabled"] is True
    assert not liveness.get("execCommand")
    assert {"sealedcode=204", "uninitcode=204"} <= set(liveness["path"].split("?")[1].split("&"))
    # ego-vault-stop (images/ego-vault) SIGINTs the enclave host: the only signal it stops cleanly on.
    pre_stop = server["preStop"]
    assert pre_stop[0] == "/usr/local/bin/ego-vault-stop"
    assert "pidof vault" not in " ".join(pre_stop)
    options = dict(zip(pre_stop[1::2], pre_stop[2::2], strict=True))
    assert set(options) <= {"--delay", "--timeout"}
    # Kubernetes kills the container when the grace period ends, hook or not (the script's timeout defaults to 30).
    waited = int(options.get("--delay", "0")) + int(options.get("--timeout", "30"))
    assert server["terminationGracePeriodSeconds"] > waited


def test_sgx_resources_and_node_selector() -> None:
    server = values_of(run_vault({"epc": "256Mi"}))["server"]
    assert server["resources"]["requests"]["sgx.intel.com/epc"] == "256Mi"
    assert server["resources"]["limits"]["sgx.intel.com/epc"] == "256Mi"
    assert "sgx.intel.com/provision" not in server["resources"]["requests"]  # no in-process attestation
    assert server["nodeSelector"] == SGX_SELECTOR


def test_existing_cluster_requests_epc_without_a_node_selector() -> None:
    run = run_vault(sgx_pool=False, node_selector=None)
    server = values_of(run)["server"]
    assert server["resources"]["limits"]["sgx.intel.com/epc"] == "1536Mi"  # the documented default
    assert not server.get("nodeSelector")


def test_release_waits_for_the_sgx_pool() -> None:
    run = run_vault()
    assert run.depends_on(run.one(RELEASE, "ego-vault"), run.one("kubernetes:core/v1:ConfigMap", "sgx-pool-standin"))


def test_simulation_runs_without_sgx() -> None:
    run = run_vault({"sgx": {"simulation": True}})
    server = values_of(run)["server"]
    assert server["extraEnvironmentVars"]["OE_SIMULATION"] == "1"
    resources = server.get("resources") or {}
    assert not any(key.startswith("sgx.intel.com/") for part in resources.values() for key in part)
    assert not server.get("nodeSelector")
    # No SGX needed, so no reason to wait for the SGX pool.
    assert not run.depends_on(
        run.one(RELEASE, "ego-vault"), run.one("kubernetes:core/v1:ConfigMap", "sgx-pool-standin")
    )


def test_injector_is_off_unless_configured() -> None:
    assert values_of(run_vault())["injector"]["enabled"] is False
    assert values_of(run_vault({"injector": True}))["injector"]["enabled"] is True


# --- dev mode ----------------------------------------------------------------------------------


def test_dev_mode_token_comes_from_a_secret_never_from_values() -> None:
    run = run_vault({"mode": "dev"})
    values = values_of(run)
    server = values["server"]
    assert server["dev"]["enabled"] is True
    # The chart renders VAULT_DEV_ROOT_TOKEN_ID from devRootToken first (templates/_helpers.tpl "vault.envs")
    # and the extra secret variables after it; Kubernetes uses the last definition of a variable.
    assert server["dev"]["devRootToken"] == ""
    [secret_env] = server["extraSecretEnvironmentVars"]
    assert secret_env["envName"] == "VAULT_DEV_ROOT_TOKEN_ID"

    secret = run.one(SECRET)
    assert secret.inputs["metadata"] == {"name": secret_env["secretName"], "namespace": "vault"}
    token = fake_password("dev-root-token")
    assert secret.inputs["stringData"] == {secret_env["secretKey"]: token}
    assert is_secret(secret.raw_inputs["stringData"]) or is_secret(
        secret.raw_inputs["stringData"][secret_env["secretKey"]]
    )
    assert run.depends_on(run.one(RELEASE, "ego-vault"), secret)

    exposed = run.plaintext()
    assert token not in exposed
    assert token not in json.dumps(values)


def test_dev_mode_exports_the_token_as_a_secret_output() -> None:
    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="fake")
        vault = EgoVault(
            "vault",
            VaultArgs(
                settings=VaultSettings.model_validate({"image": IMAGE, "mode": "dev"}),
                host=HOST,
                provider=provider,
                routing=EdgeRouting("letsencrypt", "websecure", None),
            ),
        )
        assert vault.dev_root_token is not None
        pulumi.export("token", vault.dev_root_token)

    run = run_function(program)
    assert is_secret(run.raw_outputs["token"])
    assert run.outputs["token"] == fake_password("dev-root-token")


def test_server_mode_has_no_token_secret() -> None:
    run = run_vault()
    assert run.of_type(SECRET) == []
    assert run.of_type("random:index/randomPassword:RandomPassword") == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_literal_token_or_old_epc_resource(variant: str) -> None:
    run = run_vault(VARIANTS[variant])
    values = values_of(run)
    assert not {"root", "mytoken"} & set(strings_in(values))
    exposed = run.plaintext()
    assert "mytoken" not in exposed
    assert OLD_EPC_RESOURCE not in exposed


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variable_the_release_adds_reaches_the_enclave(variant: str) -> None:
    """Inside the enclave only variables listed in enclave.json `env` exist (EGo drops the rest)."""
    enclave = json.loads(ENCLAVE_JSON.read_text())
    listed = {entry["name"] for entry in enclave["env"]}
    added = env_added_by_release(values_of(run_vault(VARIANTS[variant])))
    assert added - HOST_SIDE_ENV <= listed


def test_enclave_mounts_cover_the_chart_paths() -> None:
    enclave = json.loads(ENCLAVE_JSON.read_text())
    hostfs = {mount["target"] for mount in enclave["mounts"] if mount["type"] == "hostfs"}
    data_path = values_of(run_vault())["server"]["dataStorage"]["mountPath"]
    # The chart copies the rendered config to /tmp/storageconfig.hcl and starts Vault with it.
    assert {data_path, "/tmp"} <= hostfs


# --- network, route, observability ---------------------------------------------------------------


def network_policy(run: ProgramRun) -> Registration:
    return run.one(NETWORK_POLICY)


def allowed_namespaces(policy: Registration) -> list[str]:
    [rule] = policy.inputs["spec"]["ingress"]
    return [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rule["from"]]


def test_network_policy_admits_only_traefik_and_prometheus_to_8200() -> None:
    run = run_vault()
    policy = network_policy(run)
    assert policy.inputs["metadata"]["namespace"] == "vault"
    spec = policy.inputs["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    # The chart's server pods (templates/server-statefulset.yaml), not the injector's.
    assert spec["podSelector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "vault",
            "app.kubernetes.io/instance": "ego-vault",
            "component": "server",
        }
    }
    [rule] = spec["ingress"]
    assert rule["ports"] == [{"port": 8200, "protocol": "TCP"}]
    for peer in rule["from"]:
        assert set(peer) == {"namespaceSelector"}
    assert sorted(allowed_namespaces(policy)) == ["monitoring", "traefik"]
    # Pods start only after their ingress is restricted.
    assert run.depends_on(run.one(RELEASE, "ego-vault"), policy)


def test_network_policy_without_monitoring_and_with_client_namespaces() -> None:
    assert allowed_namespaces(network_policy(run_vault(monitoring=False))) == ["traefik"]
    run = run_vault({"clientNamespaces": ["apps", "traefik"]}, monitoring=False)
    assert sorted(allowed_namespaces(network_policy(run))) == ["apps", "traefik"]


def test_route_publishes_the_chart_service(reference: Path) -> None:
    run = run_vault()
    route = run.one(INGRESS_ROUTE)
    validate_custom_resource(reference, custom_resource_body(route))
    assert route.inputs["metadata"]["namespace"] == "vault"
    [rule] = route.inputs["spec"]["routes"]
    assert rule["match"] == f"Host(`{HOST}`)"
    # The chart's main Service is `<release>` when the release name contains "vault" (vault.fullname).
    assert rule["services"] == [{"name": "ego-vault", "kind": "Service", "port": 8200}]
    assert run.depends_on(route, run.one("kubernetes:core/v1:ConfigMap", "traefik-crds-standin"))
    assert not run.depends_on(route, run.one(RELEASE, "ego-vault"))


def test_service_monitor_follows_monitoring() -> None:
    run = run_vault()
    release = run.one(RELEASE, "ego-vault")
    assert values_of(run)["serverTelemetry"]["serviceMonitor"]["enabled"] is True
    assert run.depends_on(release, run.one("kubernetes:core/v1:ConfigMap", "prometheus-crds-standin"))

    without = run_vault(monitoring=False)
    assert values_of(without)["serverTelemetry"]["serviceMonitor"]["enabled"] is False
    # Nothing but its namespace, its policy and the SGX pool: releases do not wait for each other without a reason.
    assert set(without.one(RELEASE, "ego-vault").dependencies) == {
        without.one(NAMESPACE, "vault").urn,
        network_policy(without).urn,
        without.one("kubernetes:core/v1:ConfigMap", "sgx-pool-standin").urn,
    }


def test_dev_server_has_no_service_monitor() -> None:
    """The dev server has no Prometheus telemetry; a ServiceMonitor would only record failed scrapes."""
    run = run_vault({"mode": "dev"})
    assert values_of(run)["serverTelemetry"]["serviceMonitor"]["enabled"] is False
    assert not run.depends_on(
        run.one(RELEASE, "ego-vault"), run.one("kubernetes:core/v1:ConfigMap", "prometheus-crds-standin")
    )


def test_component_outputs() -> None:
    unique_id, signer_id = "1" * 64, "2" * 64

    def program() -> None:
        vault = EgoVault(
            "vault",
            VaultArgs(
                settings=VaultSettings.model_validate(
                    {"image": IMAGE, "enclave": {"uniqueId": unique_id, "signerId": signer_id}}
                ),
                host=HOST,
                provider=k8s.Provider("k8s", kubeconfig="fake"),
                routing=EdgeRouting("letsencrypt", "websecure", None),
            ),
        )
        assert (vault.url, vault.mode) == (f"https://{HOST}", "server")
        assert (vault.enclave_unique_id, vault.enclave_signer_id) == (unique_id, signer_id)
        assert vault.dev_root_token is None

    run_function(program)


# --- the whole program ------------------------------------------------------------------------------


def test_prod_refuses_dev_mode_and_simulation() -> None:
    config, secret_keys = stack_config("prod")
    for key, value in (("vault.mode", "dev"), ("vault.sgx.simulation", True)):
        error, run = run_failing(with_overrides(config, {key: value}), stack="prod", secret_keys=secret_keys)
        assert isinstance(error, pulumi.RunError)
        assert f"{PROJECT}:{key}:" in str(error)
        assert run.of_type(RELEASE) == []


def test_epc_over_the_pool_capacity_is_refused() -> None:
    config = with_overrides(stack_config("dev")[0], {"cluster.sgxPool.vmSize": "Standard_DC2s_v2", "vault.epc": "1Gi"})
    error, run = run_failing(config)
    assert isinstance(error, pulumi.RunError)
    assert (
        f"{PROJECT}:vault.epc: exceeds the EPC of one Standard_DC2s_v2 node (got '1Gi'; allowed: at most 56Mi)"
        in str(error)
    )
    assert run.registrations == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"vault.enclave.signerId": "ABC"}, "vault.enclave.signerId: is not an enclave measurement"),
        ({"vault.clientNamespaces": ["Apps"]}, "vault.clientNamespaces[0]: is not a valid Kubernetes name"),
    ],
)
def test_vault_field_rules(overrides: dict[str, Any], message: str) -> None:
    config = with_overrides(stack_config("dev")[0], overrides)
    with pytest.raises(ConfigError, match=re.escape(f"{PROJECT}:{message}")):
        load_settings(encode_config(config))


@pytest.mark.parametrize("stack", STACKS)
def test_stack_release_depends_on_the_sgx_pool(stack: str, stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs[stack]
    release = run.one(RELEASE, "ego-vault")
    [pool] = run.of_type(AGENT_POOL)
    assert run.depends_on(release, pool)
    node_labels = pool.inputs["nodeLabels"]
    assert values_of(run)["server"]["nodeSelector"].items() <= node_labels.items()


def test_dev_stack_in_dev_mode_exports_the_token_secretly() -> None:
    config, secret_keys = stack_config("dev")
    run = run_program(with_overrides(config, {"vault.mode": "dev"}), secret_keys=secret_keys)
    assert is_secret(run.raw_outputs["vaultDevRootToken"])
    assert run.outputs["vaultDevRootToken"] == fake_password("dev-root-token")
    assert run.outputs["vaultMode"] == "dev"


@pytest.mark.parametrize("stack", STACKS)
def test_stack_exports(stack: str, stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs[stack]
    config = stack_config(stack)[0]
    assert run.outputs["vaultUrl"] == f"https://vault.{config[f'{PROJECT}:domain']}"
    assert run.outputs["vaultMode"] == "server"
    assert "vaultDevRootToken" not in run.outputs
    assert set(run.outputs["vaultEnclave"]) == {"uniqueId", "signerId"}


def test_prod_protects_vault_namespace_and_release(stack_runs: dict[str, ProgramRun]) -> None:
    prod = stack_runs["prod"]
    assert prod.one(RELEASE, "ego-vault").protect
    assert prod.one(NAMESPACE, "vault").protect
    assert not stack_runs["dev"].one(RELEASE, "ego-vault").protect


def test_stack_network_policy_names_the_real_namespaces(stack_runs: dict[str, ProgramRun]) -> None:
    from components import edge, monitoring

    run = stack_runs["dev"]
    assert sorted(allowed_namespaces(network_policy(run))) == sorted([edge.NAMESPACE, monitoring.NAMESPACE])
    assert run.depends_on(run.one(RELEASE, "ego-vault"), run.one(RELEASE, "kube-prometheus-stack"))


def test_existing_cluster_in_simulation() -> None:
    """The path for clusters without SGX nodes: no Azure resources, no SGX requests, no node selector."""
    config = with_overrides(
        stack_config("dev")[0],
        {
            "cluster": {"provider": "existing", "kubeconfigPath": "/tmp/kubeconfig"},
            "owner": None,
            "vault.sgx.simulation": True,
        },
    )
    run = run_program(config)
    assert run.of_type(AGENT_POOL) == []
    server = values_of(run)["server"]
    assert server["extraEnvironmentVars"] == {"OE_SIMULATION": "1"}
    assert "resources" not in server or not any("sgx.intel.com/epc" in part for part in server["resources"].values())
    assert not server.get("nodeSelector")
