"""The secret store: the OpenBao chart release on the SGX nodes, its Secret, NetworkPolicy, route and outputs.

Most assertions are on what Helm really renders from the registered release (tools/render.py runs the pinned Helm
on the chart tree in the reference directory): the names, labels and variables the chart derives from the values
are where a silent break would hide.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

import harness
from components.charts import ALL_CHARTS, OPENBAO
from components.config import ConfigError, VaultSettings, load_settings
from components.openbao import OpenBao, OpenBaoArgs, PostgresStorage, openbao_values
from components.routes import EdgeRouting
from components.seal import SealAccess
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
from scripts import verify
from tools.render import render_release

RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
NAMESPACE = "kubernetes:core/v1:Namespace"
INGRESS_ROUTE = "kubernetes:traefik.io/v1alpha1:IngressRoute"
PASSTHROUGH_ROUTE = "kubernetes:traefik.io/v1alpha1:IngressRouteTCP"
AGENT_POOL = "azure-native:containerservice:AgentPool"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
COMPONENT = "confidential-vault:vault:OpenBao"
HOST = "vault.dev.example.org"
MAA_URL = "https://sharedweu.weu.attest.azure.net"
SGX_SELECTOR = {"confidential-vault/pool": "sgx"}
IMAGE = {"repository": "registry.example.org/ego-openbao", "tag": "2.6.2-ego1.9.0"}
DIGEST = "sha256:" + "ab" * 32
DATABASE_URL = "postgres://openbao:pg-s3cret-pw@cv-dev.postgres.database.azure.com:5432/openbao?sslmode=verify-full"
ENCLAVE_JSON = PROJECT_ROOT / "images" / "ego-openbao" / "enclave.json"
# Keys the chart reads but its values.yaml does not list: `server.readinessProbe.path` is documented there as a
# commented-out key (templates/server-statefulset.yaml renders httpGet when it is set); the name overrides are read
# by templates/_helpers.tpl (`openbao.fullname`, `openbao.name`).
DOCUMENTED_COMMENTED_KEYS = ("server.readinessProbe.path", "fullnameOverride", "nameOverride")
OLD_EPC_RESOURCE = "kubernetes.azure.com/sgx_epc_mem_in_MiB"
# Placeholders the chart's container command replaces with `sed` in the copied config (_helpers.tpl "openbao.args").
CHART_CONFIG_PLACEHOLDERS = ("HOST_IP", "POD_IP", "HOSTNAME", "API_ADDR", "TRANSIT_ADDR", "RAFT_ADDR")
ALERT_FILES = sorted((PROJECT_ROOT / "alerts").glob("*.yaml"))
DASHBOARD_FILES = sorted((PROJECT_ROOT / "dashboards").glob("*.json"))


def run_openbao(
    vault: dict[str, Any] | None = None,
    *,
    monitoring: bool = True,
    sgx_pool: bool = True,
    node_selector: dict[str, str] | None = SGX_SELECTOR,
    attestation_provider: str | None = MAA_URL,
    postgres_replicas: int | None = None,
) -> ProgramRun:
    """The component alone, with stand-ins for the cluster's SGX pool, Traefik's and Prometheus' CRDs, and with
    `postgres_replicas` a stand-in database whose URL is a secret."""
    settings = VaultSettings.model_validate({"image": IMAGE, **(vault or {})})

    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="fake")
        on_cluster = pulumi.ResourceOptions(provider=provider)
        pool = k8s.core.v1.ConfigMap("sgx-pool-standin", opts=on_cluster) if sgx_pool else None
        traefik = k8s.core.v1.ConfigMap("traefik-crds-standin", opts=on_cluster)
        prometheus = k8s.core.v1.ConfigMap("prometheus-crds-standin", opts=on_cluster) if monitoring else None
        postgres = None
        if postgres_replicas is not None:
            database = k8s.core.v1.ConfigMap("database-standin", opts=on_cluster)
            postgres = PostgresStorage(pulumi.Output.secret(DATABASE_URL), [database], postgres_replicas)
        OpenBao(
            "vault",
            OpenBaoArgs(
                settings=settings,
                host=HOST,
                provider=provider,
                routing=EdgeRouting("letsencrypt", "websecure", traefik),
                attestation_provider=attestation_provider,
                sgx_pool=pool,
                sgx_node_selector=node_selector,
                monitoring_crds=prometheus,
                postgres=postgres,
            ),
        )

    return run_function(program)


def release_of(run: ProgramRun) -> Registration:
    return run.one(RELEASE, "openbao")


def values_of(run: ProgramRun) -> dict[str, Any]:
    return release_of(run).inputs["values"]


def server_config(run: ProgramRun) -> str:
    return values_of(run)["server"]["standalone"]["config"]


def rendered(run: ProgramRun) -> list[dict[str, Any]]:
    """What Helm renders for the run's OpenBao release (the cluster serves the monitoring CRDs)."""
    return render_release(release_of(run).inputs)


def objects(manifest: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in manifest if obj["kind"] == kind]


def one(manifest: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [obj for obj in objects(manifest, kind) if name is None or obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[obj['metadata']['name'] for obj in found]}"
    return found[0]


def server_pod(manifest: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod template of the server StatefulSet."""
    return one(manifest, "StatefulSet")["spec"]["template"]


def server_container(manifest: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = server_pod(manifest)["spec"]["containers"]
    return container


def env_names(container: dict[str, Any]) -> list[str]:
    return [entry["name"] for entry in container.get("env") or []]


def selects(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    return bool(selector) and selector.items() <= (labels or {}).items()


def pod_templates(manifest: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, str]]]:
    """`kind/name` and pod labels of every workload the release renders."""
    for obj in manifest:
        if obj["kind"] in ("StatefulSet", "Deployment", "DaemonSet"):
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["metadata"]["labels"]


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
    "postgresql-ha": {},
}


@functools.cache
def variant_run(variant: str) -> ProgramRun:
    return run_openbao(VARIANTS[variant], postgres_replicas=2 if variant == "postgresql-ha" else None)


# --- the release -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_values_conform_to_the_chart(variant: str, reference: Path) -> None:
    values = values_of(variant_run(variant))
    validate_chart_values(reference, OPENBAO.chart, OPENBAO.version, values, allowed_extra=DOCUMENTED_COMMENTED_KEYS)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_values_conform_to_the_chart(stack: str, stack_runs: dict[str, ProgramRun], reference: Path) -> None:
    values = values_of(stack_runs[stack])
    validate_chart_values(reference, OPENBAO.chart, OPENBAO.version, values, allowed_extra=DOCUMENTED_COMMENTED_KEYS)


def test_conformance_check_catches_a_misspelt_key(reference: Path) -> None:
    values = values_of(variant_run("server"))
    values["server"]["readinessProbe"]["pathh"] = "/v1/sys/health"
    with pytest.raises(AssertionError, match=r"server\.readinessProbe\.pathh"):
        validate_chart_values(
            reference, OPENBAO.chart, OPENBAO.version, values, allowed_extra=DOCUMENTED_COMMENTED_KEYS
        )


def test_release_is_the_pinned_openbao_chart_in_the_vault_namespace() -> None:
    run = variant_run("server")
    release = release_of(run)
    assert release.inputs["name"] == "openbao"
    assert release.inputs["chart"] == "./charts/openbao-0.29.2.tgz" == OPENBAO.path  # vendored, no repository
    assert release.inputs["version"] == OPENBAO.version == "0.29.2"
    assert "repositoryOpts" not in release.inputs
    assert OPENBAO.repo == "https://openbao.github.io/openbao-helm"  # where scripts/vendor_charts.py pulls it
    namespace = run.one(NAMESPACE)
    assert release.inputs["namespace"] == namespace.inputs["metadata"]["name"] == "vault"
    assert run.depends_on(release, namespace)
    assert release.parent == run.one(COMPONENT).urn
    assert release.provider.startswith(run.one("pulumi:providers:kubernetes", "k8s").urn)


def test_component_keeps_the_identity_of_the_wave1_component(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the alias the `vault` namespace (protected, holding the data volume) would be a new resource
    under a new parent: Pulumi would create it again and delete the old one, and with it the volume."""
    aliases: dict[str, list[Any]] = {}
    register = harness.RecordingMonitor.RegisterResource

    def recording(self: harness.RecordingMonitor, request: Any) -> Any:
        aliases[request.type] = list(request.aliases)
        return register(self, request)

    monkeypatch.setattr(harness.RecordingMonitor, "RegisterResource", recording)
    run_openbao()
    [alias] = aliases[COMPONENT]
    assert alias.spec.type == "confidential-vault:vault:EgoVault"
    assert alias.spec.name in ("", "vault")  # the same resource name
    # Children carry no alias of their own: the engine derives theirs from the parent's.
    assert aliases[NAMESPACE] == []


def test_no_hashicorp_vault_chart_remains(stack_runs: dict[str, ProgramRun]) -> None:
    assert "vault" not in {pin.chart for pin in ALL_CHARTS}
    for run in stack_runs.values():
        for release in run.of_type(RELEASE):
            assert "vault" not in release.inputs["chart"]
    assert not [pin for pin in ALL_CHARTS if "hashicorp" in pin.repo]
    for variant in VARIANTS:
        for obj in rendered(variant_run(variant)):
            chart_label = (obj["metadata"].get("labels") or {}).get("helm.sh/chart", "openbao-0.29.2")
            assert chart_label == "openbao-0.29.2", obj["metadata"]["name"]
            assert not obj["metadata"]["name"].startswith(("vault", "ego-vault"))


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (IMAGE, "registry.example.org/ego-openbao:2.6.2-ego1.9.0"),
        (
            {"repository": "registry.example.org/ego-openbao", "digest": DIGEST},
            f"registry.example.org/ego-openbao@{DIGEST}",
        ),
        ({**IMAGE, "digest": DIGEST}, f"registry.example.org/ego-openbao:2.6.2-ego1.9.0@{DIGEST}"),
        ({"repository": "localhost:5000/team/ego-openbao", "tag": "dev"}, "localhost:5000/team/ego-openbao:dev"),
        # No registry host in the reference: Docker Hub, which the chart would otherwise replace with quay.io.
        ({"repository": "team/ego-openbao", "tag": "dev"}, "docker.io/team/ego-openbao:dev"),
    ],
)
def test_rendered_image_is_exactly_the_configured_one(image: dict[str, str], expected: str) -> None:
    assert server_container(rendered(run_openbao({"image": image})))["image"] == expected


def test_server_mode_is_standalone_file_storage() -> None:
    run = run_openbao({"storageSize": "25Gi"})
    manifest = rendered(run)
    statefulset = one(manifest, "StatefulSet", "openbao")
    assert statefulset["spec"]["replicas"] == 1
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"  # the PVC is data-openbao-0 (README upgrade runbook)
    assert claim["spec"]["resources"]["requests"]["storage"] == "25Gi"
    [data_mount] = [mount for mount in server_container(manifest)["volumeMounts"] if mount["name"] == "data"]
    assert data_mount["mountPath"] == "/openbao/data"
    # `bao server` with a config is the command line that makes the image start the attested server.
    assert "bao server -config=/tmp/storageconfig.hcl" in server_container(manifest)["args"][0]


def test_chart_config_sets_nothing_the_enclave_could_run() -> None:
    """The configuration that runs is measured into the enclave; the chart's file is a placeholder it ignores.

    It renders (the chart's command copies it), and it holds no setting at all: nothing the host renders can look
    like, or be merged into, what runs — and an image without a measured configuration has nothing to start on.
    """
    run = variant_run("server")
    config = one(rendered(run), "ConfigMap", "openbao-config")["data"]["extraconfig-from-values.hcl"]
    assert config.strip() == server_config(run).strip()
    assert config.strip(), "the chart renders no ConfigMap without a config, and its command then fails"
    settings = [line for line in config.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert settings == []


def test_config_reaches_the_server_unchanged() -> None:
    """The chart's command `sed`-replaces these words in the copied config; none may appear in ours."""
    config = server_config(variant_run("server"))
    assert not [word for word in CHART_CONFIG_PLACEHOLDERS if word in config]


def test_api_addr_is_the_public_url() -> None:
    """The chart exports BAO_API_ADDR (the pod IP unless `server.ha.apiAddr`), which OpenBao prefers to `api_addr`:
    the address it sends clients to."""
    for variant in ("server", "dev", "postgresql-ha"):
        [api_addr] = [
            entry["value"]
            for entry in server_container(rendered(variant_run(variant)))["env"]
            if entry["name"] == "BAO_API_ADDR"
        ]
        assert api_addr == f"https://{HOST}"


def listener_scheme(variant: str) -> str:
    """What the server listens with: TLS on the enclave's key in server mode, plain HTTP for the dev server."""
    return "http" if VARIANTS[variant].get("mode") == "dev" else "https"


def env_of(container: dict[str, Any]) -> dict[str, str]:
    """The container's plain-value variables."""
    return {entry["name"]: entry["value"] for entry in container.get("env") or [] if "value" in entry}


@pytest.mark.parametrize("variant", VARIANTS)
def test_bao_addr_uses_the_listener_scheme(variant: str) -> None:
    """The chart writes BAO_ADDR from `global.tlsDisable`: https:// against a TLS listener, http:// for the dev one."""
    container = server_container(rendered(variant_run(variant)))
    assert env_of(container)["BAO_ADDR"] == f"{listener_scheme(variant)}://127.0.0.1:8200"
    assert {port["name"] for port in container["ports"] if port["containerPort"] == 8200} == {listener_scheme(variant)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_are_http_gets_in_the_listener_scheme_never_bao_status(variant: str) -> None:
    container = server_container(rendered(variant_run(variant)))
    for probe_name in ("readinessProbe", "livenessProbe"):
        probe = container[probe_name]
        assert "exec" not in probe, probe_name
        path, _, query = probe["httpGet"]["path"].partition("?")
        assert path == "/v1/sys/health"
        assert probe["httpGet"]["port"] == 8200
        assert probe["httpGet"]["scheme"] == listener_scheme(variant).upper()
        # Sealed and uninitialised servers must stay reachable for `bao operator init/unseal`.
        assert {"sealedcode=204", "uninitcode=204"} <= set(query.split("&")), probe_name
    assert "bao status" not in json.dumps(container)


def in_cluster_names(service: dict[str, Any]) -> set[str]:
    """The DNS names of a rendered Service inside the cluster (AKS keeps the default cluster domain)."""
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    return {name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"}


@pytest.mark.parametrize("variant", ["server", "simulation", "injector-digest"])
def test_attested_listener_gets_its_names_and_provider(variant: str) -> None:
    """The bootstrap's certificate names the public host and the names in-cluster clients use for the Service
    the route targets; its token comes from the stack's attestation provider (bootstrap/README.md)."""
    run = variant_run(variant)
    manifest = rendered(run)
    env = env_of(server_container(manifest))
    [rule] = run.one(PASSTHROUGH_ROUTE).inputs["spec"]["routes"]
    service = one(manifest, "Service", rule["services"][0]["name"])
    names = env["CV_LISTENER_NAMES"].split(",")
    assert len(names) == len(set(names))
    assert set(names) == {HOST} | in_cluster_names(service)
    assert env["CV_MAA_URL"] == MAA_URL


@pytest.mark.parametrize("variant", ["dev", "dev-simulation"])
def test_dev_server_gets_no_attested_listener_settings(variant: str) -> None:
    """`bao server -dev` starts without the bootstrap: variables for it would be set and never used."""
    names = env_names(server_container(rendered(variant_run(variant))))
    assert [name for name in names if name.startswith("CV_")] == []


def test_simulation_needs_no_attestation_provider() -> None:
    run = run_openbao({"sgx": {"simulation": True}}, attestation_provider=None)
    env = env_of(server_container(rendered(run)))
    assert "CV_MAA_URL" not in env
    assert (env["OE_SIMULATION"], env["CV_LISTENER_NAMES"].split(",")[0]) == ("1", HOST)


def test_an_enclave_that_attests_needs_a_provider() -> None:
    settings = VaultSettings.model_validate({"image": IMAGE})
    with pytest.raises(ValueError, match=r"vault\.attestation\.providerUrl"):
        openbao_values(settings, HOST, sgx_node_selector=None, service_monitor=False, attestation_provider=None)


def test_stop_path_gives_the_enclave_time_to_stop() -> None:
    pod = server_pod(rendered(variant_run("server")))
    [container] = pod["spec"]["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    # The chart's hook, fixed by its template: the image must make `pidof bao` + SIGTERM stop the enclave in order.
    assert command[:2] == ["/bin/sh", "-c"]
    sleep = re.fullmatch(r"sleep (\d+) && kill -SIGTERM \$\(pidof bao\)", command[2])
    assert sleep is not None, command
    # Kubernetes kills the container when the grace period ends, hook or not.
    assert pod["spec"]["terminationGracePeriodSeconds"] >= int(sleep.group(1)) + 30


@pytest.mark.parametrize("variant", ["server", "dev"])
def test_a_changed_server_rolls_out_during_the_deploy(variant: str) -> None:
    # OnDelete would hold a new image or config until the next unattended eviction (README "Upgrades").
    [statefulset] = objects(rendered(variant_run(variant)), "StatefulSet")
    assert statefulset["spec"]["updateStrategy"]["type"] == "RollingUpdate"


def test_sgx_resources_and_node_selector() -> None:
    pod = server_pod(rendered(run_openbao({"epc": "256Mi"})))
    [container] = pod["spec"]["containers"]
    # The enclave quotes in-process (EGo's DCAP attestation): the provisioning device besides the EPC.
    sgx = {"sgx.intel.com/epc": "256Mi", "sgx.intel.com/provision": "1"}
    assert sgx.items() <= container["resources"]["requests"].items()
    assert sgx.items() <= container["resources"]["limits"].items()
    assert pod["spec"]["nodeSelector"] == SGX_SELECTOR


def test_dev_server_on_sgx_does_not_attest() -> None:
    """`bao server -dev` starts without the bootstrap: EPC only, no provisioning device."""
    [container] = server_pod(rendered(variant_run("dev")))["spec"]["containers"]
    for kind in ("requests", "limits"):
        assert container["resources"][kind]["sgx.intel.com/epc"] == "1536Mi"
        assert "sgx.intel.com/provision" not in container["resources"][kind]


def test_existing_cluster_requests_epc_without_a_node_selector() -> None:
    pod = server_pod(rendered(run_openbao(sgx_pool=False, node_selector=None)))
    assert pod["spec"]["containers"][0]["resources"]["limits"]["sgx.intel.com/epc"] == "1536Mi"  # the default
    assert "nodeSelector" not in pod["spec"]


def test_release_waits_for_the_sgx_pool() -> None:
    run = variant_run("server")
    assert run.depends_on(release_of(run), run.one(CONFIG_MAP, "sgx-pool-standin"))


@pytest.mark.parametrize("variant", ["simulation", "dev-simulation"])
def test_simulation_runs_without_sgx(variant: str) -> None:
    run = variant_run(variant)
    manifest = rendered(run)
    pod = server_pod(manifest)
    [container] = pod["spec"]["containers"]
    assert {"name": "OE_SIMULATION", "value": "1"} in container["env"]
    assert "sgx.intel.com" not in json.dumps(manifest)
    assert "nodeSelector" not in pod["spec"]
    # No SGX needed, so no reason to wait for the SGX pool.
    assert not run.depends_on(release_of(run), run.one(CONFIG_MAP, "sgx-pool-standin"))


def test_injector_is_rendered_only_when_configured() -> None:
    def injector_objects(manifest: list[dict[str, Any]]) -> list[str]:
        return [obj["metadata"]["name"] for obj in manifest if "agent-injector" in obj["metadata"]["name"]]

    assert injector_objects(rendered(variant_run("server"))) == []
    assert objects(rendered(variant_run("server")), "MutatingWebhookConfiguration") == []
    assert injector_objects(rendered(variant_run("injector-digest")))
    assert objects(rendered(variant_run("injector-digest")), "MutatingWebhookConfiguration")


# --- dev mode ----------------------------------------------------------------------------------


def test_dev_mode_token_comes_from_a_secret_never_from_values() -> None:
    run = variant_run("dev")
    values = values_of(run)
    manifest = rendered(run)
    container = server_container(manifest)
    assert "bao server -dev" in container["args"][0]
    env = {entry["name"]: entry for entry in container["env"]}
    # OpenBao reads BAO_DEV_ROOT_TOKEN_ID, and the chart's VAULT_DEV_ROOT_TOKEN_ID only without it
    # (openbao/openbao v2.6.2 api/env.go LookupBaoVariable; command/server.go flag dev-root-token-id).
    token_env = env["BAO_DEV_ROOT_TOKEN_ID"]
    assert set(token_env) == {"name", "valueFrom"}
    reference = token_env["valueFrom"]["secretKeyRef"]
    # The chart's own variable carries no token: the well-known default "root" is emptied.
    assert not env["VAULT_DEV_ROOT_TOKEN_ID"].get("value")
    assert values["server"]["dev"]["devRootToken"] == ""

    secret = run.one(SECRET)
    assert secret.inputs["metadata"] == {"name": reference["name"], "namespace": "vault"}
    token = fake_password("dev-root-token")
    assert secret.inputs["stringData"] == {reference["key"]: token}
    assert is_secret(secret.raw_inputs["stringData"]) or is_secret(secret.raw_inputs["stringData"][reference["key"]])
    assert run.depends_on(release_of(run), secret)

    assert token not in run.plaintext()
    assert token not in json.dumps(values)
    assert token not in json.dumps(manifest)


def test_dev_mode_exports_the_token_as_a_secret_output() -> None:
    def program() -> None:
        provider = k8s.Provider("k8s", kubeconfig="fake")
        secret_store = OpenBao(
            "vault",
            OpenBaoArgs(
                settings=VaultSettings.model_validate({"image": IMAGE, "mode": "dev"}),
                host=HOST,
                provider=provider,
                routing=EdgeRouting("letsencrypt", "websecure", None),
            ),
        )
        assert secret_store.dev_root_token is not None
        pulumi.export("token", secret_store.dev_root_token)

    run = run_function(program)
    assert is_secret(run.raw_outputs["token"])
    assert run.outputs["token"] == fake_password("dev-root-token")


def test_server_mode_has_no_token_secret() -> None:
    run = variant_run("server")
    assert run.of_type(SECRET) == []
    assert run.of_type("random:index/randomPassword:RandomPassword") == []
    assert "DEV_ROOT_TOKEN" not in json.dumps(server_container(rendered(run)))


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_literal_token_or_old_epc_resource(variant: str) -> None:
    run = variant_run(variant)
    values = values_of(run)
    assert not {"root", "mytoken"} & set(strings_in(values))
    assert not {"root", "mytoken"} & set(strings_in(rendered(run)))
    exposed = run.plaintext()
    assert "mytoken" not in exposed
    assert OLD_EPC_RESOURCE not in exposed


# --- the enclave's view of the pod --------------------------------------------------------------------


def enclave_config() -> dict[str, Any]:
    assert ENCLAVE_JSON.is_file(), f"{ENCLAVE_JSON} is missing (the EGo-OpenBao image)"
    return json.loads(ENCLAVE_JSON.read_text())


# What the chart renders for the official image that OpenBao's server never reads (v2.6.2's sources): the CLI's
# address, the pod's IPs and host name (the chart's own `sed` on its rendered file uses them), the official
# entrypoint's switches and raft's node id. enclave.json does not forward them: each would only be attack surface.
NOT_FORWARDED_TO_THE_ENCLAVE = frozenset(
    {"BAO_ADDR", "HOST_IP", "POD_IP", "HOSTNAME", "SKIP_CHOWN", "SKIP_SETCAP", "BAO_RAFT_NODE_ID"}
)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variable_the_server_reads_reaches_the_enclave(variant: str) -> None:
    """Inside the enclave only variables listed in enclave.json `env` exist (EGo drops the rest; the bootstrap refuses
    any other). OE_SIMULATION too: `ego run` reads it outside, and the bootstrap inside must know it runs without
    attestation. What the chart renders for the official image only is left outside on purpose."""
    listed = {entry["name"] for entry in enclave_config()["env"] if entry.get("fromHost") or "value" in entry}
    rendered_env = set(env_names(server_container(rendered(variant_run(variant)))))
    assert rendered_env - NOT_FORWARDED_TO_THE_ENCLAVE <= listed, sorted(rendered_env - listed)
    assert not NOT_FORWARDED_TO_THE_ENCLAVE & listed


def test_enclave_sees_the_data_volume_but_not_the_rendered_config() -> None:
    hostfs = {mount["target"]: mount for mount in enclave_config()["mounts"] if mount["type"] == "hostfs"}
    container = server_container(rendered(variant_run("server")))
    data_path = next(mount["mountPath"] for mount in container["volumeMounts"] if mount["name"] == "data")
    assert hostfs[data_path]["readOnly"] is False
    # The chart copies its rendered config to /tmp/storageconfig.hcl and passes it: the host's file must not reach
    # the enclave, which runs its measured configuration instead.
    config_path = re.search(r"-config=(\S+)", container["args"][0])
    assert config_path is not None
    host_config_dir = Path(config_path.group(1)).parent
    assert not [target for target in hostfs if host_config_dir.is_relative_to(target)]


def measured_config() -> str:
    """The OpenBao configuration compiled into the enclave binary: measured with the enclave, the one that runs (with
    the static seal's file added for attested unseal, which holds nothing but the seal)."""
    return embedded_file("/etc/openbao/openbao.hcl")


def embedded_file(target: str) -> str:
    """The measured file the bootstrap writes at `target` inside the enclave: compiled into the binary from
    bootstrap/measured/ (go:embed), so the name under /etc/openbao is the name in that directory."""
    assert target.startswith("/etc/openbao/"), target
    return (ENCLAVE_JSON.parent / "bootstrap" / "measured" / Path(target).name).read_text()


def hcl_block(config: str, header: str) -> str:
    """The body of the first `header { … }` block (balanced braces), comments dropped."""
    text = "\n".join(line.split("#", 1)[0] for line in config.splitlines())
    start = text.index(header)
    depth, body_start = 0, text.index("{", start)
    for position in range(body_start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return text[body_start + 1 : position]
    raise AssertionError(f"unbalanced block {header}")


def attribute(block: str, name: str) -> str | None:
    found = re.findall(rf'^\s*{name}\s*=\s*"?([^"\n]*?)"?\s*$', block, re.M)
    assert len(found) <= 1, (name, found)
    return found[0] if found else None


def test_measured_config_serves_what_the_cluster_expects() -> None:
    """The pod, Service, probes and ServiceMonitor the chart renders meet the configuration inside the enclave:
    its storage on the data volume, its TLS listener on the port everything targets, metrics without a token."""
    manifest = rendered(variant_run("server"))
    config = measured_config()
    container = server_container(manifest)
    data_path = next(mount["mountPath"] for mount in container["volumeMounts"] if mount["name"] == "data")
    storage = embedded_file("/etc/openbao/storage-file.hcl")
    assert attribute(hcl_block(storage, 'storage "file"'), "path") == data_path

    listener = hcl_block(config, 'listener "tcp"')
    address = attribute(listener, "address")
    assert address is not None
    [https_port] = [port["containerPort"] for port in container["ports"] if port["name"] == "https"]
    assert address.rsplit(":", 1)[1] == str(https_port) == str(container["readinessProbe"]["httpGet"]["port"])
    # TLS on the bootstrap's files, in enclave memory: the HTTPS the probes, route and ServiceMonitor speak.
    assert attribute(listener, "tls_disable") in (None, "0", "false")
    assert (attribute(listener, "tls_cert_file") or "").startswith("/run/")
    assert (attribute(listener, "tls_key_file") or "").startswith("/run/")

    monitor = one(manifest, "ServiceMonitor")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/v1/sys/metrics"
    assert "authorization" not in endpoint  # so the listener must serve metrics without a token:
    assert attribute(hcl_block(listener, "telemetry"), "unauthenticated_metrics_access") == "true"
    assert attribute(hcl_block(config, "\ntelemetry"), "prometheus_retention_time")
    # The chart's api_addr would be ignored anyway: the address comes from BAO_API_ADDR, which enclave.json forwards.
    assert attribute(config, "api_addr") is None


def test_the_container_runs_the_image_entrypoint_with_bao_server() -> None:
    """The image's entrypoint takes the chart's command line as is (images/ego-openbao)."""
    for variant, expected in (("server", ["bao", "server", "-config=/tmp/storageconfig.hcl"]), ("dev", None)):
        container = server_container(rendered(variant_run(variant)))
        assert container["command"] == ["/bin/sh", "-ec"]
        last_line = container["args"][0].strip().splitlines()[-1]
        words = shlex.split(last_line)
        assert words[0] == "/usr/local/bin/docker-entrypoint.sh"
        assert words[1:] == (expected or ["bao", "server", "-dev"])


# --- network, route, observability ---------------------------------------------------------------


def network_policy(run: ProgramRun) -> Registration:
    return run.one(NETWORK_POLICY)


def allowed_namespaces(policy: Registration) -> list[str]:
    """The namespaces admitted to 8200 (in HA a second rule admits the servers to each other on 8201)."""
    [rule] = [rule for rule in policy.inputs["spec"]["ingress"] if rule["ports"][0]["port"] == 8200]
    return [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in rule["from"]]


def test_network_policy_admits_only_traefik_and_prometheus_to_8200() -> None:
    run = variant_run("server")
    policy = network_policy(run)
    assert policy.inputs["metadata"]["namespace"] == "vault"
    spec = policy.inputs["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    [rule] = spec["ingress"]
    assert rule["ports"] == [{"port": 8200, "protocol": "TCP"}]
    for peer in rule["from"]:
        assert set(peer) == {"namespaceSelector"}
    assert sorted(allowed_namespaces(policy)) == ["monitoring", "traefik"]
    # Pods start only after their ingress is restricted.
    assert run.depends_on(release_of(run), policy)


@pytest.mark.parametrize("variant", VARIANTS)
def test_network_policy_selects_the_rendered_server_pods_and_nothing_else(variant: str) -> None:
    """A policy that selects nothing leaves the server open to every pod; one that selects the injector
    would cut the API server off its webhook."""
    run = variant_run(variant)
    selector = network_policy(run).inputs["spec"]["podSelector"]["matchLabels"]
    manifest = rendered(run)
    selected = [name for name, labels in pod_templates(manifest) if selects(selector, labels)]
    assert selected == ["StatefulSet/openbao"]


def test_network_policy_without_monitoring_and_with_client_namespaces() -> None:
    assert allowed_namespaces(network_policy(run_openbao(monitoring=False))) == ["traefik"]
    run = run_openbao({"clientNamespaces": ["apps", "traefik"]}, monitoring=False)
    assert sorted(allowed_namespaces(network_policy(run))) == ["apps", "traefik"]


def route_target(run: ProgramRun, route: Registration) -> tuple[dict[str, Any], dict[str, Any]]:
    """The route's one backend, and the rendered Service it names (the Service reaches the server pods)."""
    [rule] = route.inputs["spec"]["routes"]
    [backend] = rule["services"]
    manifest = rendered(run)
    service = one(manifest, "Service", backend["name"])
    assert selects(service["spec"]["selector"], server_pod(manifest)["metadata"]["labels"])
    return backend, service


def test_server_route_passes_tls_through_to_the_enclave_listener(reference: Path) -> None:
    """Traefik forwards `vault.<domain>` by SNI without opening it: TLS ends in the enclave, on port 8200."""
    run = variant_run("server")
    assert run.of_type(INGRESS_ROUTE) == []
    route = run.one(PASSTHROUGH_ROUTE)
    validate_custom_resource(reference, custom_resource_body(route))
    assert route.inputs["metadata"]["namespace"] == "vault"
    spec = route.inputs["spec"]
    assert spec["tls"] == {"passthrough": True}  # no certResolver: no ACME certificate for the host
    [rule] = spec["routes"]
    assert rule["match"] == f"HostSNI(`{HOST}`)"
    backend, service = route_target(run, route)
    [port] = [port for port in service["spec"]["ports"] if port["port"] == backend["port"]]
    # The port forwards to the container port the server's TLS listener serves (named after the chart's scheme).
    [container_port] = [p for p in server_container(rendered(run))["ports"] if p["containerPort"] == port["targetPort"]]
    assert (container_port["containerPort"], container_port["name"]) == (8200, "https")
    assert run.depends_on(route, run.one(CONFIG_MAP, "traefik-crds-standin"))
    assert not run.depends_on(route, release_of(run))


def test_dev_route_terminates_tls_at_traefik(reference: Path) -> None:
    """The dev server listens in plain HTTP: Traefik terminates TLS with an ACME certificate (not confidential)."""
    run = variant_run("dev")
    assert run.of_type(PASSTHROUGH_ROUTE) == []
    route = run.one(INGRESS_ROUTE)
    validate_custom_resource(reference, custom_resource_body(route))
    assert route.inputs["spec"]["tls"] == {"certResolver": "letsencrypt"}
    assert route.inputs["spec"]["routes"][0]["match"] == f"Host(`{HOST}`)"
    backend, service = route_target(run, route)
    [port] = [port for port in service["spec"]["ports"] if port["port"] == backend["port"]]
    assert port["name"] == "http"


def service_monitor_target(manifest: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ServiceMonitor and the one rendered Service it selects."""
    monitor = one(manifest, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    [service] = [svc for svc in objects(manifest, "Service") if selects(selector, svc["metadata"]["labels"])]
    return monitor, service


def test_service_monitor_scrapes_a_rendered_service_port(reference: Path) -> None:
    run = variant_run("server")
    manifest = rendered(run)
    monitor, service = service_monitor_target(manifest)
    validate_custom_resource(reference, monitor)
    assert monitor["metadata"]["namespace"] == "vault"
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["params"]) == ("/v1/sys/metrics", {"format": ["prometheus"]})
    # The listener speaks TLS on a certificate born in the enclave at each start: Prometheus cannot pin it and
    # scrapes unauthenticated metrics without verifying (values/openbao.yaml says why that is acceptable).
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    assert "authorization" not in endpoint
    assert "bearerTokenFile" not in endpoint
    assert selects(service["spec"]["selector"], server_pod(manifest)["metadata"]["labels"])
    assert run.depends_on(release_of(run), run.one(CONFIG_MAP, "prometheus-crds-standin"))


def secret_store_queries() -> list[str]:
    """Every alert and dashboard query about the secret store: those on OpenBao's metrics or naming it."""
    exprs = [
        rule["expr"]
        for path in ALERT_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
    exprs += [
        target["expr"]
        for path in DASHBOARD_FILES
        for panel in json.loads(path.read_text())["panels"]
        for target in panel.get("targets", [])
    ]
    return [expr for expr in exprs if "vault_" in expr or "openbao" in expr]


def test_alerts_and_dashboards_select_what_the_chart_renders() -> None:
    """Prometheus' `job` is the scraped Service's name and kube-state-metrics' `container` the container's:
    a matcher on anything else finds no series, so an alert on it never fires."""
    manifest = rendered(variant_run("server"))
    _, service = service_monitor_target(manifest)
    exprs = secret_store_queries()
    assert len(exprs) >= 10  # the alerts and the OpenBao dashboard's panels
    jobs = {value for expr in exprs for value in re.findall(r'\bjob\s*=~?\s*"([^"]*)"', expr)}
    containers = {value for expr in exprs for value in re.findall(r'\bcontainer\s*=~?\s*"([^"]*)"', expr)}
    namespaces = {value for expr in exprs for value in re.findall(r'\bnamespace\s*=~?\s*"([^"]*)"', expr)}
    assert jobs == {service["metadata"]["name"]}
    assert containers == {server_container(manifest)["name"]}
    assert namespaces == {service["metadata"]["namespace"]}
    unscoped_up = [expr for expr in exprs if re.search(r"\bup\b(?!\{job=)", expr)]
    assert not unscoped_up, "an `up` without a job counts every target"


def test_service_monitor_follows_monitoring() -> None:
    run = variant_run("server")
    assert values_of(run)["serverTelemetry"]["serviceMonitor"]["enabled"] is True

    without = run_openbao(monitoring=False)
    assert objects(rendered(without), "ServiceMonitor") == []
    # Nothing but its namespace, its policy and the SGX pool: releases do not wait for each other without a reason.
    assert set(release_of(without).dependencies) == {
        without.one(NAMESPACE, "vault").urn,
        network_policy(without).urn,
        without.one(CONFIG_MAP, "sgx-pool-standin").urn,
    }


def test_dev_server_has_no_service_monitor() -> None:
    """The dev server's listener serves metrics only with a token; a ServiceMonitor would record failures."""
    run = variant_run("dev")
    assert objects(rendered(run), "ServiceMonitor") == []
    assert not run.depends_on(release_of(run), run.one(CONFIG_MAP, "prometheus-crds-standin"))


@pytest.mark.parametrize(("mode", "termination"), [("server", "enclave"), ("dev", "traefik")])
def test_component_outputs(mode: str, termination: str) -> None:
    identity = {"uniqueId": "1" * 64, "signerId": "2" * 64, "productId": 3, "securityVersion": 4}

    def program() -> None:
        secret_store = OpenBao(
            "vault",
            OpenBaoArgs(
                settings=VaultSettings.model_validate({"image": IMAGE, "mode": mode, "enclave": identity}),
                host=HOST,
                provider=k8s.Provider("k8s", kubeconfig="fake"),
                routing=EdgeRouting("letsencrypt", "websecure", None),
                attestation_provider=MAA_URL,
            ),
        )
        assert (secret_store.url, secret_store.mode) == (f"https://{HOST}", mode)
        assert secret_store.tls_termination == termination
        assert secret_store.expected_enclave == {
            **identity,
            "attestationProvider": MAA_URL,
            "simulation": False,
            "sealKeyId": None,
            "previousSealKeyId": None,
            "clusterId": "not pinned",
        }

    run_function(program)


def test_the_pinned_store_is_in_the_stack_outputs() -> None:
    cluster_id = "8f2c1e4a-5b6d-4c3e-9a7f-0e1d2c3b4a59"
    config, secret_keys = stack_config("dev")
    run = run_program(with_overrides(config, {"vault.clusterId": cluster_id}), secret_keys=secret_keys)
    assert run.outputs["vaultEnclave"]["clusterId"] == cluster_id
    assert verify.expectations_from_outputs(run.outputs)["cluster_id"] == cluster_id


def test_a_rotation_tells_clients_the_previous_key_the_enclave_gets() -> None:
    """verify.py refuses a previous key the stack does not expect: the output is the very id the enclave is given."""
    old, new = "ab" * 16, "cd" * 16
    config, secret_keys = stack_config("prod")
    overrides = {"vault.unseal.keyVersion": new, "vault.unseal.previousKeyVersion": old}
    run = run_program(with_overrides(config, overrides), stack="prod", secret_keys=secret_keys)
    env = env_of(server_container(rendered(run)))
    enclave = run.outputs["vaultEnclave"]
    assert enclave["previousSealKeyId"] == env["CV_SEAL_PREVIOUS_KEY_ID"]
    assert enclave["previousSealKeyId"] == enclave["sealKeyId"].removesuffix(new) + old
    assert verify.expectations_from_outputs(run.outputs)["previous_seal_key_id"] == enclave["previousSealKeyId"]


@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_prod_without_a_pinned_store_warns_on_every_run(caplog: pytest.LogCaptureFixture, preview: bool) -> None:
    config, secret_keys = stack_config("prod")
    with caplog.at_level("WARNING"):
        run = run_program(config, stack="prod", secret_keys=secret_keys, preview=preview)
    assert run.outputs["vaultEnclave"]["clusterId"] == "not pinned"
    [warning] = [record.getMessage() for record in caplog.records if "vault.clusterId" in record.getMessage()]
    assert warning == (
        "vault.clusterId is not set (vaultEnclave.clusterId: not pinned): scripts/verify.py refuses this stack's "
        "store once it is initialised. After the first `bao operator init`, run `scripts/verify.py prod "
        "--record-cluster-id`, run the `pulumi config set` line it prints, then `pulumi up` (README, First deploy)."
    )

    caplog.clear()
    pinned = with_overrides(config, {"vault.clusterId": "8f2c1e4a-5b6d-4c3e-9a7f-0e1d2c3b4a59"})
    with caplog.at_level("WARNING"):
        run_program(pinned, stack="prod", secret_keys=secret_keys, preview=preview)
    assert not [record for record in caplog.records if "vault.clusterId" in record.getMessage()]


# --- the whole program ------------------------------------------------------------------------------


def test_prod_refuses_dev_mode_and_simulation() -> None:
    config, secret_keys = stack_config("prod")
    for key, value in (("vault.mode", "dev"), ("vault.sgx.simulation", True)):
        error, run = run_failing(with_overrides(config, {key: value}), stack="prod", secret_keys=secret_keys)
        assert isinstance(error, pulumi.RunError)
        assert f"{PROJECT}:{key}:" in str(error)
        assert run.of_type(RELEASE) == []


def test_epc_over_the_pool_capacity_is_refused() -> None:
    config = with_overrides(stack_config("dev")[0], {"cluster.sgxPool.vmSize": "Standard_DC1s_v3", "vault.epc": "5Gi"})
    error, run = run_failing(config)
    assert isinstance(error, pulumi.RunError)
    assert (
        f"{PROJECT}:vault.epc: exceeds the EPC of one Standard_DC1s_v3 node (got '5Gi'; allowed: at most 4096Mi)"
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
def test_stack_release_runs_on_the_sgx_pool(stack: str, stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs[stack]
    release = release_of(run)
    [pool] = run.of_type(AGENT_POOL)
    assert run.depends_on(release, pool)
    pod = server_pod(rendered(run))
    assert pod["spec"]["nodeSelector"].items() <= pool.inputs["nodeLabels"].items()
    epc = pod["spec"]["containers"][0]["resources"]
    assert epc["requests"]["sgx.intel.com/epc"] == epc["limits"]["sgx.intel.com/epc"]


@pytest.mark.parametrize("stack", STACKS)
def test_stack_image_is_the_ego_openbao_image(stack: str, stack_runs: dict[str, ProgramRun]) -> None:
    image = stack_config(stack)[0][f"{PROJECT}:vault"]["image"]
    assert image["repository"].rsplit("/", 1)[-1] == "ego-openbao"
    rendered_image = server_container(rendered(stack_runs[stack]))["image"]
    assert rendered_image.startswith(f"{image['repository']}:") or rendered_image.startswith(f"{image['repository']}@")


def test_dev_stack_in_dev_mode_exports_the_token_secretly() -> None:
    config, secret_keys = stack_config("dev")
    run = run_program(with_overrides(config, {"vault.mode": "dev"}), secret_keys=secret_keys)
    assert is_secret(run.raw_outputs["vaultDevRootToken"])
    assert run.outputs["vaultDevRootToken"] == fake_password("dev-root-token")
    assert run.outputs["vaultMode"] == "dev"


@pytest.mark.parametrize("stack", STACKS)
def test_stack_exports_keep_their_wave1_names(stack: str, stack_runs: dict[str, ProgramRun]) -> None:
    run = stack_runs[stack]
    config = stack_config(stack)[0]
    assert run.outputs["vaultUrl"] == f"https://vault.{config[f'{PROJECT}:domain']}"
    assert run.outputs["vaultMode"] == "server"
    assert run.outputs["vaultTlsTermination"] == "enclave"
    assert "vaultDevRootToken" not in run.outputs


@pytest.mark.parametrize("stack", STACKS)
def test_verifier_reads_the_expected_identity_from_the_stack_outputs(
    stack: str, stack_runs: dict[str, ProgramRun]
) -> None:
    """scripts/verify.py takes the stack's real outputs and finds in them the configured identity, the endpoint the
    route publishes and the provider the enclave is told to ask."""
    run = stack_runs[stack]
    configured = stack_config(stack)[0][f"{PROJECT}:vault"].get("enclave", {})
    fields = verify.expectations_from_outputs(run.outputs)
    [rule] = run.one(PASSTHROUGH_ROUTE).inputs["spec"]["routes"]
    assert rule["match"] == f"HostSNI(`{fields['host']}`)"
    assert fields["port"] == 443
    assert {key: fields.get(field) for field, key in verify.ENCLAVE_OUTPUT_KEYS.items() if key in configured} == {
        key: configured[key] for key in configured
    }
    assert fields["simulation"] is False
    env = env_of(server_container(rendered(run)))
    assert fields["maa_url"] == env["CV_MAA_URL"]
    # The seal key clients expect is the one the enclave is told to release (attested unseal), or none (Shamir).
    assert fields.get("seal_key_id") == env.get("CV_SEAL_KEY_ID")
    assert fields.get("previous_seal_key_id") == env.get("CV_SEAL_PREVIOUS_KEY_ID")
    # No example stack pins a store (its cluster id exists only after `bao operator init`).
    assert run.outputs["vaultEnclave"]["clusterId"] == "not pinned"
    assert "cluster_id" not in fields
    if stack == "prod":
        assert fields["seal_key_id"] == run.outputs["vaultSeal"]["keyId"]
        # Everything a token is checked against is there: the verifier needs no flags on prod.
        expected = verify.Expectations(**fields)
        verify.check_expectations(expected)
        assert verify.require_identity(expected) == env["CV_MAA_URL"]


def test_dev_mode_outputs_say_tls_ends_at_traefik() -> None:
    config, secret_keys = stack_config("dev")
    run = run_program(with_overrides(config, {"vault.mode": "dev"}), secret_keys=secret_keys)
    assert run.outputs["vaultTlsTermination"] == "traefik"
    assert run.of_type(PASSTHROUGH_ROUTE) == []


def test_prod_protects_the_namespace_and_the_release(stack_runs: dict[str, ProgramRun]) -> None:
    prod = stack_runs["prod"]
    assert release_of(prod).protect
    assert prod.one(NAMESPACE, "vault").protect
    assert not release_of(stack_runs["dev"]).protect


def test_stack_network_policy_names_the_real_namespaces(stack_runs: dict[str, ProgramRun]) -> None:
    from components import edge, monitoring

    run = stack_runs["dev"]
    assert sorted(allowed_namespaces(network_policy(run))) == sorted([edge.NAMESPACE, monitoring.NAMESPACE])
    assert run.depends_on(release_of(run), run.one(RELEASE, "kube-prometheus-stack"))


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
    manifest = rendered(run)
    assert "sgx.intel.com" not in json.dumps(manifest)
    assert "nodeSelector" not in server_pod(manifest)["spec"]
    env = env_of(server_container(manifest))
    assert env["OE_SIMULATION"] == "1"
    # No region to take a provider from, and none needed: a simulation has no attestation.
    assert "CV_MAA_URL" not in env
    assert run.outputs["vaultEnclave"]["simulation"] is True
    assert run.outputs["vaultEnclave"]["attestationProvider"] is None


# --- attested unseal: the prod stack's secret store and its seal key --------------------------------------------

# Key Vault control-plane API 2026-02-01 (components/azure_api.py).
SEAL_KEY = "azure-native:keyvault/v20260201:Key"
KEY_VAULT = "azure-native:keyvault/v20260201:Vault"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
FEDERATED_CREDENTIAL = "azure-native:managedidentity:FederatedIdentityCredential"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
# Azure built-in roles whose data actions include keys/release/action: "Key Vault Crypto Service Release User" and the
# broader ones a careless grant would use (Key Vault Administrator, Key Vault Crypto Officer).
RELEASE_ROLES = {
    "08bbd89e-9f13-488c-ac41-acfcb10c90ab": "Key Vault Crypto Service Release User",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "14b46e9e-c2b7-41b4-b07b-48a6ebf60603": "Key Vault Crypto Officer",
}
# What the AKS workload identity webhook looks for (azure-workload-identity docs: pod label, service account
# annotation).
WORKLOAD_IDENTITY_LABEL = ("azure.workload.identity/use", "true")
CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"


def test_prod_secret_store_waits_for_key_identity_credential_and_grant(stack_runs: dict[str, ProgramRun]) -> None:
    prod = stack_runs["prod"]
    release = release_of(prod)
    grant = prod.one(ROLE_ASSIGNMENT, "seal-key-release")
    for dependency in (prod.one(SEAL_KEY), prod.one(IDENTITY), prod.one(FEDERATED_CREDENTIAL), grant):
        assert prod.depends_on(release, dependency), dependency.type


def test_exactly_one_grant_releases_the_seal_key(stack_runs: dict[str, ProgramRun]) -> None:
    prod = stack_runs["prod"]
    releasing = [
        grant
        for grant in prod.of_type(ROLE_ASSIGNMENT)
        if grant.inputs["roleDefinitionId"].rsplit("/", 1)[-1] in RELEASE_ROLES
    ]
    assert len(releasing) == 1
    [grant] = releasing
    assert RELEASE_ROLES[grant.inputs["roleDefinitionId"].rsplit("/", 1)[-1]] == "Key Vault Crypto Service Release User"
    assert grant.inputs["scope"].endswith("/keys/openbao-seal")
    assert grant.inputs["principalId"] == harness.FAKE_IDENTITY_PRINCIPAL_ID
    # Nothing else of the program is scoped to the vault or the key.
    vault_id = grant.inputs["scope"].removesuffix("/keys/openbao-seal")
    assert [g.name for g in prod.of_type(ROLE_ASSIGNMENT) if g.inputs["scope"].startswith(vault_id)] == [grant.name]


def test_prod_pod_joins_workload_identity_and_gets_the_seal_key_id(stack_runs: dict[str, ProgramRun]) -> None:
    prod = stack_runs["prod"]
    manifest = rendered(prod)
    pod = server_pod(manifest)
    label, value = WORKLOAD_IDENTITY_LABEL
    assert pod["metadata"]["labels"][label] == value
    # The NetworkPolicy still selects the pod: the label is added, none replaced.
    assert selects(network_policy(prod).inputs["spec"]["podSelector"]["matchLabels"], pod["metadata"]["labels"])

    account_name = pod["spec"]["serviceAccountName"]
    account = one(manifest, "ServiceAccount", account_name)
    identity = prod.one(IDENTITY)
    assert account["metadata"]["annotations"][CLIENT_ID_ANNOTATION] == harness.FAKE_IDENTITY_CLIENT_ID
    # The federated credential trusts exactly this account's tokens, issued by this cluster.
    credential = prod.one(FEDERATED_CREDENTIAL)
    assert credential.inputs["subject"] == f"system:serviceaccount:{account['metadata']['namespace']}:{account_name}"
    assert credential.inputs["resourceName"] == identity.inputs["resourceName"]
    assert credential.inputs["issuer"] == "https://oidc.example/issuer"

    env = env_of(server_container(manifest))
    assert env["CV_SEAL_KEY_ID"] == prod.outputs["vaultSeal"]["keyId"] == prod.outputs["vaultEnclave"]["sealKeyId"]
    assert re.fullmatch(
        r"https://kv-prod-[a-z0-9]{6}\.vault\.azure\.net/keys/openbao-seal/[0-9a-f]{32}", env["CV_SEAL_KEY_ID"]
    )
    assert "CV_SEAL_PREVIOUS_KEY_ID" not in env, "outside a rotation"
    # The enclave takes every variable the release sets (EGo drops the ones enclave.json does not list), except what
    # the chart renders for the official image only.
    listed = {entry["name"] for entry in enclave_config()["env"]}
    assert set(env) - NOT_FORWARDED_TO_THE_ENCLAVE <= listed


def test_no_seal_key_material_anywhere(stack_runs: dict[str, ProgramRun]) -> None:
    """The key is generated in the HSM and leaves it only wrapped to the enclave: nothing the program registers,
    renders or exports carries key material or a way for the host to supply a seal."""
    prod = stack_runs["prod"]
    key = prod.one(SEAL_KEY).inputs["properties"]
    assert set(key) == {"kty", "keySize", "attributes", "releasePolicy"}, "generated in Key Vault, never imported"
    assert key["kty"] == "RSA-HSM"
    everything = json.dumps([r.raw_inputs for r in prod.registrations]) + json.dumps(prod.raw_outputs)
    everything += json.dumps(rendered(prod))
    for marker in ("STATIC_SEAL", "SEAL_TYPE", "key_hsm", "seal.key", '"d":', '"p":', '"q":'):
        assert marker not in everything, marker
    assert set(prod.outputs["vaultSeal"]) == {"keyVaultUrl", "keyId", "clientId", "releasePolicy"}


def test_dev_stack_unseals_with_shamir(stack_runs: dict[str, ProgramRun]) -> None:
    dev = stack_runs["dev"]
    assert not dev.of_type(SEAL_KEY)
    assert not dev.of_type(KEY_VAULT)
    assert "vaultSeal" not in dev.outputs
    assert dev.outputs["vaultEnclave"]["sealKeyId"] is None
    manifest = rendered(dev)
    assert WORKLOAD_IDENTITY_LABEL[0] not in server_pod(manifest)["metadata"]["labels"]
    assert "CV_SEAL_KEY_ID" not in env_of(server_container(manifest))


def test_seal_access_needs_an_enclave_that_attests() -> None:
    settings = VaultSettings.model_validate({"image": IMAGE, "sgx": {"simulation": True}})

    def program() -> None:
        openbao_values(
            settings,
            HOST,
            sgx_node_selector=None,
            service_monitor=False,
            seal_access=SealAccess(
                key_id=pulumi.Output.from_input("k"),
                env=pulumi.Output.from_input({}),
                service_account_annotations=pulumi.Output.from_input({}),
                pod_labels={},
                ready=[],
            ),
        )

    with pytest.raises(ValueError, match="attested unseal needs an enclave that attests"):
        run_function(program)


# --- PostgreSQL storage: OpenBao in HA ----------------------------------------------------------------------------


def test_postgresql_runs_replicas_on_separate_nodes_with_a_budget_that_allows_drains() -> None:
    manifest = rendered(variant_run("postgresql-ha"))
    statefulset = one(manifest, "StatefulSet", "openbao")
    assert statefulset["spec"]["replicas"] == 2
    assert "volumeClaimTemplates" not in statefulset["spec"]  # the data lives in the database
    pod = server_pod(manifest)
    [term] = pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"]["matchLabels"], pod["metadata"]["labels"])
    budget = one(manifest, "PodDisruptionBudget", "openbao")
    assert budget["spec"]["maxUnavailable"] == 1  # one server down at a time; the chart's formula gives 0
    assert selects(budget["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"])
    # Still one enclave per node with its EPC and quote access, on the SGX pool.
    container = server_container(manifest)
    assert (
        container["resources"]["requests"]["sgx.intel.com/epc"] == container["resources"]["limits"]["sgx.intel.com/epc"]
    )
    assert pod["spec"]["nodeSelector"] == SGX_SELECTOR


def test_a_single_postgresql_server_gets_no_budget_that_would_block_drains() -> None:
    manifest = rendered(run_openbao(postgres_replicas=1))
    assert one(manifest, "StatefulSet", "openbao")["spec"]["replicas"] == 1
    assert objects(manifest, "PodDisruptionBudget") == []


def test_postgresql_url_reaches_the_enclave_only_through_a_secret() -> None:
    run = variant_run("postgresql-ha")
    secret = run.one(SECRET, "vault-storage")
    assert (secret.inputs["metadata"]["name"], secret.inputs["metadata"]["namespace"]) == ("openbao-storage", "vault")
    raw = secret.raw_inputs["stringData"]
    assert is_secret(raw) or is_secret(raw["connection-url"])
    assert secret.inputs["stringData"] == {"connection-url": DATABASE_URL}
    assert "pg-s3cret-pw" not in run.plaintext()
    manifest = rendered(run)
    assert "pg-s3cret-pw" not in json.dumps(manifest)
    env = {entry["name"]: entry for entry in server_container(manifest)["env"]}
    assert env["BAO_PG_CONNECTION_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "openbao-storage", "key": "connection-url"}
    }
    assert env["CV_STORAGE"]["value"] == "postgresql"
    # The release starts the servers only once the URL's Secret and the database exist.
    release = release_of(run)
    assert run.depends_on(release, secret)
    assert run.depends_on(release, run.one(CONFIG_MAP, "database-standin"))


def test_file_storage_tells_the_enclave_so_and_keeps_its_volume() -> None:
    manifest = rendered(variant_run("server"))
    assert env_of(server_container(manifest))["CV_STORAGE"] == "file"
    assert "BAO_PG_CONNECTION_URL" not in env_of(server_container(manifest))
    assert objects(manifest, "PodDisruptionBudget") == []
    assert variant_run("server").of_type(SECRET) == []


def test_route_reaches_the_active_server_only() -> None:
    """OpenBao labels the active pod `openbao-active: "true"` (service_registration "kubernetes" in the measured
    storage-postgresql.hcl): the route's Service selects it, and the listener's certificate carries its names."""
    run = variant_run("postgresql-ha")
    manifest = rendered(run)
    [rule] = run.one(PASSTHROUGH_ROUTE).inputs["spec"]["routes"]
    [backend] = rule["services"]
    service = one(manifest, "Service", backend["name"])
    assert service["metadata"]["name"] == "openbao-active"
    # The server pods plus the label OpenBao sets on the active one at run time.
    selector = dict(service["spec"]["selector"])
    assert selector.pop("openbao-active") == "true"
    assert selects(selector, server_pod(manifest)["metadata"]["labels"])
    [port] = [port for port in service["spec"]["ports"] if port["port"] == backend["port"]]
    assert port["targetPort"] == 8200
    names = env_of(server_container(manifest))["CV_LISTENER_NAMES"].split(",")
    main = one(manifest, "Service", "openbao")
    assert set(names) == {HOST} | in_cluster_names(service) | in_cluster_names(main)
    # Sealed, uninitialised and standby servers stay ready (and reachable through the main Service).
    probe = server_container(manifest)["readinessProbe"]["httpGet"]["path"]
    assert "standbyok=true" in probe
    storage_config = embedded_file("/etc/openbao/storage-postgresql.hcl")
    assert 'service_registration "kubernetes"' in storage_config


def test_service_monitor_scrapes_every_replica(reference: Path) -> None:
    """The chart's HA ServiceMonitor selects the active Service only; ours the headless one, every pod, under the
    same `job` the alerts select."""
    run = variant_run("postgresql-ha")
    manifest = rendered(run)
    monitor, service = service_monitor_target(manifest)
    validate_custom_resource(reference, monitor)
    assert service["metadata"]["name"] == "openbao-internal"
    assert "openbao-active" not in service["spec"]["selector"]
    assert selects(service["spec"]["selector"], server_pod(manifest)["metadata"]["labels"])
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    standalone, _ = service_monitor_target(rendered(variant_run("server")))
    assert monitor["spec"]["endpoints"] == standalone["spec"]["endpoints"]
    assert monitor["spec"]["selector"] == standalone["spec"]["selector"]


def test_servers_reach_each_other_on_the_cluster_port_only_in_ha() -> None:
    run = variant_run("postgresql-ha")
    rules = network_policy(run).inputs["spec"]["ingress"]
    [peers] = [rule for rule in rules if rule["ports"] == [{"port": 8201, "protocol": "TCP"}]]
    [peer] = peers["from"]
    assert set(peer) == {"podSelector"}
    manifest = rendered(run)
    assert selects(peer["podSelector"]["matchLabels"], server_pod(manifest)["metadata"]["labels"])
    assert len(network_policy(variant_run("server")).inputs["spec"]["ingress"]) == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mode": "dev"}, "PostgreSQL storage is for server mode"),
    ],
)
def test_postgresql_values_refuse_what_cannot_run(changes: dict[str, Any], message: str) -> None:
    settings = VaultSettings.model_validate({"image": IMAGE, **changes})
    with pytest.raises(ValueError, match=message):
        openbao_values(settings, HOST, sgx_node_selector=None, service_monitor=False, storage="postgresql")
    with pytest.raises(ValueError, match="only PostgreSQL storage runs more than one server"):
        openbao_values(
            VaultSettings.model_validate({"image": IMAGE}),
            HOST,
            sgx_node_selector=None,
            service_monitor=False,
            attestation_provider=MAA_URL,
            replicas=2,
        )


def test_stacks_run_the_servers_their_environment_needs(stack_runs: dict[str, ProgramRun]) -> None:
    for stack, replicas in (("dev", 1), ("prod", 2)):
        statefulset = one(rendered(stack_runs[stack]), "StatefulSet", "openbao")
        assert statefulset["spec"]["replicas"] == replicas, stack


ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
STORE_IDENTITY_GO = PROJECT_ROOT / "images" / "ego-openbao" / "bootstrap" / "storeidentity" / "kube.go"


def test_attested_unseal_lets_the_server_keep_its_store_identity_record(stack_runs: dict[str, ProgramRun]) -> None:
    """The enclave writes its store identity record (ciphertext) into one Secret with the pod's service account: the
    Role allows exactly that Secret to be read and replaced, and Secrets to be created (Kubernetes cannot limit
    `create` to a name), bound to the account the rendered server pods run as, before the pods start."""
    prod = stack_runs["prod"]
    go_name = re.search(r'SecretName = "([^"]+)"', STORE_IDENTITY_GO.read_text())
    assert go_name is not None
    secret_name = go_name.group(1)
    role = prod.one(ROLE)
    assert role.inputs["metadata"]["namespace"] == "vault"
    assert role.inputs["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret_name], "verbs": ["get", "update"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    binding = prod.one(ROLE_BINDING)
    assert binding.inputs["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role.inputs["metadata"]["name"],
    }
    pod_spec = one(rendered(prod), "StatefulSet", "openbao")["spec"]["template"]["spec"]
    assert binding.inputs["subjects"] == [
        {"kind": "ServiceAccount", "name": pod_spec["serviceAccountName"], "namespace": "vault"}
    ]
    release = release_of(prod)
    assert prod.depends_on(release, role)
    assert prod.depends_on(release, binding)
    # Shamir (dev): no record, no access to Secrets.
    assert not stack_runs["dev"].of_type(ROLE)
    assert not stack_runs["dev"].of_type(ROLE_BINDING)
