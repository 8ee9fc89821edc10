"""The AttestedSeal component (Key Vault, seal key, identity, federated credential, release grant) and its settings."""

from __future__ import annotations

import base64
import json
import re
from types import SimpleNamespace
from typing import Any

import pulumi
import pytest
from pulumi_azure_native import containerservice, keyvault

import components.seal
import harness
from components.config import ConfigError, Settings, load_settings
from components.config.seal import VaultUnsealSettings, unseal_problems
from components.release_policy import ExpectedEnclave, release_policy
from components.seal import AttestedSeal, AttestedSealArgs, key_vault_name_prefix
from harness import (
    FAKE_IDENTITY_CLIENT_ID,
    FAKE_IDENTITY_PRINCIPAL_ID,
    FAKE_KEY_VERSION,
    FAKE_RANDOM_STRING,
    FAKE_SUBSCRIPTION_ID,
    FAKE_TENANT_ID,
    ProgramRun,
    Registration,
    encode_config,
    run_function,
)

COMPONENT = "confidential-vault:seal:AttestedSeal"
# Key Vault control-plane API 2026-02-01: every earlier version retires on 2027-02-27 (azure-api-lifecycle.yaml).
VAULT = "azure-native:keyvault/v20260201:Vault"
KEY = "azure-native:keyvault/v20260201:Key"
# The SDK's default tokens (API 2024-11-01 in pulumi-azure-native 3.29.0): what stacks created before registered.
DEFAULT_VAULT = "azure-native:keyvault:Vault"
DEFAULT_KEY = "azure-native:keyvault:Key"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
CREDENTIAL = "azure-native:managedidentity:FederatedIdentityCredential"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
CLUSTER = "azure-native:containerservice:ManagedCluster"
RANDOM_STRING = "random:index/randomString:RandomString"
# What the mocked `getClientConfig` says the deployer is (harness.FakeCloud.call).
DEPLOYER_OBJECT_ID = "22222222-2222-2222-2222-222222222222"
RELEASE_USER_ROLE_ID = (
    f"/subscriptions/{FAKE_SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/"
    "08bbd89e-9f13-488c-ac41-acfcb10c90ab"
)
MAA = "https://sharedweu.weu.attest.azure.net"
SIGNER = "5e" * 32
ENCLAVE = ExpectedEnclave(attestation_provider=MAA, signer_id=SIGNER, product_id=1, min_security_version=3)
ATTESTED = VaultUnsealSettings(mode="attested")
RESOURCE_GROUP = "cv-dev"
# Key Vault's naming rule, as its documentation states it (3-24 of letters, digits, '-'; starts with a letter, ends
# with a letter or digit, no consecutive hyphens).
KEY_VAULT_NAME = re.compile(r"^(?!.*--)[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")


@pytest.fixture
def retained(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """`retainOnDelete` of every registration by resource name (the harness does not record it)."""
    seen: dict[str, bool] = {}
    register = harness.RecordingMonitor.RegisterResource

    def recording(self: harness.RecordingMonitor, request: Any) -> Any:
        seen[request.name] = request.retainOnDelete
        return register(self, request)

    monkeypatch.setattr(harness.RecordingMonitor, "RegisterResource", recording)
    return seen


def run_seal(
    settings: VaultUnsealSettings = ATTESTED,
    enclave: ExpectedEnclave = ENCLAVE,
    protect: bool = False,
    stack: str = "dev",
    preview: bool = False,
) -> ProgramRun:
    """The component alone, next to a cluster whose OIDC issuer it trusts; its outputs exported as `seal`."""

    def program() -> None:
        cluster = containerservice.ManagedCluster("aks", resource_group_name=RESOURCE_GROUP)
        issuer = cluster.oidc_issuer_profile.apply(lambda profile: profile.issuer_url if profile else "")
        seal = AttestedSeal(
            "vault-seal",
            AttestedSealArgs(
                settings=settings,
                enclave=enclave,
                stack=stack,
                resource_group_name=RESOURCE_GROUP,
                location="westeurope",
                oidc_issuer_url=issuer,
                service_account_namespace="vault",
                service_account_name="openbao",
                tags={"environment": "dev", "stack": stack},
                protect=protect,
            ),
        )
        pulumi.export(
            "seal",
            {
                "vaultUri": seal.vault_uri,
                "keyName": seal.key_name,
                "keyId": seal.key_id,
                "keyIdWithVersion": seal.key_id_with_version,
                "keyVersion": seal.key_version,
                "clientId": seal.client_id,
                "tenantId": seal.tenant_id,
                "releasePolicy": seal.release_policy_json,
                "serviceAccountAnnotations": seal.service_account_annotations,
                "podLabels": seal.pod_labels,
                "bootstrapEnv": seal.bootstrap_env,
                "ready": [resource.urn for resource in seal.ready],
                "accessKeyId": seal.access.key_id,
                "accessEnv": seal.access.env,
                "accessReady": [resource.urn for resource in seal.access.ready],
            },
        )

    return run_function(program, stack=stack, preview=preview)


def decoded_policy(key: Registration) -> Any:
    data = key.inputs["properties"]["releasePolicy"]["data"]
    return json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))


def vault_id(vault: Registration) -> str:
    return (
        f"/subscriptions/{FAKE_SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.KeyVault/vaults/"
        f"{vault.inputs['vaultName']}"
    )


@pytest.fixture(scope="module")
def dev_run() -> ProgramRun:
    return run_seal()


# --- Key Vault ---------------------------------------------------------------------------------


def test_key_vault_is_premium_rbac_soft_deleting_and_tagged(dev_run: ProgramRun) -> None:
    vault = dev_run.one(VAULT)
    properties = vault.inputs["properties"]
    assert properties["sku"] == {"family": "A", "name": "premium"}
    assert properties["enableRbacAuthorization"] is True
    assert "accessPolicies" not in properties
    assert properties["enableSoftDelete"] is True
    assert properties["softDeleteRetentionInDays"] == 7
    # On dev too: recovery keys cannot decrypt a static seal, so a purge would take the data.
    assert properties["enablePurgeProtection"] is True
    assert properties["tenantId"] == FAKE_TENANT_ID
    assert properties["enabledForDeployment"] is False
    assert properties["enabledForDiskEncryption"] is False
    assert properties["enabledForTemplateDeployment"] is False
    assert vault.inputs["resourceGroupName"] == RESOURCE_GROUP
    assert vault.inputs["location"] == "westeurope"
    assert vault.inputs["tags"] == {"environment": "dev", "stack": "dev"}
    assert not vault.protect


def test_key_vault_name_is_stack_plus_random_suffix(dev_run: ProgramRun) -> None:
    name = dev_run.one(VAULT).inputs["vaultName"]
    suffix = dev_run.one(RANDOM_STRING)
    assert suffix.inputs["length"] == 6
    assert (suffix.inputs["upper"], suffix.inputs["special"]) == (False, False)
    assert name == f"kv-dev-{FAKE_RANDOM_STRING[:6]}"
    assert KEY_VAULT_NAME.match(name)


@pytest.mark.parametrize("stack", ["dev", "prod", "Ephemeral_PR-1234--feature/very-long-branch-name", "x", "---"])
def test_derived_key_vault_names_are_valid_for_any_stack(stack: str) -> None:
    name = f"{key_vault_name_prefix(stack)}-{'a' * 6}"
    assert KEY_VAULT_NAME.match(name), name


def test_configured_key_vault_name_replaces_the_random_one() -> None:
    run = run_seal(VaultUnsealSettings(mode="attested", key_vault_name="kv-team-seal"))
    assert run.one(VAULT).inputs["vaultName"] == "kv-team-seal"
    assert not run.of_type(RANDOM_STRING)


def test_public_access_without_ranges_deny_with_them(dev_run: ProgramRun) -> None:
    open_vault = dev_run.one(VAULT).inputs["properties"]
    assert open_vault["publicNetworkAccess"] == "Enabled"
    assert open_vault["networkAcls"] == {"defaultAction": "Allow", "bypass": "None", "ipRules": []}

    ranges = ["203.0.113.7", "198.51.100.0/24"]
    closed = run_seal(VaultUnsealSettings(mode="attested", allowed_ip_ranges=ranges)).one(VAULT).inputs["properties"]
    assert closed["publicNetworkAccess"] == "Enabled"
    assert closed["networkAcls"] == {
        "defaultAction": "Deny",
        "bypass": "None",
        "ipRules": [{"value": "203.0.113.7"}, {"value": "198.51.100.0/24"}],
    }


def test_prod_protects_vault_and_key_with_purge_protection_and_long_retention() -> None:
    prod = run_seal(protect=True, stack="prod")
    vault, key = prod.one(VAULT), prod.one(KEY)
    assert vault.protect
    assert key.protect
    assert vault.inputs["properties"]["enablePurgeProtection"] is True
    assert vault.inputs["properties"]["softDeleteRetentionInDays"] == 90
    # Only the vault and the key hold the seal key; the identity and its grants can be recreated.
    assert not any(r.protect for r in prod.registrations if r.type not in (VAULT, KEY))


def test_retention_and_purge_protection_follow_settings() -> None:
    run = run_seal(VaultUnsealSettings(mode="attested", soft_delete_retention_days=30, purge_protection=True))
    properties = run.one(VAULT).inputs["properties"]
    assert properties["softDeleteRetentionInDays"] == 30
    assert properties["enablePurgeProtection"] is True


@pytest.mark.parametrize("stack_name", ["dev", "pr-1234", "Ephemeral_PR-1234--feature/very-long-branch-name"])
def test_every_attested_stack_has_purge_protection(stack_name: str) -> None:
    # Ephemeral stacks too: their vault's name stays held while soft-deleted, which the random suffix makes harmless.
    vault = run_seal(stack=stack_name).one(VAULT)
    assert vault.inputs["properties"]["enablePurgeProtection"] is True


def test_vault_name_comes_from_a_random_suffix_the_stack_keeps(dev_run: ProgramRun) -> None:
    # A re-created stack gets a new RandomString, so a new name, while the destroyed vault still holds the old one;
    # the suffix has no keepers, so nothing but a new stack changes it (a new name would be a new vault).
    suffix, vault = dev_run.one(RANDOM_STRING), dev_run.one(VAULT)
    assert vault.property_dependencies["vaultName"] == [suffix.urn]
    assert "keepers" not in suffix.inputs


# --- Key Vault API version: the move of existing stacks ---------------------------------------------


@pytest.fixture
def aliases(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """The alias specs each registration carried, by resource name (the harness does not record them)."""
    seen: dict[str, list[Any]] = {}
    register = harness.RecordingMonitor.RegisterResource

    def recording(self: harness.RecordingMonitor, request: Any) -> Any:
        seen[request.name] = [alias.spec for alias in request.aliases]
        return register(self, request)

    monkeypatch.setattr(harness.RecordingMonitor, "RegisterResource", recording)
    return seen


UNSET_ALIAS = SimpleNamespace(noParent=False, parentUrn="", stack="", project="", type="", name="")


def alias_urn(registration: Registration, spec: Any, stack: str) -> str:
    """The URN an alias spec names, by the engine's rules: unset fields are the resource's own; the root stack is not
    part of a child's type chain."""
    parent = "" if spec.noParent else (spec.parentUrn or registration.parent)
    # (The mock monitor names a component under the stack `pulumi:pulumi:Stack$…`; the engine leaves the stack out.)
    parent_type = parent.split("::")[2].removeprefix("pulumi:pulumi:Stack$") if parent else ""
    chain = f"{parent_type}$" if parent_type and parent_type != "pulumi:pulumi:Stack" else ""
    return (
        f"urn:pulumi:{spec.stack or stack}::{spec.project or harness.PROJECT}::{chain}{spec.type or registration.type}"
        f"::{spec.name or registration.name}"
    )


def test_vault_and_key_call_key_vault_api_2026_02_01(dev_run: ProgramRun) -> None:
    assert {r.type for r in dev_run.registrations if r.type.startswith("azure-native:keyvault")} == {VAULT, KEY}


def test_an_existing_stack_keeps_its_vault_and_key_across_the_api_version_move(
    monkeypatch: pytest.MonkeyPatch, aliases: dict[str, list[Any]]
) -> None:
    after = run_seal(protect=True, stack="prod")
    after_aliases = dict(aliases)
    # The program as it was: the SDK's classes at their default API version.
    monkeypatch.setattr(components.seal, "KeyVault", keyvault.Vault)
    monkeypatch.setattr(components.seal, "KeyVaultKey", keyvault.Key)
    before = run_seal(protect=True, stack="prod")

    renamed: dict[str, str] = {}
    for old_type, new_type in ((DEFAULT_VAULT, VAULT), (DEFAULT_KEY, KEY)):
        old, new = before.one(old_type), after.one(new_type)
        # The resolver agrees with how the mocks named the resource itself.
        assert alias_urn(new, UNSET_ALIAS, "prod") == new.urn
        # The engine looks the resource up under its alias: the stack's state entry, not a new resource.
        assert old.urn in {alias_urn(new, spec, "prod") for spec in after_aliases[new.name]}
        assert new.urn not in {alias_urn(new, spec, "prod") for spec in after_aliases[new.name]}
        # Same inputs (the vault's name included), same default provider, same protection: what the provider diffs
        # is "no change", so no update and no replacement; later calls use the new API version.
        assert new.raw_inputs == old.raw_inputs
        assert (new.provider, new.protect, new.retain_on_delete, new.parent) == (
            old.provider,
            old.protect,
            old.retain_on_delete,
            old.parent,
        )
        renamed[old.urn] = new.urn
    assert after.one(KEY).property_dependencies["vaultName"] == [
        renamed[urn] for urn in before.one(DEFAULT_KEY).property_dependencies["vaultName"]
    ]
    # Nothing else in the component moved.
    untouched = {
        (r.urn, json.dumps(r.raw_inputs, sort_keys=True)) for r in after.registrations if r.urn not in renamed.values()
    }
    assert untouched == {
        (r.urn, json.dumps(r.raw_inputs, sort_keys=True)) for r in before.registrations if r.urn not in renamed
    }


# --- the seal key --------------------------------------------------------------------------------


def test_key_is_an_exportable_rsa_hsm_key_generated_in_the_vault(dev_run: ProgramRun) -> None:
    key = dev_run.one(KEY)
    properties = key.inputs["properties"]
    assert properties["kty"] == "RSA-HSM"
    assert properties["keySize"] == 3072
    assert properties["attributes"] == {"enabled": True, "exportable": True}
    # Nothing that could carry key material: Key Vault generates the key (an import would send `key`/JWK fields).
    assert set(properties) == {"kty", "keySize", "attributes", "releasePolicy"}
    assert set(key.inputs) == {"keyName", "vaultName", "resourceGroupName", "properties", "tags"}
    assert key.inputs["keyName"] == "openbao-seal"
    assert key.inputs["vaultName"] == dev_run.one(VAULT).inputs["vaultName"]


def test_key_carries_the_release_policy_as_base64url_json(dev_run: ProgramRun) -> None:
    release = dev_run.one(KEY).inputs["properties"]["releasePolicy"]
    assert release["contentType"] == "application/json; charset=utf-8"
    assert re.fullmatch(r"[A-Za-z0-9_-]+", release["data"])
    policy = decoded_policy(dev_run.one(KEY))
    assert policy == release_policy(ENCLAVE)
    assert policy["anyOf"][0]["authority"] == MAA
    assert {"claim": "x-ms-sgx-mrsigner", "equals": SIGNER} in policy["anyOf"][0]["allOf"]


@pytest.mark.parametrize(
    "changed",
    [
        ExpectedEnclave(attestation_provider=MAA, signer_id="7f" * 32, product_id=1, min_security_version=3),
        ExpectedEnclave(attestation_provider=MAA, signer_id=SIGNER, product_id=1, min_security_version=4),
    ],
    ids=["new-signer", "higher-svn"],
)
def test_a_new_expected_identity_is_a_diff_of_the_key_policy_only(
    dev_run: ProgramRun, changed: ExpectedEnclave
) -> None:
    before, after = dev_run.one(KEY), run_seal(enclave=changed).one(KEY)
    assert after.inputs["properties"]["releasePolicy"]["data"] != before.inputs["properties"]["releasePolicy"]["data"]
    assert decoded_policy(after) == release_policy(changed)
    # Everything else about the key stays: the diff `pulumi preview` shows is the policy alone.
    unchanged = {**after.inputs, "properties": {**after.inputs["properties"], "releasePolicy": None}}
    assert unchanged == {**before.inputs, "properties": {**before.inputs["properties"], "releasePolicy": None}}


def test_policy_is_in_the_key_inputs_at_preview() -> None:
    # A preview knows the policy before Azure is asked anything: the diff a reviewer reads is there.
    preview = run_seal(preview=True)
    assert decoded_policy(preview.one(KEY)) == release_policy(ENCLAVE)


def test_key_waits_for_its_vault_and_is_never_deleted_by_the_provider(retained: dict[str, bool]) -> None:
    run = run_seal()
    key, vault = run.one(KEY), run.one(VAULT)
    assert run.depends_on(key, vault)
    assert key.property_dependencies["vaultName"] == [vault.urn]
    assert retained["seal-key"] is True
    assert retained["key-vault"] is False


# --- identity, federated credential, the one release grant -------------------------------------


def test_identity_and_its_federated_credential_for_openbaos_service_account(dev_run: ProgramRun) -> None:
    identity, credential = dev_run.one(IDENTITY), dev_run.one(CREDENTIAL)
    assert identity.inputs["resourceName"] == "id-openbao-unseal-dev"
    assert identity.inputs["resourceGroupName"] == RESOURCE_GROUP
    assert identity.inputs["tags"] == {"environment": "dev", "stack": "dev"}
    assert credential.inputs["resourceName"] == "id-openbao-unseal-dev"
    assert credential.inputs["resourceGroupName"] == RESOURCE_GROUP
    assert credential.inputs["subject"] == "system:serviceaccount:vault:openbao"
    assert credential.inputs["audiences"] == ["api://AzureADTokenExchange"]
    assert credential.inputs["issuer"] == "https://oidc.example/issuer"  # the mocked cluster's issuer URL
    assert dev_run.depends_on(credential, identity)
    assert dev_run.depends_on(credential, dev_run.one(CLUSTER))


def test_exactly_one_grant_releases_the_key_to_the_identity_only(dev_run: ProgramRun) -> None:
    grants = dev_run.of_type(ROLE_ASSIGNMENT)
    assert len(grants) == 1
    grant = grants[0]
    assert grant.inputs["roleDefinitionId"] == RELEASE_USER_ROLE_ID
    assert grant.inputs["scope"] == f"{vault_id(dev_run.one(VAULT))}/keys/openbao-seal"
    assert grant.inputs["principalId"] == FAKE_IDENTITY_PRINCIPAL_ID
    assert grant.inputs["principalType"] == "ServicePrincipal"
    assert dev_run.depends_on(grant, dev_run.one(KEY))
    assert dev_run.depends_on(grant, dev_run.one(IDENTITY))


def test_the_deployer_gets_no_role(dev_run: ProgramRun) -> None:
    # The key is created through Azure Resource Manager (control plane): no data-plane role, so nothing that
    # includes keys/release/action (Key Vault Crypto Officer's keys/* would).
    assert DEPLOYER_OBJECT_ID not in dev_run.plaintext()
    assert not dev_run.of_type("azure-native:authorization:RoleDefinition")


def test_every_resource_is_a_child_of_the_component(dev_run: ProgramRun) -> None:
    component = dev_run.one(COMPONENT)
    children = [r for r in dev_run.registrations if r.type not in (COMPONENT, CLUSTER)]
    assert {r.type for r in children} == {VAULT, KEY, IDENTITY, CREDENTIAL, ROLE_ASSIGNMENT, RANDOM_STRING}
    assert all(r.parent == component.urn for r in children)


# --- what the OpenBao release needs ----------------------------------------------------------------


def test_outputs_for_the_pod_and_the_bootstrap(dev_run: ProgramRun) -> None:
    seal = dev_run.outputs["seal"]
    vault_url = f"https://kv-dev-{FAKE_RANDOM_STRING[:6]}.vault.azure.net"
    assert seal["vaultUri"] == vault_url
    assert seal["keyName"] == "openbao-seal"
    assert seal["keyId"] == f"{vault_url}/keys/openbao-seal"
    assert seal["keyIdWithVersion"] == f"{vault_url}/keys/openbao-seal/{FAKE_KEY_VERSION}"
    assert seal["keyVersion"] == FAKE_KEY_VERSION
    assert seal["clientId"] == FAKE_IDENTITY_CLIENT_ID
    assert seal["tenantId"] == FAKE_TENANT_ID
    assert json.loads(seal["releasePolicy"]) == decoded_policy(dev_run.one(KEY))
    assert seal["serviceAccountAnnotations"] == {"azure.workload.identity/client-id": FAKE_IDENTITY_CLIENT_ID}
    assert seal["podLabels"] == {"azure.workload.identity/use": "true"}
    # The one variable the enclave's key release reads (keyrelease.ConfigFromEnv): the key with its version.
    assert seal["bootstrapEnv"] == {"CV_SEAL_KEY_ID": f"{vault_url}/keys/openbao-seal/{FAKE_KEY_VERSION}"}
    assert seal["accessKeyId"] == seal["keyIdWithVersion"]


def test_a_rotation_names_the_new_and_the_previous_version() -> None:
    new, old = "ab" * 16, FAKE_KEY_VERSION
    run = run_seal(VaultUnsealSettings(mode="attested", key_version=new, previous_key_version=old))
    seal = run.outputs["seal"]
    key = f"https://kv-dev-{FAKE_RANDOM_STRING[:6]}.vault.azure.net/keys/openbao-seal"
    assert seal["keyIdWithVersion"] == f"{key}/{new}"
    assert seal["keyVersion"] == new
    assert seal["accessKeyId"] == f"{key}/{new}"
    assert seal["bootstrapEnv"] == {"CV_SEAL_KEY_ID": f"{key}/{new}", "CV_SEAL_PREVIOUS_KEY_ID": f"{key}/{old}"}
    # The key resource itself is untouched: versions are made in Key Vault, never by Resource Manager.
    assert run.one(KEY).inputs == run_seal().one(KEY).inputs


def test_ready_is_key_identity_credential_and_grant(dev_run: ProgramRun) -> None:
    expected = {dev_run.one(t).urn for t in (KEY, IDENTITY, CREDENTIAL, ROLE_ASSIGNMENT)}
    assert set(dev_run.outputs["seal"]["ready"]) == expected
    assert set(dev_run.outputs["seal"]["accessReady"]) == expected
    assert dev_run.outputs["seal"]["accessEnv"] == dev_run.outputs["seal"]["bootstrapEnv"]


# --- settings: vault.unseal ------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "confidential-vault:environment": "dev",
    "confidential-vault:domain": "dev.vault.example.org",
    "confidential-vault:owner": "platform-team",
    "confidential-vault:acme": {"email": "ops@example.org"},
    "confidential-vault:vault": {
        "image": {"repository": "registry.example.org/ego-openbao", "tag": "2.6.2-ego1.9.0"},
        "enclave": {"signerId": SIGNER, "productId": 1, "securityVersion": 3},
    },
}


def stack(**changes: Any) -> Settings:
    raw = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        section, *path = dotted.split("__")
        if not path:
            raw[f"confidential-vault:{section}"] = value
            continue
        node = raw.setdefault(f"confidential-vault:{section}", {})
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return load_settings(encode_config(raw))


def problems(unseal: dict[str, Any], settings: Settings) -> list[str]:
    return [str(problem) for problem in unseal_problems(VaultUnsealSettings.model_validate(unseal), settings)]


def test_attested_on_aks_with_a_full_identity_is_fine() -> None:
    assert problems({"mode": "attested"}, stack()) == []
    assert problems({}, stack()) == []  # shamir, the default, off prod


def test_prod_on_aks_requires_attested_and_keeps_purge_protection() -> None:
    prod = stack(environment="prod", cluster__sgxPool__count=2, vault__unseal={"mode": "attested"})
    assert problems({"mode": "attested"}, prod) == []
    assert problems({"mode": "shamir"}, prod) == [
        "confidential-vault:vault.unseal.mode: prod stacks on AKS unseal with the attested Key Vault key: restarts "
        "must not wait for key holders (got 'shamir'; allowed: attested)"
    ]
    refused = [
        "confidential-vault:vault.unseal.purgeProtection: is refused with vault.unseal.mode attested: a purged vault "
        "or key takes the seal key, and the data with it (got false; allowed: true or unset)"
    ]
    assert problems({"mode": "attested", "purgeProtection": False}, prod) == refused
    # Off prod as well: the data is as lost on an ephemeral stack's store as on prod's.
    assert problems({"mode": "attested", "purgeProtection": False}, stack()) == refused
    assert problems({"mode": "attested", "purgeProtection": True}, stack()) == []


def test_attested_needs_aks_server_and_hardware() -> None:
    existing = stack(
        cluster__provider="existing",
        cluster__kubeconfigPath="/tmp/kubeconfig",
        vault__attestation__providerUrl="https://sharedweu.weu.attest.azure.net",
    )
    assert problems({"mode": "attested"}, existing) == [
        "confidential-vault:vault.unseal.mode: attested needs cluster.provider aks (Key Vault and workload identity "
        "are created with the cluster) (got 'attested'; allowed: shamir on existing clusters)"
    ]
    simulated = problems({"mode": "attested"}, stack(vault__sgx={"simulation": True}))
    assert len(simulated) == 1
    assert "simulated enclave cannot be attested" in simulated[0]
    dev_mode = problems({"mode": "attested"}, stack(vault__mode="dev"))
    assert len(dev_mode) == 1
    assert "needs vault.mode server" in dev_mode[0]


def test_attested_needs_the_identity_the_policy_pins() -> None:
    settings = stack(vault__enclave={"signerId": SIGNER})
    assert sorted(problems({"mode": "attested"}, settings)) == [
        "confidential-vault:vault.enclave.productId: is required with vault.unseal.mode attested: the release policy "
        "pins it (allowed: enclave.json `productID`, 1 to 65535)",
        "confidential-vault:vault.enclave.securityVersion: is required with vault.unseal.mode attested: the release "
        "policy pins it (allowed: the lowest enclave.json `securityVersion` released to)",
    ]


def test_attested_only_settings_are_refused_with_shamir() -> None:
    found = problems({"mode": "shamir", "allowedIpRanges": ["203.0.113.7"], "keySize": 4096}, stack())
    assert sorted(found) == [
        "confidential-vault:vault.unseal.allowedIpRanges: only applies to mode attested "
        '(got ["203.0.113.7"]; allowed: unset, or mode: attested)',
        "confidential-vault:vault.unseal.keySize: only applies to mode attested (got 4096; allowed: unset, or mode: "
        "attested)",
    ]


def test_the_rule_runs_when_the_stack_loads() -> None:
    with pytest.raises(ConfigError) as refused:
        stack(environment="prod", cluster__sgxPool__count=2)
    assert [str(problem) for problem in refused.value.problems] == [
        "confidential-vault:vault.unseal.mode: prod stacks on AKS unseal with the attested Key Vault key: restarts "
        "must not wait for key holders (got 'shamir'; allowed: attested)"
    ]
    assert (
        stack(environment="prod", cluster__sgxPool__count=2, vault__unseal={"mode": "attested"}).vault.unseal.mode
        == "attested"
    )


def test_a_rotation_needs_the_new_version_and_a_different_one() -> None:
    version = "ab" * 16
    assert problems({"mode": "attested", "previousKeyVersion": version}, stack()) == [
        "confidential-vault:vault.unseal.previousKeyVersion: needs vault.unseal.keyVersion: a rotation names the new "
        f"version the enclave releases (got '{version}'; allowed: unset, or set together with keyVersion)"
    ]
    assert problems({"mode": "attested", "keyVersion": version, "previousKeyVersion": version}, stack()) == [
        "confidential-vault:vault.unseal.previousKeyVersion: is the same version as vault.unseal.keyVersion: a "
        f"rotation moves from one version to another (got '{version}'; allowed: the version the data is sealed "
        "with now, or unset)"
    ]
    assert problems({"mode": "attested", "keyVersion": version, "previousKeyVersion": "cd" * 16}, stack()) == []
    assert problems({"mode": "shamir", "keyVersion": version}, stack()) == [
        f"confidential-vault:vault.unseal.keyVersion: only applies to mode attested (got '{version}'; allowed: "
        "unset, or mode: attested)"
    ]


@pytest.mark.parametrize(
    ("unseal", "message"),
    [
        ({"keyVersion": "AB" * 16}, "is not a Key Vault key version"),
        ({"previousKeyVersion": "ab" * 15}, "is not a Key Vault key version"),
        ({"allowedIpRanges": ["2001:db8::/32"]}, "is IPv6"),
        ({"allowedIpRanges": ["203.0.113.7/24"]}, "is not an IPv4 address or range"),
        ({"softDeleteRetentionDays": 6}, "greater than or equal to 7"),
        ({"softDeleteRetentionDays": 91}, "less than or equal to 90"),
        ({"keySize": 1024}, "2048"),
        ({"keyVaultName": "kv--double"}, "is not a valid Key Vault name"),
        ({"keyVaultName": "1kv-starts-with-digit"}, "is not a valid Key Vault name"),
        ({"keyVaultName": "kv-" + "x" * 22}, "is not a valid Key Vault name"),
        ({"mode": "kms"}, "shamir"),
    ],
)
def test_malformed_unseal_settings_are_refused(unseal: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        VaultUnsealSettings.model_validate({"mode": "attested", **unseal})
