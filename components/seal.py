"""Attested auto-unseal, Azure side: a Key Vault key that Azure releases only to the attested OpenBao enclave.

Premium Key Vault generates an exportable RSA-HSM key whose release policy (components/release_policy.py) names the
enclave; Key Vault checks a Microsoft Azure Attestation token against it before it releases the key, wrapped to a
key the enclave made. The enclave calls with an Entra token of a user-assigned identity, which it gets through AKS
workload identity (a federated credential for OpenBao's service account); that identity holds the one grant that
allows release, on that key alone. Premium has no symmetric HSM keys, so the enclave derives OpenBao's 32-byte
static seal key from the released key material (HKDF, in the bootstrap).

Recovery keys cannot decrypt a static seal: losing the key loses the data. So the vault always has purge protection
(a deleted vault or key stays recoverable for the retention period and nobody can purge it sooner), and its name carries
a random suffix, made once per stack, so a stack destroyed and created again gets a new name while the old one is
still held. The vault and key are called with Key Vault API `KEY_VAULT_API_VERSION` (components/azure_api.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_random as random
from pulumi_azure_native import authorization, keyvault, managedidentity

from components.azure_api import KeyVault, KeyVaultKey
from components.config.seal import SOFT_DELETE_DAYS_MAX, SOFT_DELETE_DAYS_MIN, VaultUnsealSettings
from components.release_policy import CONTENT_TYPE, ExpectedEnclave, encoded_policy, policy_json, release_policy

# Azure built-in role "Key Vault Crypto Service Release User": the data action keys/release/action and nothing else.
RELEASE_USER_ROLE = "08bbd89e-9f13-488c-ac41-acfcb10c90ab"
SEAL_KEY_NAME = "openbao-seal"
# The audience AKS workload identity requests for the service account token it exchanges with Entra ID.
WORKLOAD_IDENTITY_AUDIENCE = "api://AzureADTokenExchange"
# The AKS workload identity webhook mutates pods with this label and takes the client id from the service account.
CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
USE_LABEL = "azure.workload.identity/use"
# What the key release in the enclave reads (enclave.json `fromHost`; images/ego-openbao/bootstrap/keyrelease): the
# key with its version, `https://<vault>.vault.azure.net/keys/<name>/<version>`, and during a rotation the version the
# data is still sealed with. The attestation provider is the attested listener's CV_MAA_URL (components/openbao.py).
ENV_SEAL_KEY_ID = "CV_SEAL_KEY_ID"
ENV_SEAL_PREVIOUS_KEY_ID = "CV_SEAL_PREVIOUS_KEY_ID"
_KEY_VAULT_NAME_MAX = 24
_SUFFIX_LENGTH = 6


@dataclass(frozen=True)
class AttestedSealArgs:
    """Inputs of `AttestedSeal`."""

    settings: VaultUnsealSettings
    enclave: ExpectedEnclave
    stack: str
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    """The AKS cluster's OIDC issuer: the federated credential trusts tokens it signs (and so waits for the cluster)."""
    service_account_namespace: str
    service_account_name: str
    tags: Mapping[str, str] = field(default_factory=dict)
    protect: bool = False


@dataclass(frozen=True)
class SealAccess:
    """What the secret store's release needs from `AttestedSeal` to have the seal key released to its enclave.

    The pod joins AKS workload identity (`pod_labels`, and `service_account_annotations` on its service account), the
    enclave gets `env` (the key id), the release waits for `ready`, and clients expect `key_id` in the enclave's
    attestation (binding version 3, scripts/verify.py).
    """

    key_id: pulumi.Output[str]
    env: pulumi.Output[dict[str, str]]
    service_account_annotations: pulumi.Output[dict[str, str]]
    pod_labels: Mapping[str, str]
    ready: Sequence[pulumi.Resource]


def key_vault_name_prefix(stack: str) -> str:
    """`kv-<stack>` cut to leave room for `-<random suffix>` in Key Vault's 24 characters, valid in any case."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", stack.lower()).strip("-")
    prefix = f"kv-{cleaned}" if cleaned else "kv"
    return prefix[: _KEY_VAULT_NAME_MAX - _SUFFIX_LENGTH - 1].rstrip("-")


class AttestedSeal(pulumi.ComponentResource):
    """Key Vault Premium, the exportable HSM seal key with its release policy, the enclave's identity and its grant.

    Created for `vault.unseal.mode: attested` on AKS. The OpenBao release takes `access`: it waits for `ready`,
    mounts the identity (`service_account_annotations`, `pod_labels`) and passes `bootstrap_env` to the enclave.

    Updating the release policy: Azure Resource Manager creates a key once and never updates it (API
    `Keys_CreateIfNotExist`), so a changed policy shows as a diff of the key here, and is applied through the Key
    Vault data plane (update key with the published `release_policy_json`) before `pulumi up` rolls the new image.
    """

    vault: KeyVault
    key: KeyVaultKey
    identity: managedidentity.UserAssignedIdentity
    federated_credential: managedidentity.FederatedIdentityCredential
    release_grant: authorization.RoleAssignment
    vault_uri: pulumi.Output[str]
    """Key Vault's data-plane URL, without the trailing slash."""
    key_name: str
    key_id: pulumi.Output[str]
    """The key's versionless identifier (`<vault>/keys/<name>`)."""
    key_version: pulumi.Output[str]
    key_id_with_version: pulumi.Output[str]
    """The exact key version the enclave releases and binds into its attestation (`vault.unseal.keyVersion`, or the
    version this program created)."""
    client_id: pulumi.Output[str]
    tenant_id: pulumi.Output[str]
    release_policy_json: str
    """The policy exactly as encoded on the key: published so a reviewer (and a client) sees what is trusted."""
    service_account_annotations: pulumi.Output[dict[str, str]]
    pod_labels: dict[str, str]
    bootstrap_env: pulumi.Output[dict[str, str]]
    ready: list[pulumi.Resource]
    """What the OpenBao release waits for: key, identity, federated credential and release grant."""
    access: SealAccess
    """All the OpenBao release needs, in one handle."""

    def __init__(self, name: str, args: AttestedSealArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("confidential-vault:seal:AttestedSeal", name, None, opts)
        settings = args.settings
        tags = dict(args.tags)
        client = authorization.get_client_config_output()

        if settings.key_vault_name is not None:
            vault_name: pulumi.Input[str] = settings.key_vault_name
        else:
            # Globally unique, and new after a destroy: the deleted vault keeps its name while soft-deleted.
            suffix = random.RandomString(
                "key-vault-suffix",
                length=_SUFFIX_LENGTH,
                special=False,
                upper=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            prefix = key_vault_name_prefix(args.stack)
            vault_name = suffix.result.apply(lambda result: f"{prefix}-{result}")

        retention = settings.soft_delete_retention_days or (
            SOFT_DELETE_DAYS_MAX if args.protect else SOFT_DELETE_DAYS_MIN
        )
        # The enclave reaches the data plane from the cluster's outbound IP; without known ranges the vault stays
        # public, and RBAC plus the release policy guard the key. Control-plane calls (this program) ignore the rules.
        network_acls = keyvault.NetworkRuleSetArgs(
            default_action=keyvault.NetworkRuleAction.DENY
            if settings.allowed_ip_ranges
            else keyvault.NetworkRuleAction.ALLOW,
            bypass=keyvault.NetworkRuleBypassOptions.NONE,
            ip_rules=[keyvault.IPRuleArgs(value=ip_range) for ip_range in settings.allowed_ip_ranges],
        )
        self.vault = KeyVault(
            "key-vault",
            vault_name=vault_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            properties=keyvault.VaultPropertiesArgs(
                tenant_id=client.tenant_id,
                sku=keyvault.SkuArgs(family=keyvault.SkuFamily.A, name=keyvault.SkuName.PREMIUM),
                enable_rbac_authorization=True,
                enable_soft_delete=True,
                soft_delete_retention_in_days=retention,
                # Always: the key is the only way to the data. Irreversible (the API refuses `false`); the config
                # refuses `purgeProtection: false` with attested unseal.
                enable_purge_protection=True,
                enabled_for_deployment=False,
                enabled_for_disk_encryption=False,
                enabled_for_template_deployment=False,
                public_network_access="Enabled",
                network_acls=network_acls,
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )

        policy = release_policy(args.enclave)
        self.release_policy_json = policy_json(policy)
        self.key_name = SEAL_KEY_NAME
        # Created through Azure Resource Manager: generated inside the HSM (no key material is ever sent), and the
        # deployer needs only the control-plane action vaults/keys/write, no data-plane role that could release it.
        self.key = KeyVaultKey(
            "seal-key",
            key_name=SEAL_KEY_NAME,
            vault_name=self.vault.name,
            resource_group_name=args.resource_group_name,
            properties=keyvault.KeyPropertiesArgs(
                kty=keyvault.JsonWebKeyType.RS_A_HSM,
                key_size=settings.key_size,
                attributes=keyvault.KeyAttributesArgs(enabled=True, exportable=True),
                release_policy=keyvault.KeyReleasePolicyArgs(content_type=CONTENT_TYPE, data=encoded_policy(policy)),
            ),
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=args.protect,
                # The provider deletes keys through the data plane, where the deployer has no role; the key goes
                # with its vault instead (soft-deleted and purge-protected).
                retain_on_delete=True,
            ),
        )

        self.identity = managedidentity.UserAssignedIdentity(
            "unseal-identity",
            resource_name_=f"id-openbao-unseal-{args.stack}",
            resource_group_name=args.resource_group_name,
            location=args.location,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.federated_credential = managedidentity.FederatedIdentityCredential(
            "unseal-federated-credential",
            federated_identity_credential_resource_name="openbao-service-account",
            resource_group_name=args.resource_group_name,
            resource_name_=self.identity.name,
            issuer=args.oidc_issuer_url,
            subject=f"system:serviceaccount:{args.service_account_namespace}:{args.service_account_name}",
            audiences=[WORKLOAD_IDENTITY_AUDIENCE],
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The only grant of release this program makes: one identity, one key.
        self.release_grant = authorization.RoleAssignment(
            "seal-key-release",
            principal_id=self.identity.principal_id,
            # A new identity may not have replicated yet; with its type given, Azure does not look it up first.
            principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
            role_definition_id=client.subscription_id.apply(
                lambda subscription: (
                    f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/"
                    f"{RELEASE_USER_ROLE}"
                )
            ),
            scope=self.key.id,
            description="OpenBao's enclave releases its seal key (the key's release policy decides which enclave).",
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.vault_uri = self.vault.properties.apply(lambda properties: properties.vault_uri.rstrip("/"))
        self.key_id = self.key.key_uri.apply(lambda uri: uri.rstrip("/"))
        if settings.key_version is not None:
            # A version made after this program created the key (rotation): Resource Manager never creates one.
            pinned = settings.key_version
            self.key_id_with_version = self.key_id.apply(lambda key_id: f"{key_id}/{pinned}")
        else:
            self.key_id_with_version = self.key.key_uri_with_version.apply(lambda uri: uri.rstrip("/"))
        self.key_version = self.key_id_with_version.apply(lambda uri: uri.rsplit("/", 1)[-1])
        self.client_id = self.identity.client_id
        self.tenant_id = self.identity.tenant_id
        self.service_account_annotations = self.identity.client_id.apply(
            lambda client_id: {CLIENT_ID_ANNOTATION: client_id}
        )
        self.pod_labels = {USE_LABEL: "true"}
        previous_version = settings.previous_key_version
        self.bootstrap_env = pulumi.Output.all(self.key_id, self.key_id_with_version).apply(
            lambda ids: (
                {ENV_SEAL_KEY_ID: ids[1]}
                | ({ENV_SEAL_PREVIOUS_KEY_ID: f"{ids[0]}/{previous_version}"} if previous_version else {})
            )
        )
        self.ready = [self.key, self.identity, self.federated_credential, self.release_grant]
        self.access = SealAccess(
            key_id=self.key_id_with_version,
            env=self.bootstrap_env,
            service_account_annotations=self.service_account_annotations,
            pod_labels=self.pod_labels,
            ready=self.ready,
        )
        self.register_outputs(
            {
                "vaultUri": self.vault_uri,
                "keyName": self.key_name,
                "keyId": self.key_id,
                "keyIdWithVersion": self.key_id_with_version,
                "keyVersion": self.key_version,
                "clientId": self.client_id,
                "tenantId": self.tenant_id,
                "releasePolicy": self.release_policy_json,
            }
        )
