"""Stack config validation: every rule, with the exact message an operator sees."""

from __future__ import annotations

import contextvars
import json
from typing import Any

import pulumi
import pytest

from components.config import SGX_EPC_MIB, ConfigError, Settings, load_settings, load_stack_settings
from harness import PROJECT, run_failing, stack_config, with_overrides

VALID: dict[str, Any] = {
    "confidential-vault:environment": "dev",
    "confidential-vault:domain": "dev.vault.example.org",
    "confidential-vault:owner": "platform-team",
    "confidential-vault:acme": {"email": "ops@example.org"},
    "confidential-vault:vault": {"image": {"repository": "registry.example.org/ego-vault", "tag": "1.0"}},
}


def load(overrides: dict[str, Any] | None = None, secret_keys: tuple[str, ...] = ()) -> Settings:
    config = with_overrides(VALID, overrides or {})
    raw = {key: json.dumps(value) if isinstance(value, (dict, list)) else str(value) for key, value in config.items()}
    return load_settings(raw, [f"{PROJECT}:{key}" for key in secret_keys])


def problems(overrides: dict[str, Any], secret_keys: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(overrides, secret_keys)
    return [str(problem) for problem in caught.value.problems]


def test_minimal_config_gets_safe_defaults() -> None:
    settings = load()
    assert settings.cluster.provider == "aks"
    assert settings.cluster.sgx_pool.vm_size == "Standard_DC2s_v3"
    assert settings.vault.mode == "server"
    assert settings.acme_server == "staging"
    assert not settings.protected


def test_prod_defaults_to_production_ca_and_protection() -> None:
    settings = load({"environment": "prod"})
    assert settings.acme_server == "production"
    assert settings.protected


def test_other_namespaces_are_ignored() -> None:
    raw = {f"{PROJECT}:environment": "dev", f"{PROJECT}:domain": "a.example.org", "azure-native:location": "x"}
    with pytest.raises(ConfigError) as caught:
        load_settings(raw)
    assert all("azure-native" not in str(problem) for problem in caught.value.problems)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"environment": "staging"},
            "confidential-vault:environment: is not a known value (got 'staging'; allowed: dev, prod or ephemeral)",
        ),
        (
            {"domain": "Vault_Example"},
            "confidential-vault:domain: is not a valid DNS name (got 'Vault_Example'; allowed: lower-case labels of "
            "a-z, 0-9 and '-', at least two labels, at most 253 characters)",
        ),
        (
            {"domain": "localhost"},
            "confidential-vault:domain: is not a valid DNS name (got 'localhost'; allowed: lower-case labels of "
            "a-z, 0-9 and '-', at least two labels, at most 253 characters)",
        ),
        ({"domain": None}, "confidential-vault:domain: is required"),
        (
            {"cluster.sgxPool.vmSize": "Standard_D4s_v5"},
            "confidential-vault:cluster.sgxPool.vmSize: is not an SGX VM size (DCsv2, DCsv3 or DCdsv3, Gen2) "
            "(got 'Standard_D4s_v5'; allowed: Standard_DC1s_v2, Standard_DC2s_v2, Standard_DC4s_v2, Standard_DC8_v2, "
            "Standard_DC1s_v3, Standard_DC2s_v3, Standard_DC4s_v3, Standard_DC8s_v3, Standard_DC16s_v3, "
            "Standard_DC24s_v3, Standard_DC32s_v3, Standard_DC48s_v3, Standard_DC1ds_v3, Standard_DC2ds_v3, "
            "Standard_DC4ds_v3, Standard_DC8ds_v3, Standard_DC16ds_v3, Standard_DC24ds_v3, Standard_DC32ds_v3, "
            "Standard_DC48ds_v3)",
        ),
        (
            {"cluster.systemPool.vmSize": "Standard_DC4s_v3"},
            "confidential-vault:cluster.systemPool.vmSize: must not be an SGX size: the System pool runs add-ons on "
            "general-purpose VMs (got 'Standard_DC4s_v3'; allowed: a general-purpose size, e.g. Standard_D4s_v5)",
        ),
        (
            {"cluster.systemPool.vmSize": "D4s"},
            "confidential-vault:cluster.systemPool.vmSize: is not an Azure VM size name (got 'D4s'; allowed: "
            "e.g. Standard_D4s_v5)",
        ),
        (
            {"cluster.systemPool.count": 0},
            "confidential-vault:cluster.systemPool.count: input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"cluster.sgxPool.minCount": 3, "cluster.sgxPool.maxCount": 2},
            "confidential-vault:cluster.sgxPool.minCount: is greater than maxCount (2) (got 3; allowed: 0..2)",
        ),
        (
            {"cluster.sgxPool.count": 5, "cluster.sgxPool.minCount": 1, "cluster.sgxPool.maxCount": 3},
            "confidential-vault:cluster.sgxPool.count: is outside the autoscaling bounds (got 5; allowed: 1..3)",
        ),
        (
            {"cluster.sgxPool.minCount": 1},
            "confidential-vault:cluster.sgxPool.maxCount: is required when the other autoscaling bound is set "
            "(allowed: both minCount and maxCount, or neither)",
        ),
        (
            {"cluster.kubernetesVersion": "v1.33"},
            "confidential-vault:cluster.kubernetesVersion: is not a Kubernetes minor version (patches come from the "
            "auto-upgrade channel) (got 'v1.33'; allowed: MAJOR.MINOR, e.g. 1.33)",
        ),
        (
            {"cluster.kubernetesVersion": "1.33.2"},
            "confidential-vault:cluster.kubernetesVersion: is not a Kubernetes minor version (patches come from the "
            "auto-upgrade channel) (got '1.33.2'; allowed: MAJOR.MINOR, e.g. 1.33)",
        ),
        (
            {"cluster.acrPullRegistryIds": ["cvregistry.azurecr.io"]},
            "confidential-vault:cluster.acrPullRegistryIds[0]: is not an Azure Container Registry resource ID (got "
            "'cvregistry.azurecr.io'; allowed: /subscriptions/<id>/resourceGroups/<group>/providers/"
            "Microsoft.ContainerRegistry/registries/<name>)",
        ),
        (
            {"cluster.authorizedIpRanges": ["10.0.0.1/8"]},
            "confidential-vault:cluster.authorizedIpRanges[0]: is not a valid CIDR range (10.0.0.1/8 has host bits "
            "set) (got '10.0.0.1/8'; allowed: e.g. 203.0.113.0/24)",
        ),
        (
            {"cluster.tags": {"owner": "someone"}},
            'confidential-vault:cluster.tags: tag \'owner\' is set by the program (got {"owner": "someone"}; '
            "allowed: any name except environment, stack, owner, expires-at)",
        ),
        (
            {"cluster.sgxPol": {}},
            "confidential-vault:cluster.sgxPol: unknown key (allowed: acrPullRegistryIds, authorizedIpRanges, "
            "kubeconfig, kubeconfigContext, kubeconfigPath, kubernetesVersion, location, provider, resourceGroupName, "
            "sgxPool, sgxQuoteHelper, systemPool, tags)",
        ),
        (
            {"clusterr": {}},
            "confidential-vault:clusterr: unknown key (allowed: acme, argocd, cluster, dns, domain, edge, environment, "
            "expiresAt, monitoring, owner, vault)",
        ),
        (
            {"owner": None},
            "confidential-vault:owner: is required for AKS stacks (Azure `owner` tag) (allowed: a team "
            "or person, e.g. platform-team)",
        ),
        (
            {"acme.email": None},
            "confidential-vault:acme.email: is required (Let's Encrypt account contact) (allowed: name@domain)",
        ),
        (
            {"acme.email": "ops"},
            "confidential-vault:acme.email: is not an e-mail address (got 'ops'; allowed: name@domain)",
        ),
        (
            {"vault": {}},
            "confidential-vault:vault.image: is required: the signed EGo-Vault image (see images/ego-vault) "
            "(allowed: {repository, tag or digest})",
        ),
        (
            {"vault.image.tag": None},
            "confidential-vault:vault.image: needs a tag or a digest (allowed: tag: <tag> or digest: sha256:<hex>)",
        ),
        (
            {"expiresAt": "2026-12-01T00:00:00Z"},
            "confidential-vault:expiresAt: only applies to ephemeral stacks (got 2026-12-01T00:00:00+00:00; "
            "allowed: unset)",
        ),
        (
            {"environment": "ephemeral"},
            "confidential-vault:expiresAt: is required on ephemeral stacks (allowed: UTC ISO 8601 time, e.g. "
            "2026-12-01T12:00:00Z)",
        ),
        (
            {"environment": "ephemeral", "expiresAt": "2026-12-01T00:00:00"},
            "confidential-vault:expiresAt: needs a time zone (got 2026-12-01T00:00:00; allowed: UTC ISO 8601 time, "
            "e.g. 2026-12-01T12:00:00Z)",
        ),
        (
            {"dns": {"zoneName": "other.org", "resourceGroupName": "dns"}},
            "confidential-vault:dns.zoneName: does not contain the domain dev.vault.example.org (got 'other.org'; "
            "allowed: dev.vault.example.org or a parent zone of it)",
        ),
        (
            {"environment": "prod", "vault.mode": "dev"},
            "confidential-vault:vault.mode: dev mode is refused on prod stacks (got 'dev'; allowed: server)",
        ),
        (
            {"environment": "prod", "vault.sgx.simulation": True},
            "confidential-vault:vault.sgx.simulation: simulation is refused on prod stacks (no SGX protection) "
            "(got true; allowed: false)",
        ),
        (
            {"cluster.sgxPool.vmSize": "Standard_DC2s_v2", "vault.epc": "64Mi"},
            "confidential-vault:vault.epc: exceeds the EPC of one Standard_DC2s_v2 node (got '64Mi'; allowed: "
            "at most 56Mi)",
        ),
        (
            {"vault.epc": "64MB"},
            "confidential-vault:vault.epc: is not a Kubernetes quantity (got '64MB'; allowed: e.g. 64Mi, 10Gi)",
        ),
    ],
)
def test_rule_reports_key_value_and_allowed(overrides: dict[str, Any], expected: str) -> None:
    assert expected in problems(overrides)


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        {"cluster.sgxPool.vmSize": "Standard_D4s_v5", "cluster.systemPool.vmSize": "Standard_DC2s_v3", "owner": None}
    )
    assert [line.split(":")[1] for line in found] == ["cluster.sgxPool.vmSize", "cluster.systemPool.vmSize", "owner"]


# EPC per VM size from Azure's DCsv2 and DCsv3/DCdsv3 documentation (MiB).
@pytest.mark.parametrize(
    ("vm_size", "epc_mib"),
    [
        ("Standard_DC1s_v2", 28),
        ("Standard_DC2s_v2", 56),
        ("Standard_DC4s_v2", 112),
        ("Standard_DC8_v2", 168),
        ("Standard_DC1s_v3", 4096),
        ("Standard_DC4s_v3", 16384),
        ("Standard_DC24s_v3", 131072),
        ("Standard_DC32ds_v3", 196608),
        ("Standard_DC48ds_v3", 262144),
    ],
)
def test_epc_capacity_per_vm_size(vm_size: str, epc_mib: int) -> None:
    assert SGX_EPC_MIB[vm_size] == epc_mib
    assert load({"cluster.sgxPool.vmSize": vm_size, "vault.epc": "28Mi"}).cluster.sgx_pool.epc_mib == epc_mib


def test_sgx_size_table_has_exactly_the_documented_sizes() -> None:
    assert len(SGX_EPC_MIB) == 4 + 8 + 8


@pytest.mark.parametrize("name", ["a", "cv-dev", "a" * 90])
def test_resource_group_names_azure_accepts(name: str) -> None:
    assert load({"cluster.resourceGroupName": name}).cluster.resource_group_name == name


@pytest.mark.parametrize("name", ["a" * 91, "rg."])
def test_resource_group_names_azure_refuses(name: str) -> None:
    found = problems({"cluster.resourceGroupName": name})
    assert found[0].startswith("confidential-vault:cluster.resourceGroupName: is not a valid resource group name")


def test_epc_within_capacity_is_accepted() -> None:
    settings = load({"cluster.sgxPool.vmSize": "Standard_DC2s_v2", "vault.epc": "56Mi"})
    assert settings.cluster.sgx_pool.epc_mib == 56


def test_simulation_skips_the_epc_capacity_check() -> None:
    settings = load({"cluster.sgxPool.vmSize": "Standard_DC1s_v2", "vault.epc": "1Gi", "vault.sgx.simulation": True})
    assert settings.vault.sgx.simulation


def test_plaintext_secret_is_refused_and_never_echoed() -> None:
    found = problems({"edge.dashboardPassword": "hunter2-plain"})
    assert found == [
        "confidential-vault:edge.dashboardPassword: is a secret but stored in plaintext; set it with "
        "`pulumi config set --secret --path confidential-vault:edge.dashboardPassword` (got [hidden])"
    ]
    assert "hunter2-plain" not in " ".join(found)


def test_secret_set_with_secret_flag_is_accepted() -> None:
    settings = load({"edge.dashboardPassword": "hunter2-secret"}, secret_keys=("edge",))
    assert settings.edge.dashboard_password is not None
    assert settings.edge.dashboard_password.get_secret_value() == "hunter2-secret"
    assert "hunter2-secret" not in repr(settings)


def test_invalid_secret_value_is_masked() -> None:
    found = problems({"argocd.adminPassword": 12345678}, secret_keys=("argocd",))
    assert found == ["confidential-vault:argocd.adminPassword: is not a string (got [secret]; allowed: a quoted value)"]


def test_unknown_key_in_secret_section_does_not_echo_value() -> None:
    found = problems({"edge.dashbordPassword": "typo-secret-value"}, secret_keys=("edge",))
    assert len(found) == 1
    assert found[0].startswith("confidential-vault:edge.dashbordPassword: unknown key (allowed: ")
    assert "typo-secret-value" not in found[0]


def test_existing_cluster_needs_exactly_one_kubeconfig_source() -> None:
    expected = (
        "confidential-vault:cluster.kubeconfig: provider existing needs exactly one of kubeconfig (secret) or "
        "kubeconfigPath (allowed: kubeconfig or kubeconfigPath)"
    )
    assert expected in problems({"cluster": {"provider": "existing"}})
    both = {"cluster": {"provider": "existing", "kubeconfig": "k", "kubeconfigPath": "/k"}}
    assert expected in problems(both, secret_keys=("cluster",))


def test_existing_cluster_rejects_aks_only_settings() -> None:
    found = problems({"cluster": {"provider": "existing", "kubeconfigPath": "/k", "sgxPool": {"count": 2}}})
    assert found == [
        "confidential-vault:cluster.sgxPool: only applies to provider aks (allowed: unset with provider existing)"
    ]


def test_aks_cluster_rejects_kubeconfig() -> None:
    found = problems({"cluster.kubeconfigPath": "/home/me/.kube/config"})
    assert found == [
        "confidential-vault:cluster.kubeconfigPath: only applies to provider existing (got '/home/me/.kube/config'; "
        "allowed: unset with provider aks)"
    ]


def test_program_stops_with_run_error_before_registering_anything(dev_config: dict[str, Any]) -> None:
    broken = with_overrides(dev_config, {"cluster.sgxPool.vmSize": "Standard_B2s", "owner": None})
    error, run = run_failing(broken)
    assert isinstance(error, pulumi.RunError)
    message = str(error)
    assert "confidential-vault:cluster.sgxPool.vmSize: is not an SGX VM size" in message
    assert "confidential-vault:owner: is required for AKS stacks" in message
    # RunError is what the Pulumi CLI prints without a traceback; no chained exception behind it.
    assert error.__cause__ is None
    assert error.__suppress_context__
    assert run.registrations == []


def test_shape_errors_are_reported_before_cross_key_rules(dev_config: dict[str, Any]) -> None:
    broken = with_overrides(dev_config, {"cluster.sgxPool.vmSize": "Standard_B2s", "domain": "Not A Domain"})
    error, run = run_failing(broken)
    assert "confidential-vault:domain: is not a valid DNS name (got 'Not A Domain'" in str(error)
    assert run.registrations == []


def test_shipped_stack_files_are_valid() -> None:
    for stack in ("dev", "prod"):
        config, secret_keys = stack_config(stack)
        raw = {
            key: json.dumps(value) if isinstance(value, (dict, list)) else str(value) for key, value in config.items()
        }
        assert load_settings(raw, secret_keys).environment == stack


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"cluster.provider": "gke"},
            "confidential-vault:cluster.provider: is not a known value (got 'gke'; allowed: aks or existing)",
        ),
        (
            {"cluster.systemPool.count": 101},
            "confidential-vault:cluster.systemPool.count: input should be less than or equal to 100 (got 101)",
        ),
        (
            {"cluster.resourceGroupName": "rg with spaces"},
            "confidential-vault:cluster.resourceGroupName: is not a valid resource group name (got 'rg with spaces'; "
            "allowed: 1-90 of letters, digits, -._())",
        ),
        (
            {"cluster.tags": {"a/b": "c"}},
            'confidential-vault:cluster.tags: tag name \'a/b\' is not accepted by Azure (got {"a/b": "c"}; '
            "allowed: 1-512 characters without <>%&\\?/)",
        ),
        (
            {"environment": "ephemeral", "expiresAt": "tomorrow"},
            "confidential-vault:expiresAt: is not a time (got 'tomorrow'; allowed: UTC ISO 8601, e.g. "
            "2026-12-01T12:00:00Z)",
        ),
        (
            {"monitoring.prometheusRetention": "two weeks"},
            "confidential-vault:monitoring.prometheusRetention: is not a duration (got 'two weeks'; allowed: e.g. "
            "15d, 12h, 4w)",
        ),
        (
            {"vault.image.digest": "sha256:abc"},
            "confidential-vault:vault.image.digest: is not an image digest (got 'sha256:abc'; allowed: "
            "sha256:<64 hex digits>)",
        ),
        (
            {"cluster.systemPool.count": "two"},
            "confidential-vault:cluster.systemPool.count: is not a whole number (got 'two'; allowed: e.g. 3)",
        ),
        (
            {"cluster.sgxPool": "big"},
            "confidential-vault:cluster.sgxPool: is not an object (got 'big'; allowed: a YAML mapping of its keys)",
        ),
        (
            {"cluster.sgxQuoteHelper": "maybe"},
            "confidential-vault:cluster.sgxQuoteHelper: is not a boolean (got 'maybe'; allowed: true or false)",
        ),
    ],
)
def test_field_rules(overrides: dict[str, Any], expected: str) -> None:
    assert expected in problems(overrides)


def test_settings_from_the_cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Pulumi CLI hands config to the program in PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS."""
    config = with_overrides(VALID, {"edge.dashboardPassword": "from-cli-secret"})
    encoded = {key: json.dumps(value) if isinstance(value, dict) else value for key, value in config.items()}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(encoded))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps([f"{PROJECT}:edge"]))
    settings = contextvars.Context().run(load_stack_settings)
    assert settings.domain == "dev.vault.example.org"
    assert settings.edge.dashboard_password is not None

    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")
    with pytest.raises(pulumi.RunError, match=r"edge\.dashboardPassword: is a secret but stored in plaintext"):
        contextvars.Context().run(load_stack_settings)


def test_inapplicable_secret_is_reported_without_its_value() -> None:
    found = problems({"cluster.kubeconfig": "kubeconfig-secret-text"}, secret_keys=("cluster",))
    assert found == [
        "confidential-vault:cluster.kubeconfig: only applies to provider existing (got [hidden]; "
        "allowed: unset with provider aks)"
    ]
    found = problems(
        {"monitoring": {"enabled": False, "grafanaAdminPassword": "grafana-secret-text"}}, secret_keys=("monitoring",)
    )
    assert found == [
        "confidential-vault:monitoring.grafanaAdminPassword: only applies when monitoring is enabled (got [hidden]; "
        "allowed: unset with monitoring.enabled false)"
    ]
