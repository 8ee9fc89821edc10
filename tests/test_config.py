"""Stack config validation: every rule, with the exact message an operator sees, and every problem in one run.

Secrets are covered in test_config_secrets.py, settings that only fail after a deploy in test_config_deploy.py,
the SGX VM sizes and their lifecycle in test_config_sgx.py; they share `load` and `problems` from here.
"""

from __future__ import annotations

import contextvars
import json
import re
from typing import Any

import pulumi
import pytest

from components.config import ConfigError, Settings, load_settings, load_stack_settings
from harness import PROJECT, encode_config, run_failing, stack_config, with_overrides

VALID: dict[str, Any] = {
    "confidential-vault:environment": "dev",
    "confidential-vault:domain": "dev.vault.example.org",
    "confidential-vault:owner": "platform-team",
    "confidential-vault:acme": {"email": "ops@example.org"},
    "confidential-vault:vault": {"image": {"repository": "registry.example.org/ego-openbao", "tag": "2.6.2-ego1.9.0"}},
}


# What a prod stack must add: the enclave identity clients verify (test_config_vault.py covers the rule).
PROD: dict[str, Any] = {
    "environment": "prod",
    "cluster.sgxPool.count": 2,
    "vault.enclave.signerId": "ab" * 32,
    "vault.enclave.productId": 1,
    "vault.enclave.securityVersion": 3,
    "vault.unseal.mode": "attested",
}


def load(overrides: dict[str, Any] | None = None, secret_keys: tuple[str, ...] = (), **kwargs: Any) -> Settings:
    """`VALID` with `overrides` (dotted paths; None deletes), encoded as the engine passes it, then validated."""
    config = with_overrides(VALID, overrides or {})
    return load_settings(encode_config(config), [f"{PROJECT}:{key}" for key in secret_keys], **kwargs)


def refusal(overrides: dict[str, Any], secret_keys: tuple[str, ...] = (), **kwargs: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(overrides, secret_keys, **kwargs)
    return caught.value


def problems(overrides: dict[str, Any], secret_keys: tuple[str, ...] = (), **kwargs: Any) -> list[str]:
    return [str(problem) for problem in refusal(overrides, secret_keys, **kwargs).problems]


def test_minimal_config_gets_safe_defaults() -> None:
    settings = load()
    assert settings.cluster.provider == "aks"
    assert settings.cluster.location == "westeurope"
    assert settings.cluster.sgx_pool.vm_size == "Standard_DC2s_v3"
    assert settings.vault.mode == "server"
    assert settings.acme_server == "staging"
    assert not settings.protected
    assert settings.model_fields_set == {"environment", "domain", "owner", "acme", "vault"}


def test_prod_defaults_to_production_ca_and_protection() -> None:
    settings = load(PROD)
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
        ({"environment": None}, "confidential-vault:environment: is required"),
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
            {"cluster.sgxPool.minCount": 3, "cluster.sgxPool.maxCount": 2},
            "confidential-vault:cluster.sgxPool.minCount: is greater than maxCount (got 3; allowed: 0 to 2)",
        ),
        (
            {"cluster.sgxPool.count": 5, "cluster.sgxPool.minCount": 1, "cluster.sgxPool.maxCount": 3},
            "confidential-vault:cluster.sgxPool.count: is outside the autoscaling bounds (got 5; allowed: 1 to 3)",
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
            "confidential-vault:cluster.authorizedIpRanges[0]: has host bits set (got '10.0.0.1/8'; allowed: the "
            "network address of the range, e.g. 203.0.113.0/24)",
        ),
        (
            {"cluster.authorizedIpRanges": ["office"]},
            "confidential-vault:cluster.authorizedIpRanges[0]: is not a CIDR range (got 'office'; allowed: e.g. "
            "203.0.113.0/24)",
        ),
        (
            {"cluster.tags": {"owner": "someone"}},
            'confidential-vault:cluster.tags: sets a tag the program sets (got {"owner": "someone"}; '
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
            "confidential-vault:vault.image: is required: the signed EGo-OpenBao image (see images/ego-openbao) "
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
            {**PROD, "vault.mode": "dev"},
            "confidential-vault:vault.mode: dev mode is refused on prod stacks (got 'dev'; allowed: server)",
        ),
        (
            {**PROD, "vault.sgx.simulation": True},
            "confidential-vault:vault.sgx.simulation: simulation is refused on prod stacks (no SGX protection) "
            "(got true; allowed: false)",
        ),
        (
            {"vault.epc": "64MB"},
            "confidential-vault:vault.epc: is not a Kubernetes quantity (got '64MB'; allowed: e.g. 64Mi, 10Gi)",
        ),
        (
            {"cluster.provider": "gke"},
            "confidential-vault:cluster.provider: is not a known value (got 'gke'; allowed: aks or existing)",
        ),
        (
            {"cluster.resourceGroupName": "rg with spaces"},
            "confidential-vault:cluster.resourceGroupName: is not a valid resource group name (got 'rg with spaces'; "
            "allowed: 1-90 of letters, digits, -._())",
        ),
        (
            {"cluster.tags": {"a/b": "c"}},
            'confidential-vault:cluster.tags: has a tag name Azure does not accept (got {"a/b": "c"}; '
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
def test_rule_reports_key_value_and_allowed(overrides: dict[str, Any], expected: str) -> None:
    assert problems(overrides) == [expected]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"cluster.systemPool.count": 0},
            "confidential-vault:cluster.systemPool.count: is out of range (got 0; allowed: 1 to 100)",
        ),
        (
            {"cluster.systemPool.count": -1},
            "confidential-vault:cluster.systemPool.count: is out of range (got -1; allowed: 1 to 100)",
        ),
        (
            {"cluster.systemPool.count": 101},
            "confidential-vault:cluster.systemPool.count: is out of range (got 101; allowed: 1 to 100)",
        ),
        (
            {"cluster.sgxPool.count": -1},
            "confidential-vault:cluster.sgxPool.count: is out of range (got -1; allowed: 0 to 1000)",
        ),
        (
            {"cluster.sgxPool.maxCount": 0, "cluster.sgxPool.minCount": 0},
            "confidential-vault:cluster.sgxPool.maxCount: is out of range (got 0; allowed: 1 to 1000)",
        ),
        (
            {"owner": ""},
            "confidential-vault:owner: is empty (got ''; allowed: 1 to 256 characters)",
        ),
        (
            {"owner": "o" * 257},
            f"confidential-vault:owner: has the wrong length (got '{'o' * 257}'; allowed: 1 to 256 characters)",
        ),
        (
            {"monitoring.grafanaAdminUser": ""},
            "confidential-vault:monitoring.grafanaAdminUser: is empty (got ''; allowed: at least 1 character)",
        ),
        (
            {"argocd.applications": [{"name": "web", "repoURL": "https://h/o/r.git", "namespace": "web", "path": ""}]},
            "confidential-vault:argocd.applications[0].path: is empty (got ''; allowed: at least 1 character)",
        ),
    ],
)
def test_range_and_length_messages_read_like_the_others(overrides: dict[str, Any], expected: str) -> None:
    assert problems(overrides) == [expected]


def test_every_problem_is_reported_at_once_grouped_by_key() -> None:
    error = refusal(
        {
            "cluster.sgxPool.vmSize": "Standard_D4s_v5",
            "cluster.systemPool.vmSize": "Standard_DC2s_v3",
            "owner": None,
            **PROD,
            "vault.mode": "dev",
        }
    )
    # Whether `owner` is required depends on cluster.provider, which is valid although other cluster keys are not.
    assert [problem.path for problem in error.problems] == [
        "owner",
        "cluster.systemPool.vmSize",
        "cluster.sgxPool.vmSize",
        "vault.mode",
    ]
    assert [problem.path for problem in refusal({"owner": None, **PROD, "vault.mode": "dev"}).problems] == [
        "owner",
        "vault.mode",
    ]


def test_a_rule_runs_when_the_fields_it_reads_are_valid_though_others_of_its_section_are_not() -> None:
    """Pool sizes swapped and the autoscaling bounds inverted: the bounds rule reads neither size, so it reports."""
    found = problems(
        {
            "cluster.systemPool.vmSize": "Standard_DC2s_v3",
            "cluster.sgxPool.vmSize": "Standard_D4s_v5",
            "cluster.sgxPool.minCount": 3,
            "cluster.sgxPool.maxCount": 2,
        }
    )
    assert [re.sub(r" \(got .*", "", line) for line in found] == [
        "confidential-vault:cluster.systemPool.vmSize: must not be an SGX size: the System pool runs add-ons on "
        "general-purpose VMs",
        "confidential-vault:cluster.sgxPool.vmSize: is not an SGX VM size (DCsv3 or DCdsv3)",
        "confidential-vault:cluster.sgxPool.minCount: is greater than maxCount",
    ]
    assert found[2] == "confidential-vault:cluster.sgxPool.minCount: is greater than maxCount (got 3; allowed: 0 to 2)"


def test_an_inapplicable_key_that_is_also_invalid_is_listed_once_and_hides_no_other_rule() -> None:
    """`tags` is broken and does nothing with provider existing: its own problem is enough, and the kubeconfig
    rule of the same section still runs."""
    found = problems(
        {
            "cluster": {"provider": "existing", "tags": {"owner": "x"}},
            "vault.attestation.providerUrl": "https://sharedweu.weu.attest.azure.net",
        }
    )
    assert [re.sub(r" \(.*", "", line) for line in found] == [
        "confidential-vault:cluster.tags: sets a tag the program sets",
        "confidential-vault:cluster.kubeconfig: provider existing needs exactly one of kubeconfig",
    ]


def test_a_broken_section_hides_no_rule_of_the_sections_that_are_fine() -> None:
    """A typo in edge, a bad type in cluster: the rules of acme, dns, vault and the stack still report."""
    error = refusal(
        {
            **PROD,
            "edge.dashbordUser": "ops",
            "cluster.systemPool.count": "three",
            "acme.email": None,
            "dns": {"zoneName": "other.org", "resourceGroupName": "dns"},
            "vault.mode": "dev",
            "vault.sgx.simulation": True,
            "expiresAt": "2026-12-01T00:00:00Z",
        }
    )
    found = [str(problem) for problem in error.problems]
    assert found == [
        "confidential-vault:expiresAt: only applies to ephemeral stacks (got 2026-12-01T00:00:00+00:00; "
        "allowed: unset)",
        "confidential-vault:cluster.systemPool.count: is not a whole number (got 'three'; allowed: e.g. 3)",
        "confidential-vault:acme.email: is required (Let's Encrypt account contact) (allowed: name@domain)",
        "confidential-vault:dns.zoneName: does not contain the domain dev.vault.example.org (got 'other.org'; "
        "allowed: dev.vault.example.org or a parent zone of it)",
        "confidential-vault:edge.dashbordUser: unknown key (allowed: dashboardPassword, dashboardUser)",
        "confidential-vault:vault.mode: dev mode is refused on prod stacks (got 'dev'; allowed: server)",
        "confidential-vault:vault.sgx.simulation: simulation is refused on prod stacks (no SGX protection) "
        "(got true; allowed: false)",
    ]
    header = str(error).splitlines()[0]
    assert header == f"invalid stack configuration ({len(found)} problem(s)):"
    assert str(error).splitlines()[1:] == [f"  - {line}" for line in found]


def test_a_rule_that_reads_a_broken_key_waits_for_it() -> None:
    """The EPC check reads the SGX pool's VM size: with that size broken it cannot judge, and says nothing."""
    found = problems({"cluster.sgxPool.vmSize": "Standard_D4s_v5", "vault.epc": "64Gi"})
    assert [re.sub(r" \(got .*", "", line) for line in found] == [
        "confidential-vault:cluster.sgxPool.vmSize: is not an SGX VM size (DCsv3 or DCdsv3)"
    ]
    # A broken key of the same section that the check does not read hides nothing.
    assert problems({"cluster.systemPool.count": 0, "vault.epc": "64Gi"}) == [
        "confidential-vault:cluster.systemPool.count: is out of range (got 0; allowed: 1 to 100)",
        "confidential-vault:vault.epc: exceeds the EPC of one Standard_DC2s_v3 node (got '64Gi'; "
        "allowed: at most 8192Mi)",
    ]
    # With the cluster fixed, the same EPC is refused.
    assert problems({"vault.epc": "64Gi"}) == [
        "confidential-vault:vault.epc: exceeds the EPC of one Standard_DC2s_v3 node (got '64Gi'; "
        "allowed: at most 8192Mi)"
    ]


def test_owner_rule_waits_for_a_valid_cluster_and_owner() -> None:
    assert problems({"owner": None, "cluster.provider": "gcp"}) == [
        "confidential-vault:cluster.provider: is not a known value (got 'gcp'; allowed: aks or existing)"
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [("cluster.sgxPool.vmSize", "Standard_DC4s_v3"), ("vault.clientNamespaces[0]", "apps"), ("edge.x", "y")],
)
def test_a_dotted_key_set_without_path_says_how_to_set_it(key: str, value: str) -> None:
    raw = {**encode_config(VALID), f"{PROJECT}:{key}": value}
    with pytest.raises(ConfigError) as caught:
        load_settings(raw)
    assert [str(problem) for problem in caught.value.problems] == [
        f"confidential-vault:{key}: is a top-level key with dots in its name, set without --path; nested keys need "
        f"--path (got '{value}'; allowed: `pulumi config rm confidential-vault:{key}`, then "
        f"`pulumi config set --path confidential-vault:{key} <value>`)"
    ]


def test_a_dotted_key_under_an_unknown_section_is_just_unknown() -> None:
    raw = {**encode_config(VALID), f"{PROJECT}:clustr.sgxPool": "x"}
    with pytest.raises(ConfigError) as caught:
        load_settings(raw)
    assert [str(problem) for problem in caught.value.problems] == [
        "confidential-vault:clustr.sgxPool: unknown key (allowed: acme, argocd, cluster, dns, domain, edge, "
        "environment, expiresAt, monitoring, owner, vault)"
    ]


@pytest.mark.parametrize("name", ["a", "cv-dev", "a" * 90])
def test_resource_group_names_azure_accepts(name: str) -> None:
    assert load({"cluster.resourceGroupName": name}).cluster.resource_group_name == name


@pytest.mark.parametrize("name", ["a" * 91, "rg."])
def test_resource_group_names_azure_refuses(name: str) -> None:
    assert problems({"cluster.resourceGroupName": name}) == [
        f"confidential-vault:cluster.resourceGroupName: is not a valid resource group name (got '{name}'; "
        "allowed: 1-90 of letters, digits, -._())"
    ]


def test_existing_cluster_needs_exactly_one_kubeconfig_source() -> None:
    expected = (
        "confidential-vault:cluster.kubeconfig: provider existing needs exactly one of kubeconfig (secret) or "
        "kubeconfigPath (allowed: kubeconfig or kubeconfigPath)"
    )
    assert expected in problems({"cluster": {"provider": "existing"}})
    both = {"cluster": {"provider": "existing", "kubeconfig": "k", "kubeconfigPath": "/k"}}
    assert expected in problems(both, secret_keys=("cluster",))


def test_existing_cluster_rejects_aks_only_settings() -> None:
    found = problems(
        {
            "cluster": {"provider": "existing", "kubeconfigPath": "/k", "sgxPool": {"count": 2}},
            "vault.attestation.providerUrl": "https://sharedweu.weu.attest.azure.net",
        }
    )
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
    broken = with_overrides(
        dev_config, {"cluster.sgxPool.vmSize": "Standard_B2s", "owner": None, "edge.dashbordUser": "x"}
    )
    error, run = run_failing(broken)
    assert isinstance(error, pulumi.RunError)
    lines = str(error).splitlines()
    assert lines[0] == "invalid stack configuration (3 problem(s)):"
    assert [re.sub(r" \(.*", "", line) for line in lines[1:]] == [
        "  - confidential-vault:owner: is required for AKS stacks",
        "  - confidential-vault:cluster.sgxPool.vmSize: is not an SGX VM size",
        "  - confidential-vault:edge.dashbordUser: unknown key",
    ]
    # RunError is what the Pulumi CLI prints without a traceback; no chained exception behind it.
    assert error.__cause__ is None
    assert error.__suppress_context__
    assert run.registrations == []


def test_shipped_stack_files_are_valid() -> None:
    for stack in ("dev", "prod"):
        config, secret_keys = stack_config(stack)
        assert load_settings(encode_config(config), secret_keys).environment == stack


def test_settings_from_the_cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Pulumi CLI hands config to the program in PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS."""
    config = with_overrides(VALID, {"edge.dashboardPassword": "from-cli-secret"})
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(encode_config(config)))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps([f"{PROJECT}:edge"]))
    settings = contextvars.Context().run(load_stack_settings)
    assert settings.domain == "dev.vault.example.org"
    assert settings.edge.dashboard_password is not None

    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")
    with pytest.raises(pulumi.RunError, match=r"edge\.dashboardPassword: is a secret but stored in plaintext"):
        contextvars.Context().run(load_stack_settings)
