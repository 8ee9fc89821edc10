"""Settings that pydantic's types would accept but that only fail once the cluster exists: refused before deploying."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pulumi
import pytest
from test_config import load, problems

from components.config import AZURE_REGIONS
from harness import run_failing, with_overrides

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
REPOSITORY_ALLOWED = "the repository alone, e.g. myregistry.azurecr.io/ego-openbao"


# --- image -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repository", "expected"),
    [
        (
            "cvregistry.azurecr.io/ego-openbao:1.2",
            "contains a tag: set it in vault.image.tag (got 'cvregistry.azurecr.io/ego-openbao:1.2'; "
            f"allowed: {REPOSITORY_ALLOWED})",
        ),
        (
            "cvregistry.azurecr.io:5000/ego-openbao:1.2",
            "contains a tag: set it in vault.image.tag (got 'cvregistry.azurecr.io:5000/ego-openbao:1.2'; "
            f"allowed: {REPOSITORY_ALLOWED})",
        ),
        (
            "cvregistry.azurecr.io/ego-openbao@sha256:" + "a" * 64,
            "contains a digest: set it in vault.image.digest (got 'cvregistry.azurecr.io/ego-openbao@sha256:"
            + "a" * 64
            + f"'; allowed: {REPOSITORY_ALLOWED})",
        ),
        (
            "cvregistry.azurecr.io/EGo-OpenBao",
            "is not an image repository (got 'cvregistry.azurecr.io/EGo-OpenBao'; allowed: [registry/]lower-case "
            "path, e.g. myregistry.azurecr.io/ego-openbao)",
        ),
        ("", "is empty (got ''; allowed: at least 1 character)"),
    ],
)
def test_image_repository_is_the_repository_alone(repository: str, expected: str) -> None:
    assert problems({"vault.image.repository": repository}) == [
        f"confidential-vault:vault.image.repository: {expected}"
    ]


@pytest.mark.parametrize(
    "repository", ["cvregistry.azurecr.io/ego-openbao", "localhost:5000/team/ego-openbao", "ego-openbao"]
)
def test_image_repositories_docker_accepts(repository: str) -> None:
    assert load({"vault.image.repository": repository}).vault.image is not None


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("", "is empty: the image would be pulled as `latest` (got ''; allowed: a tag, e.g. 2.6.2-ego1.9.0)"),
        (
            "2.6.2:ego",
            "is not an image tag (got '2.6.2:ego'; allowed: up to 128 of letters, digits, '_', '.', '-', not starting "
            "with . or -)",
        ),
        (
            "-rc1",
            "is not an image tag (got '-rc1'; allowed: up to 128 of letters, digits, '_', '.', '-', not starting "
            "with . or -)",
        ),
    ],
)
def test_image_tag_must_name_a_tag(tag: str, expected: str) -> None:
    assert problems({"vault.image.tag": tag}) == [f"confidential-vault:vault.image.tag: {expected}"]


# --- empty strings and zero quantities ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"cluster": {"provider": "existing", "kubeconfigPath": ""}},
            "confidential-vault:cluster.kubeconfigPath: is empty (got ''; allowed: at least 1 character)",
        ),
        (
            {"cluster": {"provider": "existing", "kubeconfigPath": "/k", "kubeconfigContext": ""}},
            "confidential-vault:cluster.kubeconfigContext: is empty (got ''; allowed: at least 1 character)",
        ),
        ({"owner": ""}, "confidential-vault:owner: is empty (got ''; allowed: 1 to 256 characters)"),
        (
            {"edge.dashboardUser": ""},
            "confidential-vault:edge.dashboardUser: is not a valid BasicAuth user (got ''; allowed: 1-64 characters, "
            "no ':' or spaces)",
        ),
        (
            {
                "argocd.applications": [
                    {"name": "web", "repoURL": "https://h/o/r.git", "namespace": "web", "targetRevision": ""}
                ]
            },
            "confidential-vault:argocd.applications[0].targetRevision: is empty (got ''; allowed: at least 1 "
            "character)",
        ),
        (
            {"cluster.sgxPool.vmSize": ""},
            "confidential-vault:cluster.sgxPool.vmSize: is not an SGX VM size (DCsv3 or DCdsv3) (got ''; allowed: "
            "Standard_DC1s_v3, Standard_DC2s_v3, Standard_DC4s_v3, Standard_DC8s_v3, Standard_DC16s_v3, "
            "Standard_DC24s_v3, Standard_DC32s_v3, Standard_DC48s_v3, Standard_DC1ds_v3, Standard_DC2ds_v3, "
            "Standard_DC4ds_v3, Standard_DC8ds_v3, Standard_DC16ds_v3, Standard_DC24ds_v3, Standard_DC32ds_v3, "
            "Standard_DC48ds_v3)",
        ),
        (
            {"cluster.location": ""},
            "confidential-vault:cluster.location: is not an Azure region name (lower-case, no spaces) (got ''; "
            "allowed: e.g. westeurope, swedencentral (`az account list-locations --query [].name`))",
        ),
    ],
)
def test_empty_strings_are_refused_where_a_value_is_required(overrides: dict[str, Any], expected: str) -> None:
    # An existing cluster names no region to take the attestation provider from: give one, so only `expected` is left.
    provider = {"vault.attestation.providerUrl": "https://sharedweu.weu.attest.azure.net"}
    assert problems({**overrides, **provider}) == [expected]


@pytest.mark.parametrize(
    "key",
    ["vault.epc", "vault.storageSize", "monitoring.prometheusStorageSize", "monitoring.grafanaStorageSize"],
)
@pytest.mark.parametrize("zero", ["0Mi", "0Gi", "000Ki"])
def test_zero_quantities_are_refused(key: str, zero: str) -> None:
    assert problems({key: zero}) == [
        f"confidential-vault:{key}: is zero (got '{zero}'; allowed: a quantity above zero, e.g. 64Mi)"
    ]


def test_zero_retention_is_refused() -> None:
    """Prometheus reads a zero retention as "not set" and keeps its 15-day default: not what was asked."""
    assert problems({"monitoring.prometheusRetention": "0d"}) == [
        "confidential-vault:monitoring.prometheusRetention: is zero (got '0d'; allowed: a duration above zero, e.g. "
        "15d)"
    ]


# --- domain ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["203.0.113.10", "2001:db8::10"])
def test_domain_is_not_an_ip_address(address: str) -> None:
    assert problems({"domain": address}) == [
        f"confidential-vault:domain: is an IP address: certificates and routes need a DNS name (got '{address}'; "
        "allowed: a domain you control, e.g. vault.example.com)"
    ]


def test_domain_with_a_numeric_top_level_label_is_refused() -> None:
    assert problems({"domain": "example.123"})[0].startswith(
        "confidential-vault:domain: is not a valid DNS name (got 'example.123';"
    )


def domain_of(length: int) -> str:
    """A valid domain of exactly `length` characters (labels of at most 60 characters)."""
    tail = ".example.org"
    body = length - len(tail)
    labels = []
    while body > 0:
        size = min(60, body - 1) if body > 61 else body
        labels.append("d" * size)
        body -= size + 1
    domain = ".".join(labels) + tail
    assert len(domain) == length, len(domain)
    return domain


def test_domain_leaves_room_for_the_longest_service_host() -> None:
    """`traefik.` and `grafana.` are the longest prefixes (8 characters): the domain may have 245 of 253."""
    longest = domain_of(245)
    assert load({"domain": longest}).host("traefik") == f"traefik.{longest}"
    assert len(f"traefik.{longest}") == 253
    too_long = domain_of(246)
    assert problems({"domain": too_long}) == [
        "confidential-vault:domain: is too long for the host names under it (e.g. traefik.<domain>: at most 253 "
        f"characters) (got '{too_long}'; allowed: at most 245 characters)"
    ]


def test_domain_labels_longer_than_63_are_refused() -> None:
    label = "l" * 64
    assert problems({"domain": f"{label}.example.org"})[0].startswith(
        f"confidential-vault:domain: is not a valid DNS name (got '{label}.example.org';"
    )


# --- Azure tags --------------------------------------------------------------------------------------------


def test_tag_values_up_to_256_characters_are_accepted() -> None:
    assert load({"cluster.tags": {"costCenter": "v" * 256}}).cluster.tags["costCenter"] == "v" * 256


def test_tag_values_over_256_characters_are_refused() -> None:
    assert problems({"cluster.tags": {"costCenter": "v" * 257}}) == [
        "confidential-vault:cluster.tags: has a tag value longer than Azure accepts "
        f'(got {{"costCenter": "{"v" * 257}"}}; allowed: at most 256 characters)'
    ]


# --- expiry ------------------------------------------------------------------------------------------------


def ephemeral(expires_at: datetime | str) -> dict[str, Any]:
    value = expires_at if isinstance(expires_at, str) else expires_at.isoformat().replace("+00:00", "Z")
    return {"environment": "ephemeral", "expiresAt": value}


def test_expiry_in_the_past_is_refused_at_deploy_time() -> None:
    assert problems(ephemeral(NOW - timedelta(minutes=1)), now=NOW) == [
        "confidential-vault:expiresAt: is already past: the reaper would destroy the stack on its next run "
        "(got 2026-11-30T11:59:00+00:00; allowed: a time after now (2026-11-30T12:00:00+00:00); "
        "`python -m tools.ephemeral up` sets it)"
    ]
    assert problems(ephemeral(NOW), now=NOW)[0].startswith("confidential-vault:expiresAt: is already past")


def test_expiry_in_the_future_is_accepted() -> None:
    settings = load(ephemeral(NOW + timedelta(minutes=1)), now=NOW)
    assert settings.expires_at == NOW + timedelta(minutes=1)


def test_expiry_in_another_time_zone_is_compared_as_an_instant() -> None:
    assert load(ephemeral("2026-11-30T13:30:00+01:00"), now=NOW).expires_at is not None
    assert problems(ephemeral("2026-11-30T12:30:00+01:00"), now=NOW)[0].startswith(
        "confidential-vault:expiresAt: is already past"
    )


def test_without_a_moment_the_expiry_is_not_judged() -> None:
    """tools/ephemeral.py validates the config it is about to set, with an expiry it computes itself."""
    assert load(ephemeral(NOW - timedelta(days=1))).expires_at == NOW - timedelta(days=1)


def test_the_program_refuses_an_expired_stack_before_registering_anything(dev_config: dict[str, Any]) -> None:
    config = with_overrides(dev_config, {"environment": "ephemeral", "expiresAt": "2026-01-01T00:00:00Z"})
    error, run = run_failing(config, stack="pr-9")
    assert isinstance(error, pulumi.RunError)
    assert "confidential-vault:expiresAt: is already past: the reaper would destroy the stack" in str(error)
    assert run.registrations == []


# --- location ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("location", ["westeurope", "swedencentral", "eastus2", "polandcentral", "australiacentral2"])
def test_azure_region_names_are_accepted(location: str) -> None:
    # With an attestation provider of one's own: the table of regional defaults is short (test_config_vault.py).
    provider = {"vault.attestation.providerUrl": "https://myprovider.weu.attest.azure.net"}
    assert load({"cluster.location": location, **provider}).cluster.location == location


@pytest.mark.parametrize("location", ["West Europe", "WestEurope", "westeurope2", "eu-west-1", "europe", "global"])
def test_anything_else_is_not_a_region(location: str) -> None:
    assert problems({"cluster.location": location}) == [
        f"confidential-vault:cluster.location: is not an Azure region name (lower-case, no spaces) (got '{location}'; "
        "allowed: e.g. westeurope, swedencentral (`az account list-locations --query [].name`))"
    ]


def test_region_list_holds_only_canonical_names() -> None:
    assert all(region == region.lower() and region.isalnum() for region in AZURE_REGIONS)
    assert len(AZURE_REGIONS) >= 50


# --- an SGX pool of zero nodes -----------------------------------------------------------------------------


def test_zero_sgx_nodes_without_autoscaling_are_refused() -> None:
    assert problems({"cluster.sgxPool.count": 0}) == [
        "confidential-vault:cluster.sgxPool.count: is 0 without autoscaling: no SGX node runs the secret store "
        "(a first deploy fails at the release timeout) (got 0; allowed: 1 or more; or 0 with "
        "cluster.sgxPool.allowZeroCount: true to pause a stack's SGX nodes)"
    ]


def test_zero_sgx_nodes_are_accepted_when_asked_for() -> None:
    settings = load({"cluster.sgxPool.count": 0, "cluster.sgxPool.allowZeroCount": True})
    assert settings.cluster.sgx_pool.count == 0


def test_zero_sgx_nodes_with_autoscaling_need_no_opt_in() -> None:
    settings = load({"cluster.sgxPool": {"count": 0, "minCount": 0, "maxCount": 2}})
    assert settings.cluster.sgx_pool.autoscaling


def test_zero_sgx_nodes_are_fine_in_simulation() -> None:
    """In simulation the secret store requests no EPC and has no SGX node selector."""
    settings = load({"cluster.sgxPool.count": 0, "vault.sgx.simulation": True})
    assert settings.cluster.sgx_pool.count == 0


def test_the_zero_node_rule_waits_for_a_valid_secret_store_section() -> None:
    found = problems({"cluster.sgxPool.count": 0, "vault.sgx.simulation": "perhaps"})
    assert found == [
        "confidential-vault:vault.sgx.simulation: is not a boolean (got 'perhaps'; allowed: true or false)"
    ]


def test_the_opt_in_is_refused_where_it_does_nothing() -> None:
    assert problems({"cluster.sgxPool.allowZeroCount": True}) == [
        "confidential-vault:cluster.sgxPool.allowZeroCount: only applies to count 0 without autoscaling "
        "(got true; allowed: unset)"
    ]
