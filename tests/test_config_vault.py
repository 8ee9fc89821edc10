"""`vault` config: the enclave identity clients verify and the attestation provider, with the operator's messages."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from test_config import PROD, load, problems

from components.config.vault import MIN_SECURITY_VERSION, SHARED_ATTESTATION_PROVIDERS, attestation_provider_url
from harness import PROJECT, run_failing, stack_config, with_overrides

EXISTING = {"cluster": {"provider": "existing", "kubeconfigPath": "/k"}, "owner": None}
PROVIDER = "https://myprovider.weu.attest.azure.net"
PROVIDER_ALLOWED = "https://<provider>.<region>.attest.azure.net, e.g. https://sharedweu.weu.attest.azure.net"


# --- the expected identity --------------------------------------------------------------------------------------------


def test_prod_needs_the_full_identity_clients_verify() -> None:
    assert problems({"environment": "prod", "cluster.sgxPool.count": 2, "vault.unseal.mode": "attested"}) == [
        "confidential-vault:vault.enclave.signerId: is required on prod stacks: clients verify the enclave against it "
        "(allowed: 64 lower-case hex digits (`ego signerid`, printed by the image build))",
        "confidential-vault:vault.enclave.productId: is required on prod stacks: clients verify the enclave against "
        "it (allowed: enclave.json `productID` of the image, 1 to 65535)",
        "confidential-vault:vault.enclave.securityVersion: is required on prod stacks: clients verify the enclave "
        "against it (allowed: the lowest enclave.json `securityVersion` clients accept, 3 to 65535)",
    ]
    # MRENCLAVE pins one exact build: optional, or every rebuild would need a config change first.
    assert load(PROD).vault.enclave.unique_id is None


def test_other_stacks_may_leave_the_identity_open() -> None:
    enclave = load().vault.enclave
    assert (enclave.signer_id, enclave.product_id, enclave.security_version) == (None, None, None)


def test_prod_without_identity_stops_before_registering_anything() -> None:
    config, secret_keys = stack_config("prod")
    error, run = run_failing(with_overrides(config, {"vault.enclave": None}), stack="prod", secret_keys=secret_keys)
    assert isinstance(error, pulumi.RunError)
    for key in ("signerId", "productId", "securityVersion"):
        assert f"{PROJECT}:vault.enclave.{key}: is required on prod stacks" in str(error)
    assert run.registrations == []


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("productId", 0, "is out of range (got 0; allowed: 1 to 65535)"),
        ("securityVersion", 65536, "is out of range (got 65536; allowed: 3 to 65535)"),
        # Builds before 3 let the host replace the enclave's configuration (issue 19): no stack may trust them.
        ("securityVersion", 2, "is out of range (got 2; allowed: 3 to 65535)"),
        ("securityVersion", "two", "is not a whole number (got 'two'; allowed: e.g. 3)"),
        (
            "signerId",
            "AB" * 32,
            f"is not an enclave measurement (got '{'AB' * 32}'; allowed: 64 lower-case hex digits)",
        ),
    ],
)
def test_identity_values_are_checked(key: str, value: Any, expected: str) -> None:
    assert problems({f"vault.enclave.{key}": value}) == [f"confidential-vault:vault.enclave.{key}: {expected}"]


def test_identity_numbers_may_come_as_strings() -> None:
    """`pulumi config set --path vault.enclave.productId 1` may store the number as a string."""
    enclave = load({"vault.enclave.productId": "1", "vault.enclave.securityVersion": "3"}).vault.enclave
    assert (enclave.product_id, enclave.security_version) == (1, 3)


def test_the_prod_example_demands_security_version_3() -> None:
    config, _ = stack_config("prod")
    assert config[f"{PROJECT}:vault"]["enclave"]["securityVersion"] == MIN_SECURITY_VERSION == 3


# --- the store clients pin ------------------------------------------------------------------------------------------

CLUSTER_ID = "8f2c1e4a-5b6d-4c3e-9a7f-0e1d2c3b4a59"
CLUSTER_ID_ALLOWED = "the store's cluster id as `scripts/verify.py --record-cluster-id` prints it (a lower-case UUID)"


def test_the_store_is_pinned_by_its_cluster_id() -> None:
    assert load({"vault.clusterId": CLUSTER_ID}).vault.cluster_id == CLUSTER_ID
    assert load().vault.cluster_id is None  # not pinned until the first `bao operator init`


@pytest.mark.parametrize(
    "value",
    [
        CLUSTER_ID.upper(),  # OpenBao writes lower case, and clients compare byte for byte
        CLUSTER_ID.replace("-", ""),
        CLUSTER_ID[:-1],
        f"{CLUSTER_ID}\n",
        "not pinned",
        "",
    ],
)
def test_a_cluster_id_that_is_not_one_is_refused_by_key(value: str) -> None:
    assert problems({"vault.clusterId": value}) == [
        f"confidential-vault:vault.clusterId: is not a store cluster id (got {value!r}; allowed: {CLUSTER_ID_ALLOWED})"
    ]


def test_a_malformed_cluster_id_stops_before_registering_anything() -> None:
    config, secret_keys = stack_config("prod")
    error, run = run_failing(with_overrides(config, {"vault.clusterId": "1234"}), stack="prod", secret_keys=secret_keys)
    assert isinstance(error, pulumi.RunError)
    assert f"{PROJECT}:vault.clusterId: is not a store cluster id (got '1234'" in str(error)
    assert run.registrations == []


# --- the attestation provider -----------------------------------------------------------------------------------------


def test_default_provider_is_the_shared_one_of_the_aks_region() -> None:
    assert attestation_provider_url(load()) == "https://sharedweu.weu.attest.azure.net"  # westeurope, the default
    assert attestation_provider_url(load({"cluster.location": "eastus2"})) == "https://sharedeus2.eus2.attest.azure.net"
    assert attestation_provider_url(load({"vault.attestation.providerUrl": PROVIDER})) == PROVIDER


def test_shared_provider_table_names_real_regions_and_provider_urls() -> None:
    from components.config import AZURE_REGIONS

    assert set(SHARED_ATTESTATION_PROVIDERS) <= AZURE_REGIONS
    for region, url in SHARED_ATTESTATION_PROVIDERS.items():
        # The shared providers' pattern: https://shared<code>.<code>.attest.azure.net, one per region.
        code = url.removeprefix("https://shared").split(".", 1)[0]
        assert url == f"https://shared{code}.{code}.attest.azure.net", region
    assert len(set(SHARED_ATTESTATION_PROVIDERS.values())) == len(SHARED_ATTESTATION_PROVIDERS)


def test_region_without_a_listed_provider_needs_one_configured() -> None:
    assert "swedencentral" not in SHARED_ATTESTATION_PROVIDERS
    assert problems({"cluster.location": "swedencentral"}) == [
        "confidential-vault:vault.attestation.providerUrl: is required: no shared provider is listed here for "
        f"cluster.location swedencentral (allowed: {PROVIDER_ALLOWED})"
    ]
    settings = load({"cluster.location": "swedencentral", "vault.attestation.providerUrl": PROVIDER})
    assert attestation_provider_url(settings) == PROVIDER


def test_region_from_a_secret_cluster_section_is_not_shown() -> None:
    found = problems({"cluster.location": "swedencentral"}, secret_keys=("cluster",))
    assert found == [
        "confidential-vault:vault.attestation.providerUrl: is required: no shared provider is listed here for "
        f"cluster.location [secret] (allowed: {PROVIDER_ALLOWED})"
    ]


def test_existing_cluster_needs_a_provider_unless_nothing_attests() -> None:
    assert problems(EXISTING) == [
        "confidential-vault:vault.attestation.providerUrl: is required on existing clusters (no cluster.location to "
        f"take the regional shared provider from) (allowed: {PROVIDER_ALLOWED})"
    ]
    assert attestation_provider_url(load({**EXISTING, "vault.attestation.providerUrl": PROVIDER})) == PROVIDER
    # A simulation has no attestation, and the dev server starts without the attested listener.
    for nothing_attests in ({"vault.sgx.simulation": True}, {"vault.mode": "dev"}):
        assert attestation_provider_url(load({**EXISTING, **nothing_attests})) is None


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("https://sharedweu.weu.attest.azure.net/", "https://sharedweu.weu.attest.azure.net"),
        ("https://MyProvider.WEU.attest.azure.net", "https://myprovider.weu.attest.azure.net"),
    ],
)
def test_provider_url_is_kept_in_the_form_of_the_token_issuer(value: str, normalised: str) -> None:
    """MAA writes the provider URL as `iss`, without a trailing slash; verify.py compares against the output."""
    assert load({"vault.attestation.providerUrl": value}).vault.attestation.provider_url == normalised


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://sharedweu.weu.attest.azure.net", "is not an https URL naming a host"),
        ("sharedweu.weu.attest.azure.net", "is not an https URL naming a host"),
        ("https://user:pass@sharedweu.weu.attest.azure.net", "is not an https URL naming a host"),
        ("https://sharedweu.weu.attest.azure.net:port", "is not a URL"),
    ],
)
def test_provider_url_must_be_an_https_host(value: str, message: str) -> None:
    [problem] = problems({"vault.attestation.providerUrl": value})
    assert problem.startswith(f"confidential-vault:vault.attestation.providerUrl: {message} (got ")
    assert problem.endswith(f"; allowed: {PROVIDER_ALLOWED})")
    assert "pass@" not in problem  # URL credentials are never shown


def test_provider_url_has_no_path() -> None:
    assert problems({"vault.attestation.providerUrl": "https://sharedweu.weu.attest.azure.net/certs"}) == [
        "confidential-vault:vault.attestation.providerUrl: has a path, query or fragment (got "
        "'https://sharedweu.weu.attest.azure.net/certs'; allowed: the provider's base URL, "
        f"{PROVIDER_ALLOWED})"
    ]
